"""Costs that grow with the page, not the history, on a real server of the test's own
(its command statistics count what each read cost): a filtered listing reads its matches
only, through the indexes the store keeps per state, kind and label; expiry takes a record
out with every index entry and count it held; a scrape reads one hash whatever the number
of unfinished jobs; records written before the indexes get them once; a tenant's cap on
stored jobs counts its index, so a purge or an expiry frees a place."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import redis
import redis.asyncio as aioredis

from kubetask import keys
from kubetask.controller.ids import new_job_id
from kubetask.controller.metrics import Metrics
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.redis_server import RedisServer
from kubetask.controller.store import (
    ACTIVE_SET,
    JobQuery,
    RedisStore,
    TenantCapReached,
    TenantCaps,
)
from kubetask.models import JobRequest, JobState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RETENTION_S = 100
T = TypeVar("T")
# the test's own reading of the statistics, and connection handshakes
IGNORED = ("cmdstat_info", "cmdstat_config", "cmdstat_client", "cmdstat_hello")


def job(tenant: str = "acme", kind: str = "noop", **labels: str) -> JobRecord:
    return JobRecord(
        id=new_job_id(NOW),
        request=JobRequest(kind=kind, labels=labels),
        created_at=NOW,
        tenant=tenant,
    )


def calls(client: redis.Redis, command: str | None = None) -> int:
    """Commands the server ran since the last reset (one command, or all of them)."""
    stats = client.info("commandstats")
    if command is not None:
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return sum(int(s["calls"]) for name, s in stats.items() if not name.startswith(IGNORED))


def with_store(url: str, scenario: Callable[[RedisStore, list[float]], Awaitable[T]]) -> T:
    """Run `scenario` with a store on `url` whose clock the scenario moves."""
    clock = [1_000_000.0]

    async def run() -> T:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            store = RedisStore(
                client, retention_s=RETENTION_S, idempotency_ttl_s=60, clock=lambda: clock[0]
            )
            return await scenario(store, clock)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def finish(store: RedisStore, record: JobRecord, state: JobState) -> None:
    await store.save_status(record, JobStatus(state=state, reason="Done", message="done"), at=NOW)


def index_entries(client: redis.Redis, job_id: str) -> list[str]:
    """Every sorted set or set of the store that holds `job_id`."""
    found = []
    for name in client.scan_iter(f"{keys.PREFIX}:*"):
        kind = client.type(name)
        if (kind == "zset" and client.zscore(name, job_id) is not None) or (
            kind == "set" and client.sismember(name, job_id)
        ):
            found.append(name)
    return found


def test_an_expired_record_leaves_no_index_entry_count_outcome_or_shared_key(
    own_redis: RedisServer,
) -> None:
    old, kept = job(team="a"), job(kind="datagen", team="a")

    async def scenario(store: RedisStore, clock: list[float]) -> tuple[int, int]:
        for record in (old, kept):
            await store.create(record, idempotency_key=None, fingerprint=record.id)
            await store._redis.set(keys.outcome(record.id), "{}", ex=7 * 86400)  # as a task does
            for name in keys.task_shared(record.id):  # a study, claims: none has a TTL yet
                await store._redis.set(name, "1")  # (an earlier version's study: 2 logs)
            logs = [f"{keys.study_log_prefix(record.id)}{n}" for n in (0, 1)]
            await store._redis.mset(dict.fromkeys(logs, "{}"))
        await store.save_status(old, JobStatus(state=JobState.RUNNING), at=NOW)
        await finish(store, old, JobState.SUCCEEDED)
        clock[0] += RETENTION_S - 1
        early = await store.expire_due()
        clock[0] += 2
        return early, await store.expire_due()

    with redis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        early, late = with_store(own_redis.url, scenario)
        assert (early, late) == (0, 1)
        assert not client.exists(keys.job(old.id))
        assert not client.exists(keys.outcome(old.id))  # not left for the task's 7 days
        assert client.exists(keys.outcome(kept.id))
        assert not any(client.exists(name) for name in keys.task_shared(old.id))
        assert not client.keys(f"{keys.study_log_prefix(old.id)}*")
        assert all(client.exists(name) for name in keys.task_shared(kept.id))
        assert index_entries(client, old.id) == []
        assert len(index_entries(client, kept.id)) >= 8  # the job kept, still everywhere
        assert client.hgetall(keys.JOB_COUNTS) == {"jobs|queued|datagen": "1", "queue|": "1"}


def test_a_rare_state_filter_reads_only_its_matches(own_redis: RedisServer) -> None:
    common = [job() for _ in range(300)]
    rare = [job(kind="datagen", team="x") for _ in range(3)]

    async def scenario(store: RedisStore, clock: list[float]) -> None:
        for record in common + rare:
            await store.create(record, idempotency_key=None, fingerprint=record.id)
        for record in common:
            await finish(store, record, JobState.SUCCEEDED)
        for record in rare:
            await finish(store, record, JobState.FAILED)

    def listed(query: JobQuery) -> tuple[list[str], str | None]:
        async def read(store: RedisStore, clock: list[float]) -> tuple[list[str], str | None]:
            found, cursor = await store.find(query, cursor=None, limit=50)
            return [r.id for r in found], cursor

        return with_store(own_redis.url, read)

    with_store(own_redis.url, scenario)
    want = sorted((r.id for r in rare), reverse=True)
    with redis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        for query, expected, reads in (
            (JobQuery(state=JobState.FAILED, tenant="acme"), want, 3),
            (JobQuery(state=JobState.FAILED), want, 3),  # every tenant's (an admin)
            (JobQuery(kind="datagen", tenant="acme"), want, 3),
            (JobQuery(labels={"team": "x"}, tenant="acme"), want, 3),
            # two filters: the smaller index is walked, its entries checked against the other
            (JobQuery(state=JobState.FAILED, kind="noop", tenant="acme"), [], 3),
        ):
            client.config_resetstat()
            assert listed(query) == (expected, None), query
            assert calls(client, "hgetall") == reads, query
            assert calls(client) <= reads + 8, query  # sizes, a range or two, the records


def test_a_scrape_reads_the_same_whatever_the_number_of_unfinished_jobs(
    own_redis: RedisServer,
) -> None:
    def scrape_cost(unfinished: int) -> tuple[int, str]:
        async def scenario(store: RedisStore, clock: list[float]) -> str:
            for _ in range(unfinished):
                record = job(kind="train")
                await store.create(record, idempotency_key=None, fingerprint=record.id)
            metrics = Metrics(kinds=("train",))
            with redis.Redis.from_url(own_redis.url) as client:
                client.config_resetstat()
                await metrics.refresh(store)
                cost = calls(client)
            return f"{cost} " + metrics.exposition().decode()

        cost, text = with_store(own_redis.url, scenario).split(" ", 1)
        return int(cost), text

    few, text_few = scrape_cost(2)
    many, text_many = scrape_cost(100)
    assert few == many == 1
    assert 'kubetask_jobs{kind="train",state="queued"} 2.0' in text_few
    assert 'kubetask_jobs{kind="train",state="queued"} 102.0' in text_many


def test_records_from_before_the_indexes_get_them_once(own_redis: RedisServer) -> None:
    queued, failed, done = job(kind="datagen"), job(team="x"), job()

    def write_the_old_way(client: redis.Redis, record: JobRecord, state: JobState) -> None:
        status = JobStatus(state=state)
        client.hset(
            keys.job(record.id),
            mapping={
                "request": record.request.model_dump_json(),
                "created_at": record.created_at.isoformat(),
                "status": status.model_dump_json(),
                "fingerprint": record.id,
                "tenant": record.tenant,
            },
        )
        client.zadd(keys.JOBS_INDEX, {record.id: 0})
        client.zadd(keys.tenant_jobs(record.tenant), {record.id: 0})
        if state.terminal:
            client.expire(keys.job(record.id), 50)
        else:
            client.sadd(ACTIVE_SET, record.id)
            client.sadd(keys.tenant_active(record.tenant), record.id)

    async def scenario(store: RedisStore, clock: list[float]) -> tuple[int, int, list[str], int]:
        first = await store.build_indexes()
        again = await store.build_indexes()
        found, _ = await store.find(
            JobQuery(state=JobState.FAILED, tenant="acme"), cursor=None, limit=10
        )
        clock[0] += 51
        return first, again, [r.id for r in found], await store.expire_due()

    with redis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        write_the_old_way(client, queued, JobState.QUEUED)
        write_the_old_way(client, failed, JobState.FAILED)
        write_the_old_way(client, done, JobState.SUCCEEDED)
        first, again, found, expired = with_store(own_redis.url, scenario)
        assert (first, again, found, expired) == (3, 0, [failed.id], 2)
        assert client.hgetall(keys.JOB_COUNTS) == {"jobs|queued|datagen": "1", "queue|": "1"}
        assert index_entries(client, failed.id) == []
        assert client.ttl(keys.job(queued.id)) == -1
        assert json.loads(client.hget(keys.job(queued.id), "counted") or "[]") == [
            "jobs|queued|datagen",
            "queue|",
        ]


def test_a_state_change_moves_the_job_between_state_indexes(own_redis: RedisServer) -> None:
    record = job()

    async def scenario(store: RedisStore, clock: list[float]) -> list[list[str]]:
        await store.create(record, idempotency_key=None, fingerprint=record.id)
        seen = []
        for state in (JobState.RUNNING, JobState.SUCCEEDED):
            await store.save_status(record, JobStatus(state=state), at=NOW)
            per_state = []
            for s in JobState:
                found, _ = await store.find(JobQuery(state=s, tenant="acme"), cursor=None, limit=5)
                per_state += [s.value] * len(found)
            seen.append(per_state)
        return seen

    assert with_store(own_redis.url, scenario) == [["running"], ["succeeded"]]


def test_a_tenant_at_its_cap_on_stored_jobs_creates_nothing_until_one_goes(
    own_redis: RedisServer,
) -> None:
    """Finished jobs count (they are kept until purged or expired); another tenant does not;
    a replay of an Idempotency-Key still answers at the cap."""
    caps = TenantCaps(stored=2)
    kept, done, over, other, freed = job(), job(), job(), job(tenant="other"), job()

    async def create(store: RedisStore, record: JobRecord, key: str | None = None) -> str:
        try:
            made, _ = await store.create(record, idempotency_key=key, fingerprint="same", caps=caps)
        except TenantCapReached as exc:
            return f"{exc.cap} {exc.limit}"
        return made.id

    async def scenario(store: RedisStore, clock: list[float]) -> list[str]:
        said = [await create(store, kept, key="k"), await create(store, done)]
        await finish(store, done, JobState.SUCCEEDED)
        said += [
            await create(store, over),
            await create(store, over, key="k"),  # the replay: the original job
            await create(store, other),
        ]
        assert await store.forget(done.id)
        return [*said, await create(store, freed)]

    said = with_store(own_redis.url, scenario)
    assert said == [kept.id, done.id, "stored 2", kept.id, other.id, freed.id]
    with redis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        assert not client.exists(keys.job(over.id))


def test_two_purges_at_once_take_a_record_out_once(own_redis: RedisServer) -> None:
    """Both find it finished; one of them took it out (and counts the job)."""
    done = job()

    async def scenario(store: RedisStore, clock: list[float]) -> list[bool]:
        await store.create(done, idempotency_key=None, fingerprint=done.id)
        await finish(store, done, JobState.SUCCEEDED)
        return list(await asyncio.gather(store.forget(done.id), store.forget(done.id)))

    assert sorted(with_store(own_redis.url, scenario)) == [False, True]
