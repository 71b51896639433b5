"""Concurrent submissions share fsyncs: one pipeline and one `WAITAOF` per batch, each
submission answered only once its batch is confirmed on disk, and a batch the disk did not
confirm fails every submission in it (NotDurable), leaving none of them behind. Against a
real server of the test's own (tests/component/aof.py stalls its disk); that no submission
is answered before its batch's WAITAOF reply: tests/unit/test_group_commit.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis

from kubetask import keys
from kubetask.controller.errors import NotDurable
from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.redis_server import RedisServer
from kubetask.controller.store import RedisStore
from kubetask.models import JobRequest
from tests.component import aof

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 40


def waitaofs(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_waitaof", {}).get("calls", 0))


def records(n: int) -> list[JobRecord]:
    return [
        JobRecord(id=new_job_id(NOW), request=JobRequest(kind="noop"), created_at=NOW)
        for _ in range(n)
    ]


async def submit_all(store: RedisStore, batch: list[JobRecord]) -> list[object]:
    return await asyncio.gather(
        *(store.create(r, idempotency_key=None, fingerprint=r.id) for r in batch),
        return_exceptions=True,
    )


def test_concurrent_submissions_share_one_waitaof(own_redis: RedisServer) -> None:
    async def scenario() -> tuple[list[object], int]:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=60, idempotency_ttl_s=60)
            await store.get("warm-up")  # the connection is open before the batch
            return await submit_all(store, records(BATCH)), store.commits.batches
        finally:
            await client.aclose()

    with redis.Redis.from_url(own_redis.url, decode_responses=True) as sync:
        before = waitaofs(sync)
        answers, batches = asyncio.run(scenario())
        sent = waitaofs(sync) - before
        assert all(isinstance(a, tuple) and a[1] is True for a in answers), answers
        assert sync.zcard(keys.JOBS_INDEX) == BATCH
    assert batches == sent
    assert sent <= 2, f"{BATCH} concurrent submissions sent {sent} WAITAOFs"  # one batch may lead


def test_a_batch_the_disk_did_not_confirm_fails_every_submission_in_it(
    own_redis: RedisServer,
) -> None:
    async def scenario(sync: redis.Redis) -> list[object]:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=60, idempotency_ttl_s=60, fsync_timeout_ms=300)
            await store.get("warm-up")
            aof.stall(sync)
            try:
                return await submit_all(store, records(BATCH))
            finally:
                await asyncio.to_thread(aof.unstall, sync)
        finally:
            await client.aclose()

    with redis.Redis.from_url(own_redis.url, decode_responses=True) as sync:
        before = waitaofs(sync)
        answers = asyncio.run(scenario(sync))
        sent = waitaofs(sync) - before
        assert all(isinstance(a, NotDurable) for a in answers), answers
        assert sent <= 2
        assert sync.zcard(keys.JOBS_INDEX) == 0
        assert sync.scard(f"{keys.PREFIX}:active") == 0
        assert not sync.hgetall(keys.JOB_COUNTS)
        left = [k for k in sync.scan_iter(f"{keys.PREFIX}:*") if k != "stall:seed"]
        assert [k for k in left if ":jobs" in k or ":job:" in k] == []


def test_one_submission_at_a_time_is_a_batch_each(own_redis: RedisServer) -> None:
    async def scenario() -> int:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=60, idempotency_ttl_s=60)
            for record in records(3):
                await store.create(record, idempotency_key=None, fingerprint=record.id)
            return store.commits.batches
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == 3


def calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_batch_costs_no_script_check_and_survives_a_server_that_lost_its_scripts(
    own_redis: RedisServer,
) -> None:
    """A batch is its writes and one WAITAOF, nothing more (no SCRIPT EXISTS each time); a
    server that lost its scripts (restarted, flushed) gets them again and the writes it did
    not run go again, each answered once durable."""

    async def scenario(sync: redis.Redis) -> list[object]:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=60, idempotency_ttl_s=60)
            await submit_all(store, records(1))  # the script is loaded once, here
            checks = calls(sync, "script|exists")
            answers = await submit_all(store, records(3))
            assert calls(sync, "script|exists") == checks
            sync.script_flush()
            return answers + await submit_all(store, records(BATCH))
        finally:
            await client.aclose()

    with redis.Redis.from_url(own_redis.url, decode_responses=True) as sync:
        answers = asyncio.run(scenario(sync))
        assert all(isinstance(a, tuple) and a[1] is True for a in answers), answers
        assert sync.zcard(keys.JOBS_INDEX) == 1 + 3 + BATCH
