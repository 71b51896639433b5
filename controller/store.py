"""Where job records live: one Redis hash per job, lexically sorted indexes (ids sort by
creation time) of every job, of each state, kind and label (each also per tenant: a
listing walks the smallest index that holds its matches) and the set of unfinished jobs
(per tenant too: its cap counts its own set, in the same script that creates the job, so
the cap holds across API replicas), and counts of unfinished jobs for the scrape. Each
write that must be atomic is one script (controller/store_scripts.py).

A new record is acknowledged (201) only once it is on disk: concurrent creates share one
pipeline and one `WAITAOF` (controller/group_commit.py), and when the server does not
confirm the local fsync in time (a slow or failing disk, append-only persistence off) each
record of the batch is taken back out, with its idempotency key, index entries, counts and
event log, and each caller is told to retry. A finished record expires through the
expiring set, with every index entry it holds, when the leader calls `expire_due`.

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
from typing import Protocol, cast, runtime_checkable

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import JsonValue

from kubetask import eventlog, keys
from kubetask.controller import store_indexes as indexes
from kubetask.controller import store_scripts as scripts
from kubetask.controller.errors import NotDurable
from kubetask.controller.fsync import FSYNC_TIMEOUT_MS, local_fsync
from kubetask.controller.group_commit import GroupCommit
from kubetask.controller.notify import OutboxEntry
from kubetask.controller.records import JobRecord, JobStatus, stored_request
from kubetask.models import DEFAULT_TENANT, TERMINAL_STATES, JobState

log = logging.getLogger("kubetask.store")

# What the store raises while Redis is away (restarting, unreachable, not answering, or not
# confirming a write on disk): a passing fault of every job alike, never one job's.
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # BusyLoadingError too: a server loading its file
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    NotDurable,
)

# What Redis answers while it can serve no job: out of memory, its disk failing (MISCONF),
# read-only (a replica), busy with a script, restarted without kubetask's scripts (NOSCRIPT).
SERVER_FAULTS: tuple[type[Exception], ...] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.NoScriptError,
    redis.exceptions.TryAgainError,
)
SERVER_FAULT_WORDS = ("MISCONF", "BUSY ", "OOM ", "READONLY")  # also inside a script's error


def store_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the store can serve no job now (Redis away, not answering, not
    confirming a write on disk, out of memory, its disk failing): a passing fault of every
    job alike, never one job's."""
    if isinstance(exc, UNAVAILABLE + SERVER_FAULTS):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and any(
        word in str(exc) for word in SERVER_FAULT_WORDS
    )


# A finished job's event log outlives its record's retention by this much: the record goes
# at the leader's next expiry sweep (every resync; later while no leader runs), and until
# then its events must still be there (a stream, a replay). Past the record, nothing reads
# them (a job without a record is a 404), and Redis lets them lapse.
EVENTS_OUTLIVE_S = 3600

ACTIVE_SET = f"{keys.PREFIX}:active"
SCAN_BATCH = 100
EXPIRE_BATCH = 500  # records taken out per script call
INDEX_SCHEMA = "2"  # every record names its index entries and counts (store_indexes.py)


class CancelOutcome(StrEnum):
    ACCEPTED = "ok"
    MISSING = "missing"


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


@dataclass(frozen=True)
class TenantCaps:
    """What one tenant may hold, checked in the script that creates a job (0: no cap)."""

    active: int = 0  # unfinished jobs
    stored: int = 0  # job records kept, in any state


NO_CAPS = TenantCaps()


class TenantCapReached(Exception):
    """The tenant is at one of its caps (`cap`: "active" or "stored"): nothing was
    created (429)."""

    def __init__(self, tenant: str, cap: str, limit: int) -> None:
        said = (
            f"tenant {tenant!r} already has {limit} unfinished jobs (the cap)"
            if cap == "active"
            else f"tenant {tenant!r} already keeps {limit} jobs (the cap on stored jobs): "
            "purge finished ones (DELETE /v1/jobs/{id}?purge=true) or let retention "
            "expire them"
        )
        super().__init__(said)
        self.tenant = tenant
        self.cap = cap
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
        caps: TenantCaps = NO_CAPS,
    ) -> tuple[JobRecord, bool]: ...
    async def get(self, job_id: str) -> JobRecord | None: ...
    async def find(
        self, query: JobQuery, *, cursor: str | None, limit: int
    ) -> tuple[list[JobRecord], str | None]: ...
    async def save_status(self, record: JobRecord, status: JobStatus, *, at: datetime) -> bool:
        """Write the status and its state event (stamped `at`) together, and mark the job
        submitted when `record` says so, unless the cancel flag changed since `record` was
        read (False: nothing written)."""

    async def mark_submitted(self, record: JobRecord) -> None:
        """Write `record`'s submitted mark (and the namespace it was created in) alone."""

    async def request_cancel(self, job_id: str) -> CancelOutcome | JobState: ...
    async def unfinished(self) -> list[str]: ...


@runtime_checkable
class Counted(Protocol):
    """A store that keeps counts of its unfinished jobs (a scrape reads them, not the jobs)."""

    async def counts(self) -> indexes.Counts: ...


@runtime_checkable
class Maintained(Protocol):
    """A store that the leader tends: indexes built once, expired records taken out."""

    async def build_indexes(self) -> int: ...
    async def expire_due(self) -> int: ...


def job_log_keys(job_id: str) -> list[str]:
    """The keys of a job's event log: its seq, history, latest progress and progress tally."""
    return [k for k in eventlog.progress_keys(job_id) if k != keys.progress_channel(job_id)]


def state_event(job_id: str, status: JobStatus, at: datetime) -> dict[str, JsonValue]:
    """The state event a status writes with it."""
    return eventlog.state_fields(
        job_id,
        state=status.state,
        reason=status.reason,
        message=status.message,
        attempts=status.attempts,
        now=at,
    )


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
        self._create = client.register_script(scripts.CREATE)
        self._discard = client.register_script(scripts.DISCARD)
        self._save_status = client.register_script(scripts.SAVE_STATUS)
        self._mark_submitted = client.register_script(scripts.MARK_SUBMITTED)
        self._cancel = client.register_script(scripts.CANCEL)
        self._expire_due = client.register_script(scripts.EXPIRE_DUE)
        self._index_old = client.register_script(scripts.INDEX_OLD)
        self.commits = GroupCommit(client, timeout_ms=fsync_timeout_ms)

    async def create(
        self,
        record: JobRecord,
        *,
        idempotency_key: str | None,
        fingerprint: str,
        caps: TenantCaps = NO_CAPS,
    ) -> tuple[JobRecord, bool]:
        """Store a new record, on disk before this returns; with an idempotency key the
        tenant used before, return that job instead. `TenantCapReached` when the tenant is
        at one of its `caps`; `NotDurable` when the server did not confirm the fsync in
        time, and then nothing of the record is left."""
        tenant = record.tenant
        idem_key = keys.idempotency(tenant, idempotency_key) if idempotency_key else ""
        status = record.status
        accepted = state_event(record.id, status, record.created_at)
        script_keys = [
            keys.job(record.id),
            keys.JOBS_INDEX,
            ACTIVE_SET,
            idem_key,
            *eventlog.script_keys(record.id),
            keys.tenant_jobs(tenant),
            keys.tenant_active(tenant),
            keys.JOB_COUNTS,
        ]
        # Concurrent submissions share a batch: one pipeline, then one WAITAOF on the same
        # connection (it waits for that connection's own writes only).
        answer, fsync = await self.commits.write(
            self._create,
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
                caps.active,
                indexes.as_json(indexes.static_indexes(record)),
                indexes.as_json(indexes.state_indexes(record, status.state)),
                indexes.as_json(indexes.counted(record, status.state)),
                caps.stored,
            ],
        )
        if isinstance(answer, Exception):
            raise answer
        first, seen_fingerprint, *_ = cast(list[object], answer)
        job_id = str(first)
        if not job_id:  # at a cap: the second item names it
            cap = str(seen_fingerprint)
            raise TenantCapReached(tenant, cap, caps.active if cap == "active" else caps.stored)
        if job_id == record.id:
            if fsync is not None:  # else the server predates WAITAOF: nothing to wait for
                await self._confirm_on_disk(fsync, record.id, script_keys)
            return record, True
        seen = str(seen_fingerprint)
        if seen != fingerprint:
            raise IdempotencyConflict(job_id)
        existing = await self.get(job_id)
        if existing is None:  # gone between the two reads (purged, expired): once more, the
            # script then takes the key as new (never deleted here: a concurrent retry may
            # have pointed it at its own new job meanwhile, and that one stands)
            return await self.create(
                record,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                caps=caps,
            )
        return existing, False

    async def _confirm_on_disk(self, reply: object, job_id: str, script_keys: list[str]) -> None:
        """Take a new record back out (NotDurable) unless WAITAOF counted the local fsync."""
        confirmed = local_fsync(reply)
        if confirmed is None:
            log.warning("no WAITAOF on this server (%s); relying on appendfsync", reply)
            self.commits.waitaof = False
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

    async def exists(self, job_id: str) -> bool:
        """Whether the job's record is kept (not read, nor parsed)."""
        return bool(await self._redis.exists(keys.job(job_id)))

    async def find(
        self, query: JobQuery, *, cursor: str | None, limit: int
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first. Walks the smallest index that holds every match (the tenant's or
        everyone's jobs, or those of the state, kind or a label asked for), so a filtered
        page costs what its matches cost; at most a few batches per call, so a page may
        come back short with a cursor to go on from; `None` means the end."""
        index = await self._narrowest(query)
        found: list[JobRecord] = []
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
                    await self._redis.zrem(index, job_id)  # a record from before the indexes
                    continue
                record = _parse(job_id, fields)
                if query.matches(record):
                    found.append(record)
                    if len(found) == limit:
                        return found, job_id
        return found, upper[1:]

    async def _narrowest(self, query: JobQuery) -> str:
        candidates = indexes.narrowest(query.tenant, query.state, query.kind, query.labels or {})
        if len(candidates) == 1:
            return candidates[0]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in candidates:
                pipe.zcard(name)
            sizes: list[int] = await pipe.execute()
        return min(zip(sizes, candidates, strict=True))[1]

    async def save_status(self, record: JobRecord, status: JobStatus, *, at: datetime) -> bool:
        """Write the status and append its state event (stamped `at`) in one script, with
        the `submitted` mark when `record` has it (the sync that created the job marks it
        here), unless the cancel flag changed since `record` was read; a terminal status also
        queues its notifications in the outbox and sets its event log to expire with the
        record."""
        terminal = status.state in TERMINAL_STATES
        now = self._clock()
        expire = now + self._retention_s if terminal else 0
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
                keys.JOB_COUNTS,
                keys.EXPIRING,
                *eventlog.script_keys(record.id),
                keys.progress_tally(record.id),
                keys.progress_workers(record.id),
            ],
            args=[
                status.model_dump_json(),
                "1" if record.cancel_requested else "0",
                expire,
                record.id,
                now,
                indexes.as_json(indexes.state_indexes(record, status.state)),
                indexes.as_json(indexes.counted(record, status.state)),
                *eventlog.script_args(state_event(record.id, status, at)),
                self._retention_s + EVENTS_OUTLIVE_S,
                "1" if record.submitted else "0",
                record.namespace or "",
                *entries,
            ],
        )
        return int(written) == 1

    async def mark_submitted(self, record: JobRecord) -> None:
        await self._mark_submitted(keys=[keys.job(record.id)], args=[record.namespace or ""])

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

    # -- optional capabilities (Counted, Maintained) -----------------------------------------
    async def counts(self) -> indexes.Counts:
        """Unfinished jobs by state and kind, waiting jobs by queue: one small hash."""
        raw: dict[str, str] = await self._redis.hgetall(keys.JOB_COUNTS)  # type: ignore[assignment]
        return indexes.parse_counts(raw)

    async def expire_due(self) -> int:
        """Take out the finished records past their retention, each with every index entry
        it holds and what its tasks kept in Redis; how many went."""
        gone = 0
        while True:
            batch = int(
                await self._expire_due(
                    keys=[keys.EXPIRING, keys.JOB_COUNTS],
                    args=[
                        self._clock(),
                        EXPIRE_BATCH,
                        keys.job(""),
                        keys.OUTCOMES,
                        keys.STUDY_LOG_NUMBER,
                        keys.STUDY_LOG,
                        *keys.TASK_SHARED,
                    ],
                )
            )
            gone += batch
            if batch < EXPIRE_BATCH:
                return gone

    async def forget(self, job_id: str) -> bool:
        """Take a finished record out now (`DELETE ?purge=true`), as expiry would (with every
        index entry it holds, its tasks' outcomes and what they shared), and its event log
        too (expiry lets it lapse on its own; a purge is asked to leave nothing). False when
        no finished record has that id, or another purge at the same moment took it out (it
        counts the job)."""
        if await self._redis.zscore(keys.EXPIRING, job_id) is None:
            return False
        # due now: the one call that moves it there claims it (two purges at once: one)
        claimed = await self._redis.zadd(keys.EXPIRING, {job_id: 0}, xx=True, ch=True)
        await self.expire_due()
        await self._redis.delete(*job_log_keys(job_id))
        return bool(claimed)

    async def build_indexes(self) -> int:
        """Once per store: give the records written before the indexes their entries and
        counts (idempotent; a store that has them reads one key). How many it indexed."""
        if await self._redis.get(keys.STORE_SCHEMA) == INDEX_SCHEMA:
            return 0
        built = 0
        upper = "+"
        while ids := [
            str(i)
            for i in await self._redis.zrevrangebylex(
                keys.JOBS_INDEX, upper, "-", start=0, num=EXPIRE_BATCH
            )
        ]:
            upper = f"({ids[-1]}"
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(keys.job(job_id))
                rows: list[dict[str, str]] = await pipe.execute()
            old = [
                (i, row) for i, row in zip(ids, rows, strict=True) if row and "indexes" not in row
            ]
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id, row in old:
                    script_keys, args = self._index_old_call(job_id, row)
                    await self._index_old(keys=script_keys, args=args, client=pipe)
                answers = await pipe.execute()
            for (job_id, _), answer in zip(old, answers, strict=True):
                changed = int(answer) < 0  # its status moved since the read: read it again
                built += await self._index_old_record(job_id) if changed else int(answer)
        await self._redis.set(keys.STORE_SCHEMA, INDEX_SCHEMA)
        log.info("job store indexes built for %d records", built)
        return built

    async def _index_old_record(self, job_id: str) -> int:
        while True:
            fields: dict[str, str] = await self._redis.hgetall(keys.job(job_id))  # type: ignore[assignment]
            if not fields or "indexes" in fields:
                return 0
            script_keys, args = self._index_old_call(job_id, fields)
            answer = int(await self._index_old(keys=script_keys, args=args))
            if answer >= 0:
                return answer

    def _index_old_call(
        self, job_id: str, fields: Mapping[str, str]
    ) -> tuple[list[str], list[str]]:
        """The keys and arguments that index one record written before the indexes."""
        record = _parse(job_id, fields)
        state = record.status.state
        return (
            [keys.job(job_id), keys.JOB_COUNTS, keys.EXPIRING],
            [
                fields["status"],
                indexes.as_json(indexes.static_indexes(record)),
                indexes.as_json(indexes.state_indexes(record, state)),
                indexes.as_json(indexes.counted(record, state)),
                "1" if state.terminal else "0",
                str(self._clock()),
                str(self._retention_s),
                job_id,
            ],
        )


def _parse(job_id: str, data: Mapping[str, str]) -> JobRecord:
    request, refused = stored_request(data["request"])
    return JobRecord(
        id=job_id,
        request=request,
        refused=refused,
        created_at=datetime.fromisoformat(data["created_at"]),
        tenant=data.get("tenant") or DEFAULT_TENANT,
        status=JobStatus.model_validate_json(data["status"]),
        cancel_requested=data.get("cancel") == "1",
        submitted=data.get("submitted") == "1",
        namespace=data.get("namespace"),
    )
