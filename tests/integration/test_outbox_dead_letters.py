"""The dead-letter list is bounded: the newest entries are kept, older ones dropped."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import redis.asyncio as aioredis

from kubetask import keys
from kubetask.controller.notify import Backoff, OutboxEntry
from kubetask.controller.outbox import Outbox
from kubetask.controller.redis_server import RedisServer, free_port
from tests.servers import own_database


def test_only_the_newest_dead_letters_are_kept(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_database(redis_server.url)
    nowhere = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: every POST fails

    async def scenario() -> list[str]:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        await client.flushdb()
        entries = [
            OutboxEntry(id=f"n{i}", channel="webhook", target=nowhere, body="{}") for i in range(5)
        ]
        for score, entry in enumerate(entries):
            await client.hset(keys.OUTBOX_ENTRIES, entry.id, entry.model_dump_json())
            await client.zadd(keys.OUTBOX, {entry.id: score})
        outbox = Outbox(
            client, backoff=Backoff(max_attempts=1), dead_letters=3, batch=1, clock=lambda: 1e9
        )
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in entries:  # one at a time, oldest first
                assert await outbox.deliver_due(http) == 1
        dead = [
            OutboxEntry.model_validate_json(raw).id
            for raw in await client.lrange(keys.OUTBOX_DEAD, 0, -1)
        ]
        assert await client.zcard(keys.OUTBOX) == 0
        await client.flushdb()
        await client.aclose()
        return dead

    with caplog.at_level(logging.ERROR, logger="kubetask.outbox"):
        dead = asyncio.run(scenario())
    assert dead == ["n2", "n3", "n4"]
    assert len([r for r in caplog.records if "dead-lettered" in r.message]) == 5
