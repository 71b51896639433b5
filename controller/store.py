"""Where job records live: one Redis hash per job, a lexically sorted index (ids sort by
creation time) and the set of unfinished jobs, each also per tenant (a tenant's listing
reads its own index; its cap on unfinished jobs counts its own set, in the same script that
creates the job, so the cap holds across API replicas). Each write that must be atomic is
one script.

A new record is acknowledged (201) only once it is on disk: the create script and `WAITAOF`
go down one connection together, and when the server does not confirm the local fsync in
time (a slow or failing disk, append-only persistence off) the record is taken back out,
with its idempotency key, index entries and event log, and the caller is told to retry.

The reconciler is the only writer of a job's `status`; the API writes the record once and
the cancel flag. A status write names the cancel flag it was derived from and is refused if
that changed, so a cancel accepted with 202 can never be overwritten by a late success.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import redis.asyncio as aioredis

from kubetask import eventlog, keys
from kubetask.controller.errors import NotDurable
from kubetask.controller.fsync import FSYNC_TIMEOUT_MS, local_fsync
from kubetask.controller.notify import OutboxEntry
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.models import DEFAULT_TENANT, TERMINAL_STATES, JobRequest, JobState

log = logging.getLogger("kubetask.store")

ACTIVE_SET = f"{keys.PREFIX}:active"
SCAN_BATCH = 100

# KEYS: job, index, active set, idempotency key ('' for none), then the event log's four,
# then the tenant's index and active set. ARGV: id, request, created_at, status,
# fingerprint, job key prefix, idempotency TTL, then the "queued" event's body, history
# limit and progress flag, then the tenant and its cap on unfinished jobs ('0': none).
# The event is appended in the same script, so it is always the job's first (seq 1), before
# any reconciler sees the job. A replay answers the original job even at the cap. The same
# script run again (the client retried after losing the connection) writes the key again:
# WAITAOF, on the new connection, then waits for a write of its own, which is after the record.
_CREATE = (
    eventlog.APPEND_FUNCTION
    + """
if KEYS[4] ~= '' then
  local existing = redis.call('GET', KEYS[4])
  if existing == ARGV[1] then
    redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[7])
    return {ARGV[1], ''}
  end
  if existing then
    return {existing, redis.call('HGET', ARGV[6] .. existing, 'fingerprint') or ''}
  end
end
local cap = tonumber(ARGV[12])
if cap > 0 then
  local active = redis.call('SCARD', KEYS[10])
  if active >= cap then return {'', 'active', active} end
end
redis.call('HSET', KEYS[1], 'request', ARGV[2], 'created_at', ARGV[3], 'status', ARGV[4],
           'fingerprint', ARGV[5], 'tenant', ARGV[11])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[9], 0, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[10], ARGV[1])
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[7]) end
append_event(KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[8], ARGV[9], ARGV[10])
return {ARGV[1], ''}
"""
)

# KEYS: job, active set, outbox (sorted set of entry ids by due time), outbox entries (hash),
# the tenant's active set. ARGV: status, cancel flag read, expiry ('0': not terminal), id,
# due time, then pairs of outbox entry id and entry. A terminal status and its
# notifications are written together, so a crash right after the write still leaves them
# to deliver (at least once).
_SAVE_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HGET', KEYS[1], 'status')
if current then
  local state = cjson.decode(current)['state']
  if state == 'succeeded' or state == 'failed' or state == 'cancelled' then
    return 0  -- terminal states are final, whoever writes (a deposed leader's late write)
  end
end
local cancel = redis.call('HGET', KEYS[1], 'cancel') == '1'
if cancel ~= (ARGV[2] == '1') then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if ARGV[3] ~= '0' then
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('SREM', KEYS[5], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  for i = 6, #ARGV, 2 do
    if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) == 1 then
      redis.call('ZADD', KEYS[3], ARGV[5], ARGV[i])
    end
  end
end
return 1
"""

# KEYS and ARGV[1]: as _CREATE's. Takes a record the disk did not confirm back out: the
# record, its event log, its index entries and its places in the active sets (the tenant's
# count of unfinished jobs), and the idempotency key if it still names this job.
_DISCARD = """
redis.call('DEL', KEYS[1], KEYS[5], KEYS[6], KEYS[7])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[10], ARGV[1])
if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1
"""

# Only a record that exists (one taken back out after a failed fsync stays gone).
_MARK_SUBMITTED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'submitted', '1')
return 1
"""

_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
local state = cjson.decode(status)['state']
for _, terminal in ipairs(ARGV) do
  if state == terminal then return state end
end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 'ok'
"""


class CancelOutcome(StrEnum):
    ACCEPTED = "ok"
    MISSING = "missing"


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class TooManyActiveJobs(Exception):
    """The tenant already has `limit` unfinished jobs: nothing was created (429)."""

    def __init__(self, tenant: str, limit: int) -> None:
        super().__init__(f"tenant {tenant!r} already has {limit} unfinished jobs (the cap)")
        self.tenant = tenant
        self.limit = limit


@dataclass(frozen=True)
class JobQuery:
    state: JobState | None = None
    kind: str | None = None
    labels: Mapping[str, str] | None = None
    tenant: str | None = None  # None: every tenant's jobs (an admin's listing)

    def matches(self, record: JobRecord) -> bool:
        if not record.visible_to(self.tenant):
            return False
        if self.state is not None and record.status.state is not self.state:
            return False
        if self.kind is not None and record.request.kind != self.kind:
            return False
        labels = self.labels or {}
        return all(record.request.labels.get(k) == v for k, v in labels.items())


class Store(Protocol):
    async def create(
        self,
        record: JobRecord,
        *,
        idempotency_key: str | None,
        fingerprint: str,
        max_active: int | None = None,
    ) -> tuple[JobRecord, bool]: ...
    async def get(self, job_id: str) -> JobRecord | None: ...
    async def find(
        self, query: JobQuery, *, cursor: str | None, limit: int
    ) -> tuple[list[JobRecord], str | None]: ...
    async def save_status(self, record: JobRecord, status: JobStatus) -> bool: ...
    async def mark_submitted(self, job_id: str) -> None: ...
    async def request_cancel(self, job_id: str) -> CancelOutcome | JobState: ...
    async def unfinished(self) -> list[str]: ...


class RedisStore:
    """The Store on Redis (a client made with `decode_responses=True`). Terminal records
    expire after `retention_s`."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        retention_s: int,
        idempotency_ttl_s: int,
        notifications: Callable[[JobRecord, JobStatus], Sequence[OutboxEntry]] | None = None,
        clock: Callable[[], float] = time.time,
        fsync_timeout_ms: int = FSYNC_TIMEOUT_MS,
    ) -> None:
        self._redis = client
        self._notifications = notifications
        self._clock = clock
        self._retention_s = retention_s
        self._idempotency_ttl_s = idempotency_ttl_s
        self._fsync_timeout_ms = fsync_timeout_ms
        self._create = client.register_script(_CREATE)
        self._discard = client.register_script(_DISCARD)
        self._save_status = client.register_script(_SAVE_STATUS)
        self._mark_submitted = client.register_script(_MARK_SUBMITTED)
        self._cancel = client.register_script(_CANCEL)
        self._waitaof = True  # False once the server turned out to predate WAITAOF

    async def create(
        self,
        record: JobRecord,
        *,
        idempotency_key: str | None,
        fingerprint: str,
        max_active: int | None = None,
    ) -> tuple[JobRecord, bool]:
        """Store a new record, on disk before this returns; with an idempotency key the
        tenant used before, return that job instead. `TooManyActiveJobs` when the tenant
        has `max_active` unfinished jobs; `NotDurable` when the server did not confirm the
        fsync in time, and then nothing of the record is left."""
        tenant = record.tenant
        idem_key = keys.idempotency(tenant, idempotency_key) if idempotency_key else ""
        status = record.status
        accepted = eventlog.state_fields(
            record.id,
            state=status.state,
            reason=status.reason,
            message=status.message,
            attempts=0,
            now=record.created_at,
        )
        script_keys = [
            keys.job(record.id),
            keys.JOBS_INDEX,
            ACTIVE_SET,
            idem_key,
            *eventlog.script_keys(record.id),
            keys.tenant_jobs(tenant),
            keys.tenant_active(tenant),
        ]
        # One connection for both: WAITAOF waits for that connection's own writes only.
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._create(
                keys=script_keys,
                args=[
                    record.id,
                    record.request.model_dump_json(),
                    record.created_at.isoformat(),
                    status.model_dump_json(),
                    fingerprint,
                    keys.job(""),
                    self._idempotency_ttl_s,
                    *eventlog.script_args(accepted),
                    tenant,
                    max_active or 0,
                ],
                client=pipe,
            )
            if self._waitaof:
                pipe.execute_command("WAITAOF", 1, 0, self._fsync_timeout_ms)
            answer, *fsync = await pipe.execute(raise_on_error=False)
        if isinstance(answer, Exception):
            raise answer
        job_id, seen_fingerprint, *_ = answer
        job_id = str(job_id)
        if not job_id:
            raise TooManyActiveJobs(tenant, max_active or 0)
        if job_id == record.id:
            if fsync:  # else the server predates WAITAOF: nothing to wait for
                await self._confirm_on_disk(fsync[0], record.id, script_keys)
            return record, True
        seen = str(seen_fingerprint)
        if seen != fingerprint:
            raise IdempotencyConflict(job_id)
        existing = await self.get(job_id)
        if existing is None:  # expired between the two reads: treat the key as new
            await self._redis.delete(idem_key)
            return await self.create(
                record,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                max_active=max_active,
            )
        return existing, False

    async def _confirm_on_disk(self, reply: object, job_id: str, script_keys: list[str]) -> None:
        """Take a new record back out (NotDurable) unless WAITAOF counted the local fsync."""
        confirmed = local_fsync(reply)
        if confirmed is None:
            log.warning("no WAITAOF on this server (%s); relying on appendfsync", reply)
            self._waitaof = False
        elif not confirmed:
            log.error("job %s not on disk (WAITAOF: %s): taken back out", job_id, reply)
            await self._discard(keys=script_keys, args=[job_id])
            raise NotDurable(
                "the job store did not confirm that the job is on disk "
                f"(waited up to {self._fsync_timeout_ms} ms)"
            )

    async def get(self, job_id: str) -> JobRecord | None:
        fields: dict[str, str] = await self._redis.hgetall(keys.job(job_id))  # type: ignore[assignment]
        return _parse(job_id, fields) if fields else None

    async def find(
        self, query: JobQuery, *, cursor: str | None, limit: int
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first. Scans at most a few batches per call, so a page may come back short
        with a cursor to go on from; `None` means the end. A query for one tenant reads
        that tenant's index only."""
        found: list[JobRecord] = []
        index = keys.JOBS_INDEX if query.tenant is None else keys.tenant_jobs(query.tenant)
        upper = f"({cursor}" if cursor else "+"
        for _ in range(10):
            ids = [
                str(i)
                for i in await self._redis.zrevrangebylex(
                    index, upper, "-", start=0, num=SCAN_BATCH
                )
            ]
            if not ids:
                return found, None
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(keys.job(job_id))
                rows = await pipe.execute()
            for job_id, fields in zip(ids, rows, strict=True):
                upper = f"({job_id}"
                if not fields:
                    await self._redis.zrem(index, job_id)  # expired record
                    continue
                record = _parse(job_id, fields)
                if query.matches(record):
                    found.append(record)
                    if len(found) == limit:
                        return found, job_id
        return found, upper[1:]

    async def save_status(self, record: JobRecord, status: JobStatus) -> bool:
        """Write the status unless the cancel flag changed since `record` was read; a
        terminal status queues its notifications in the outbox in the same script."""
        terminal = status.state in TERMINAL_STATES
        expire = self._retention_s if terminal else 0
        entries: list[str] = []
        if terminal and self._notifications is not None:
            for entry in self._notifications(record, status):
                entries += [entry.id, entry.model_dump_json()]
        written = await self._save_status(
            keys=[
                keys.job(record.id),
                ACTIVE_SET,
                keys.OUTBOX,
                keys.OUTBOX_ENTRIES,
                keys.tenant_active(record.tenant),
            ],
            args=[
                status.model_dump_json(),
                "1" if record.cancel_requested else "0",
                expire,
                record.id,
                self._clock(),
                *entries,
            ],
        )
        return int(written) == 1

    async def mark_submitted(self, job_id: str) -> None:
        await self._mark_submitted(keys=[keys.job(job_id)])

    async def request_cancel(self, job_id: str) -> CancelOutcome | JobState:
        """ACCEPTED, MISSING, or the terminal state that makes cancelling impossible."""
        answer = await self._cancel(
            keys=[keys.job(job_id)], args=[s.value for s in TERMINAL_STATES]
        )
        answer = str(answer)
        if answer in (CancelOutcome.ACCEPTED, CancelOutcome.MISSING):
            return CancelOutcome(answer)
        return JobState(answer)

    async def unfinished(self) -> list[str]:
        members = await self._redis.smembers(ACTIVE_SET)
        return sorted(str(m) for m in members)


def _parse(job_id: str, data: Mapping[str, str]) -> JobRecord:
    return JobRecord(
        id=job_id,
        request=JobRequest.model_validate_json(data["request"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        tenant=data.get("tenant") or DEFAULT_TENANT,
        status=JobStatus.model_validate_json(data["status"]),
        cancel_requested=data.get("cancel") == "1",
        submitted=data.get("submitted") == "1",
    )
