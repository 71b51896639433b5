"""The per-tenant cap on open streams, against the real Redis: a stream that lives on keeps
its slot, renewal after renewal (the set of slots expired 61 s after the last stream was
opened, taking every live stream's slot with it: the cap let twice as many through)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from kubetask import keys
from kubetask.api.limits import STREAM_LEASE_S, TenantLimits
from tests.servers import own_database


def test_a_renewed_stream_keeps_the_set_of_slots_alive(redis_url: str) -> None:
    async def run() -> tuple[int, int, int]:
        client = aioredis.Redis.from_url(own_database(redis_url), decode_responses=True)
        now = [time.time()]
        limits = TenantLimits(client, submits_per_minute=10, streams=1, clock=lambda: now[0])
        key = keys.tenant_streams("team-a")
        try:
            lease = await limits.open_stream("team-a")
            await client.expire(key, 5)  # as it stands 56 s after the open
            now[0] += STREAM_LEASE_S / 2  # the stream lives on: due for renewal
            await lease.renew()
            ttl = await client.ttl(key)
            slots = await client.zcard(key)
            refused = 0
            try:
                await limits.open_stream("team-a")
            except Exception:
                refused = 1
            return ttl, slots, refused
        finally:
            await client.aclose()

    ttl, slots, refused = asyncio.run(run())
    assert ttl > STREAM_LEASE_S  # the whole lease again, from the renewal
    assert (slots, refused) == (1, 1)  # the cap of 1 still holds
