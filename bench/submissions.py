"""Durable submissions: how many new job records per second the store puts on disk when
many submit at once, each acknowledged only once WAITAOF counted its fsync.

kubetask: `RedisStore.create` of `noop` records from CONCURRENCY concurrent callers (group
commit: the records that arrive together go down as one pipeline and one WAITAOF), in a
database of its own on the bench's Redis server (the embedded server's settings: append-only,
`appendfsync always`).
Baseline: raw redis-py on the same server, a loop of pipelines of CONCURRENCY plain `SET`s
each followed by one `WAITAOF`: the floor of a durable write, with no record, index, event
log or script.
Rows: records per second, and each record's time from the call to its answer (p50, p99).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis

from bench.harness import Bench, Counts, Figure, Row, percentile, rounded
from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.store import RedisStore
from kubetask.models import JobRequest

CONCURRENCY = 64
DATABASE = 9  # apart from the API's own (database 0)


def _url(bench: Bench) -> str:
    return bench.redis_url.rsplit("/", 1)[0] + f"/{DATABASE}"


async def _kubetask(url: str, n: int) -> tuple[float, list[float]]:
    client = aioredis.Redis.from_url(url, decode_responses=True, max_connections=8)
    try:
        await client.flushdb()
        store = RedisStore(client, retention_s=3600, idempotency_ttl_s=3600)
        gate = asyncio.Semaphore(CONCURRENCY)
        latencies: list[float] = []
        now = datetime.now(UTC)

        async def submit() -> None:
            record = JobRecord(id=new_job_id(now), request=JobRequest(kind="noop"), created_at=now)
            async with gate:
                began = time.perf_counter()
                await store.create(record, idempotency_key=None, fingerprint=record.id)
                latencies.append((time.perf_counter() - began) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(submit() for _ in range(n)))
        return n / (time.perf_counter() - began), latencies
    finally:
        await client.flushdb()
        await client.aclose()


async def _raw(url: str, n: int) -> tuple[float, list[float]]:
    client = aioredis.Redis.from_url(url)
    try:
        latencies: list[float] = []
        began = time.perf_counter()
        for start in range(0, n, CONCURRENCY):
            size = min(CONCURRENCY, n - start)
            sent = time.perf_counter()
            async with client.pipeline(transaction=False) as pipe:
                for i in range(start, start + size):
                    pipe.set(f"bench:raw:{i}", "x" * 200)
                pipe.execute_command("WAITAOF", 1, 0, 3000)
                await pipe.execute()
            latencies += [(time.perf_counter() - sent) * 1000] * size
        return n / (time.perf_counter() - began), latencies
    finally:
        await client.flushdb()
        await client.aclose()


def run(bench: Bench, counts: Counts) -> Figure:
    n = counts.relay_paced * 2  # 400 quick, 4,000 full
    url = _url(bench)
    asyncio.run(_kubetask(url, CONCURRENCY))  # warm-up: scripts loaded, connections open
    ours_rate, ours = asyncio.run(_kubetask(url, n))
    raw_rate, raw = asyncio.run(_raw(url, n))
    return Figure(
        key="submissions",
        title=f"Durable submissions: {n:,} records from {CONCURRENCY} concurrent callers",
        kubetask=f"RedisStore.create x{n} ({CONCURRENCY} at once; group commit)",
        baseline=f"raw redis-py: pipelines of {CONCURRENCY} SETs + one WAITAOF each",
        rows=[
            Row("records on disk per second", "1/s", ours_rate, raw_rate),
            Row("p50 call to answer", "ms", percentile(ours, 50), percentile(raw, 50)),
            Row("p99 call to answer", "ms", percentile(ours, 99), percentile(raw, 99)),
        ],
        notes=["both on the bench's Redis server (appendonly yes, appendfsync always)"],
        raw={"kubetask_ms": rounded(ours, 3), "baseline_ms": rounded(raw, 3)},
    )
