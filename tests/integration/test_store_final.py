"""Terminal states are final in the store itself: a late write (a deposed leader's, a slow
worker's) can never turn a finished job back, whoever sends it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis.asyncio as aioredis

from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.redis_server import RedisServer
from kubetask.controller.store import RedisStore
from kubetask.models import JobRequest, JobState
from tests.servers import own_database


def test_a_terminal_status_is_never_overwritten(redis_server: RedisServer) -> None:
    url = own_database(redis_server.url)
    now = datetime(2026, 1, 1, tzinfo=UTC)

    async def scenario() -> tuple[list[bool], JobState | None]:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            await client.flushdb()
            store = RedisStore(client, retention_s=3600, idempotency_ttl_s=3600)
            record = JobRecord(id=new_job_id(now), request=JobRequest(kind="noop"), created_at=now)
            record, _ = await store.create(record, idempotency_key=None, fingerprint="f")
            writes = [
                await store.save_status(record, JobStatus(state=state), at=datetime.now(UTC))
                for state in (
                    JobState.RUNNING,
                    JobState.SUCCEEDED,
                    JobState.RUNNING,  # late
                    JobState.FAILED,  # late, and terminal too
                )
            ]
            stored = await store.get(record.id)
            return writes, stored.status.state if stored else None
        finally:
            await client.flushdb()
            await client.aclose()

    writes, final = asyncio.run(scenario())
    assert writes == [True, True, False, False]
    assert final == JobState.SUCCEEDED
