"""A status and its state event are one write (`RedisStore.save_status`, on a real server):
the event is in the job's history and on its channel once the status is, a status refused
writes none, and a finished job's event log expires with its record."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis

from kubetask import keys
from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.store import EVENTS_OUTLIVE_S, RedisStore
from kubetask.models import JobRequest, JobState

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RETENTION_S = 500


def job() -> JobRecord:
    return JobRecord(id=new_job_id(AT), request=JobRequest(kind="noop"), created_at=AT)


def history(url: str, job_id: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return [json.loads(str(e)) for e in client.zrange(keys.history(job_id), 0, -1)]


def test_a_status_written_appends_its_state_event_and_tells_the_channel(redis_url: str) -> None:
    record = job()
    running = JobStatus(state=JobState.RUNNING, reason="Running", message="1 running", attempts=1)

    async def scenario() -> tuple[bool, dict[str, object]]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        listener = client.pubsub()
        try:
            store = RedisStore(client, retention_s=RETENTION_S, idempotency_ttl_s=60)
            await store.create(record, idempotency_key=None, fingerprint=record.id)
            await listener.subscribe(keys.progress_channel(record.id))
            written = await store.save_status(record, running, at=AT)
            while (message := await listener.get_message(timeout=5.0)) is not None:
                if message["type"] == "message":
                    return written, json.loads(message["data"])
            raise AssertionError("no event on the job's channel")
        finally:
            await listener.unsubscribe()
            await client.aclose()

    written, told = asyncio.run(scenario())
    assert written
    accepted, event = history(redis_url, record.id)
    assert (accepted["seq"], accepted["state"]) == (1, "queued")
    assert event == told
    assert event == {
        "seq": 2,
        "type": "state",
        "job_id": record.id,
        "timestamp": AT.isoformat(),
        "state": "running",
        "reason": "Running",
        "message": "1 running",
        "attempts": 1,
    }


def test_a_status_refused_writes_no_event(redis_url: str) -> None:
    record = job()

    async def scenario() -> tuple[bool, bool]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=RETENTION_S, idempotency_ttl_s=60)
            await store.create(record, idempotency_key=None, fingerprint=record.id)
            await store.request_cancel(record.id)  # after `record` was read
            stale = await store.save_status(record, JobStatus(state=JobState.SUCCEEDED), at=AT)
            cancelled = record.model_copy(update={"cancel_requested": True})
            await store.save_status(cancelled, JobStatus(state=JobState.CANCELLED), at=AT)
            late = await store.save_status(cancelled, JobStatus(state=JobState.FAILED), at=AT)
            return stale, late
        finally:
            await client.aclose()

    stale, late = asyncio.run(scenario())
    assert not stale
    assert not late  # a terminal state is final: no second terminal event either
    assert [e["state"] for e in history(redis_url, record.id)] == ["queued", "cancelled"]


def test_a_status_carries_the_submitted_mark_of_its_record_unless_refused(
    redis_url: str,
) -> None:
    """With the namespace its Job was created in, which a mark written alone keeps too."""
    marked, refused, alone = job(), job(), job()
    placed = {"submitted": True, "namespace": "team-a"}

    async def scenario() -> list[JobRecord | None]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=RETENTION_S, idempotency_ttl_s=60)
            for record in (marked, refused, alone):
                await store.create(record, idempotency_key=None, fingerprint=record.id)
            running = JobStatus(state=JobState.RUNNING)
            await store.save_status(marked.model_copy(update=placed), running, at=AT)
            await store.request_cancel(refused.id)  # after `refused` was read
            created = refused.model_copy(update=placed)
            assert not await store.save_status(created, running, at=AT)
            await store.mark_submitted(alone.model_copy(update=placed))
            return [await store.get(r.id) for r in (marked, refused, alone)]
        finally:
            await client.aclose()

    stored_marked, stored_refused, stored_alone = asyncio.run(scenario())
    assert stored_marked is not None
    assert stored_refused is not None
    assert stored_alone is not None
    assert (stored_marked.submitted, stored_marked.namespace) == (True, "team-a")
    assert stored_marked.status.state == JobState.RUNNING
    assert (stored_refused.submitted, stored_refused.namespace) == (False, None)
    assert (stored_alone.submitted, stored_alone.namespace) == (True, "team-a")


def test_a_finished_jobs_event_log_expires_after_its_record(redis_url: str) -> None:
    record = job()

    async def scenario() -> list[int]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=RETENTION_S, idempotency_ttl_s=60)
            await store.create(record, idempotency_key=None, fingerprint=record.id)
            await store.save_status(record, JobStatus(state=JobState.RUNNING), at=AT)
            running = [await client.ttl(keys.history(record.id))]
            await store.save_status(record, JobStatus(state=JobState.SUCCEEDED), at=AT)
            return running + [
                await client.ttl(key) for key in (keys.seq(record.id), keys.history(record.id))
            ]
        finally:
            await client.aclose()

    while_running, seq_ttl, history_ttl = asyncio.run(scenario())
    assert while_running == -1  # no expiry while the job goes on
    lasts = RETENTION_S + EVENTS_OUTLIVE_S  # till the record is swept out, and then some
    assert lasts - 5 <= seq_ttl <= lasts
    assert lasts - 5 <= history_ttl <= lasts
