"""How a replica that does not lead hands the leader the jobs it accepted or was asked to
cancel: their ids on a Redis pub/sub channel, which the leader's reconciler listens to.

Pub/sub drops what nobody hears (no leader at that moment, a reconnecting subscriber), so
this only makes the leader prompt: it resyncs every unfinished job when it starts leading,
whenever its subscription (re)starts, and every `resync_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from kubetask import keys

log = logging.getLogger("kubetask.wakeups")


class WakeUps:
    def __init__(self, redis: aioredis.Redis, *, reconnect_s: float = 0.5) -> None:
        self._redis = redis
        self._reconnect_s = reconnect_s
        self._sending: set[asyncio.Task[None]] = set()
        self._on_subscribed: Callable[[], None] = lambda: None

    async def _reconnected(self, connection: object) -> None:
        """redis-py restored a dropped subscription by itself: announcements were missed."""
        log.warning("wake-up subscription restored after its connection dropped")
        self._on_subscribed()

    def announce(self, job_id: str) -> None:
        """Tell the leader (in the background: callers are synchronous)."""
        task = asyncio.get_running_loop().create_task(self._publish(job_id))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, job_id: str) -> None:
        try:
            await self._redis.publish(keys.WAKEUP, job_id)
        except Exception as exc:  # the leader's resync finds the job all the same
            log.warning("could not announce job %s to the leader: %s", job_id, exc)

    async def listen(
        self, on_job: Callable[[str], None], on_subscribed: Callable[[], None]
    ) -> None:
        """Call `on_job(id)` for each announced job, forever; `on_subscribed()` each time the
        subscription (re)starts, since whatever was announced before it was missed."""
        self._on_subscribed = on_subscribed
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(keys.WAKEUP)
                    on_subscribed()
                    if pubsub.connection is not None:  # redis-py re-subscribes by itself
                        pubsub.connection.register_connect_callback(self._reconnected)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            on_job(str(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("wake-up subscription lost (%s); subscribing again", exc)
                await asyncio.sleep(self._reconnect_s)
