"""A controller's start reads the unfinished jobs only: the reconciler, leading on a real
store holding many finished jobs, reads each unfinished record and none of the finished
ones (the server's command statistics count the reads). The backend is the in-memory fake
of tests/unit/test_reconciler_sync.py, announcing nothing."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import cast

import redis
import redis.asyncio as aioredis

from kubetask import keys
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.bus import EventBus
from kubetask.controller.ids import new_job_id
from kubetask.controller.reconciler import Reconciler
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.redis_server import RedisServer
from kubetask.controller.states import Observation, PodFacts
from kubetask.controller.store import RedisStore
from kubetask.models import JobRequest, JobState
from tests.unit.test_reconciler_sync import FakeBackend, FakeBus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FINISHED, UNFINISHED = 300, 4
RUNNING = Observation(active=1, start_time=NOW, pods=(PodFacts("Running"),))


def test_start_up_reads_only_the_unfinished_records(own_redis: RedisServer) -> None:
    backend = FakeBackend()

    async def fill(store: RedisStore) -> list[str]:
        open_ids = []
        for n in range(FINISHED + UNFINISHED):
            record = JobRecord(id=new_job_id(NOW), request=JobRequest(kind="noop"), created_at=NOW)
            await store.create(record, idempotency_key=None, fingerprint=record.id)
            if n < FINISHED:
                await store.save_status(record, JobStatus(state=JobState.SUCCEEDED), at=NOW)
            else:
                await store.save_status(
                    record, JobStatus(state=JobState.RUNNING, started_at=NOW), at=NOW
                )
                await store.mark_submitted(record)
                backend.jobs[record.id] = RUNNING
                open_ids.append(record.id)
        return open_ids

    async def start(store: RedisStore, open_ids: list[str]) -> None:
        reconciler = Reconciler(
            store=store,
            bus=cast(EventBus, FakeBus()),
            backend=backend,
            spec_for=lambda r: TaskSpec(
                job_id=r.id, kind="noop", image="", command=(), env={}, retries=0, timeout_s=None
            ),
        )
        task = asyncio.create_task(reconciler.lead())
        try:
            for _ in range(500):
                if reconciler.ready.is_set() and set(backend.observed) >= set(open_ids):
                    await asyncio.sleep(0.05)  # anything else it would read
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the unfinished jobs were not synced")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def scenario(sync: redis.Redis) -> None:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=3600, idempotency_ttl_s=60)
            open_ids = await fill(store)
            await store.build_indexes()  # a store already indexed: start-up reads one key
            sync.config_resetstat()
            await start(store, open_ids)
        finally:
            await client.aclose()

    with redis.Redis.from_url(own_redis.url, decode_responses=True) as sync:
        asyncio.run(scenario(sync))
        reads = int(sync.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))
    assert reads == UNFINISHED


def test_the_leader_builds_missing_indexes_once_and_expires_due_records(
    own_redis: RedisServer,
) -> None:
    """A store written before the indexes: the leader indexes it on its first start, and
    takes out the finished records whose retention passed (with their index entries)."""
    clock = [1_000_000.0]
    old = JobRecord(id=new_job_id(NOW), request=JobRequest(kind="noop"), created_at=NOW)

    async def scenario(sync: redis.Redis) -> tuple[str, bool, list[str]]:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=10, idempotency_ttl_s=60, clock=lambda: clock[0])
            await store.create(old, idempotency_key=None, fingerprint=old.id)
            await store.save_status(old, JobStatus(state=JobState.SUCCEEDED), at=NOW)
            sync.delete(keys.STORE_SCHEMA)  # as if an older version had written the store
            clock[0] += 11
            reconciler = Reconciler(
                store=store,
                bus=cast(EventBus, FakeBus()),
                backend=FakeBackend(),
                spec_for=lambda r: TaskSpec(
                    job_id=r.id,
                    kind="noop",
                    image="",
                    command=(),
                    env={},
                    retries=0,
                    timeout_s=None,
                ),
                resync_s=0.05,
            )
            task = asyncio.create_task(reconciler.lead())
            try:
                for _ in range(200):
                    if sync.get(keys.STORE_SCHEMA) and not sync.exists(keys.job(old.id)):
                        break
                    await asyncio.sleep(0.01)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            return (
                str(sync.get(keys.STORE_SCHEMA)),
                bool(sync.exists(keys.job(old.id))),
                [str(k) for k in sync.scan_iter(f"{keys.PREFIX}:*jobs") if sync.zcard(k)],
            )
        finally:
            await client.aclose()

    with redis.Redis.from_url(own_redis.url, decode_responses=True) as sync:
        schema, kept, indexes = asyncio.run(scenario(sync))
    assert (schema, kept, indexes) == ("2", False, [])
