"""`RedisStore.exists`: what the log archiver asks before it copies a job's log (is the
record still kept?), answered without reading or parsing the record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis.asyncio as aioredis

from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.redis_server import RedisServer
from kubetask.controller.store import RedisStore
from kubetask.models import JobRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_record_exists_from_its_creation(own_redis: RedisServer) -> None:
    async def scenario() -> tuple[bool, bool]:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=60, idempotency_ttl_s=60)
            record = JobRecord(id=new_job_id(NOW), request=JobRequest(kind="noop"), created_at=NOW)
            unknown = await store.exists(record.id)
            await store.create(record, idempotency_key=None, fingerprint=record.id)
            return unknown, await store.exists(record.id)
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == (False, True)
