"""An Idempotency-Key whose job goes (purged, expired) between the create script and the
read of the job, under concurrent retries, on a real server: exactly one new job, which
every retry answers (two and three were made, and ran)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis.asyncio as aioredis

from kubetask import keys
from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.redis_server import RedisServer
from kubetask.controller.store import RedisStore
from kubetask.models import JobRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job() -> JobRecord:
    return JobRecord(id=new_job_id(NOW), request=JobRequest(kind="noop"), created_at=NOW)


class PurgedAsRead(RedisStore):
    """The old job is purged just after both retries' scripts found it: the first to read
    it purges it; the second reads it only once the first retry is done."""

    def __init__(self, client: aioredis.Redis, old: str) -> None:
        super().__init__(client, retention_s=3600, idempotency_ttl_s=3600)
        self.old = old
        self.both_read = asyncio.Barrier(2)
        self.first_done = asyncio.Event()
        self.readers = 0

    async def get(self, job_id: str) -> JobRecord | None:
        if job_id != self.old:
            return await super().get(job_id)
        self.readers += 1
        if self.readers > 2:
            return await super().get(job_id)
        first = self.readers == 1
        await self.both_read.wait()
        if first:
            await self._redis.delete(keys.job(self.old))  # the purge
        else:
            await self.first_done.wait()
        return None


def test_retries_racing_a_purge_of_the_keys_job_make_one_new_job(own_redis: RedisServer) -> None:
    old = job()

    async def scenario() -> tuple[list[tuple[str, bool]], str | None]:
        client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
        try:
            plain = RedisStore(client, retention_s=3600, idempotency_ttl_s=3600)
            await plain.create(old, idempotency_key="k", fingerprint="same")
            store = PurgedAsRead(client, old.id)

            async def retry(first: bool) -> tuple[str, bool]:
                made, created = await store.create(job(), idempotency_key="k", fingerprint="same")
                if first:
                    store.first_done.set()
                return made.id, created

            answers = await asyncio.gather(retry(True), retry(False))
            named = await client.get(keys.idempotency("default", "k"))
            return list(answers), None if named is None else str(named)
        finally:
            await client.aclose()

    answers, named = asyncio.run(scenario())
    made = {job_id for job_id, created in answers if created}
    assert len(made) == 1, answers  # one new job
    assert {job_id for job_id, _ in answers} == made  # both answered with it
    assert named in made
