"""The event hub against a real Redis restarted under it (killed, started again on the same
folder and address): the subscription comes back (redis-py may restore it by itself), and
what was published meanwhile was missed, so every listener gets RESYNC and each stream
re-reads the history; then live events flow again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from kubetask import keys
from kubetask.api.runtime import subscriptions_client
from kubetask.controller.bus import RESYNC, EventHub
from kubetask.controller.redis_server import RedisServer

JOB = "0000000000abcdef"


def test_a_restarted_redis_makes_every_listener_resync(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    url = server.start()

    async def run() -> list[str]:
        subscriber = subscriptions_client(url)  # as the server makes it
        hub = EventHub(subscriber)
        running = asyncio.create_task(hub.run())
        try:
            await asyncio.wait_for(hub.ready.wait(), 5)
            async with hub.listen(JOB) as queue:
                server.kill()
                await asyncio.to_thread(server.start)
                seen = [await asyncio.wait_for(queue.get(), 10)]
                async with aioredis.Redis.from_url(url, decode_responses=True) as admin:
                    for _ in range(50):  # until the hub is subscribed again
                        if await admin.publish(keys.progress_channel(JOB), "after"):
                            break
                        await asyncio.sleep(0.1)
                seen.append(await asyncio.wait_for(queue.get(), 5))  # and live again
                return seen
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await subscriber.aclose()

    try:
        assert asyncio.run(run()) == [RESYNC, "after"]
    finally:
        server.stop()
