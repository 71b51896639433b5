"""The controller's side of the event log: history for late subscribers, the latest progress
per job, the outcomes tasks left, and one shared pub/sub subscription fanned out to local
listeners. State events are appended by the store, with the status they belong to
(`RedisStore.save_status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kubetask import eventlog, keys
from kubetask.controller.outcomes import parse_outcome
from kubetask.models import Outcome, ProgressEvent, WorkerProgress

log = logging.getLogger("kubetask.bus")

QUEUE_SIZE = 10_000
RESYNC = "resync"  # put on every listener's queue when live events may have been missed


class EventBus:
    """Reads a job's events (Redis sorted set + pub/sub, see kubetask.eventlog)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def history_raw(self, job_id: str, *, since: int = 0) -> list[str]:
        """Events with seq > since as stored (JSON), oldest first, as far back as the bounded
        history goes."""
        raw = await self._redis.zrangebyscore(keys.history(job_id), f"({since}", "+inf")
        return [str(item) for item in raw]

    async def history_until(self, job_id: str, *, until: int, count: int = 16) -> list[str]:
        """The last `count` stored events with seq <= until, newest first."""
        raw = await self._redis.zrevrangebyscore(
            keys.history(job_id), until, "-inf", start=0, num=count
        )
        return [str(item) for item in raw]

    async def last_seq(self, job_id: str) -> int:
        value = await self._redis.get(keys.seq(job_id))
        return int(value) if value else 0

    async def latest_progress(self, job_ids: list[str]) -> dict[str, ProgressEvent]:
        if not job_ids:
            return {}
        raw = await self._redis.mget([keys.latest_progress(i) for i in job_ids])
        latest: dict[str, ProgressEvent] = {}
        for job_id, item in zip(job_ids, raw, strict=True):
            if item:
                event = eventlog.parse_event(item)
                if isinstance(event, ProgressEvent):
                    latest[job_id] = event
        return latest

    async def workers(self, job_id: str, completions: int) -> list[WorkerProgress]:
        """Each worker's progress, as the event log's script last tallied it."""
        raw = await self._redis.hgetall(keys.progress_workers(job_id))
        return eventlog.parse_workers({str(k): str(v) for k, v in raw.items()}, completions)

    async def outcomes(self, job_id: str, completions: int) -> dict[int, Outcome]:
        """Each completion index's outcome, as its task stored it."""
        raw = await self._redis.mget([keys.outcome(job_id, i) for i in range(completions)])
        found: dict[int, Outcome] = {}
        for index, item in enumerate(raw):
            outcome = parse_outcome(str(item) if item else None)
            if outcome is not None:
                found[index] = outcome
        return found


class EventHub:
    """One pattern subscription per process; each listener gets its job's raw events.

    A listener whose queue overflows, or every listener after the subscription was lost and
    made again, receives RESYNC and should re-read the history from its last seq.
    """

    def __init__(
        self, client: aioredis.Redis, *, on_event: Callable[[str], None] | None = None
    ) -> None:
        self._redis = client
        self._on_event = on_event  # sees every event received (metrics)
        self._listeners: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._everything: set[asyncio.Queue[str]] = set()  # listeners to all jobs' events
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()  # the process is shutting down: its streams end

    def close(self) -> None:
        """Tell every stream to end (the process is shutting down); new ones end at once."""
        self.closed.set()

    async def wait_unheard(self, timeout_s: float) -> bool:
        """Wait (up to `timeout_s`) until nobody listens; whether that came."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._listeners or self._everything:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    @contextlib.asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._listeners[job_id].add(queue)
        try:
            yield queue
        finally:
            self._listeners[job_id].discard(queue)
            if not self._listeners[job_id]:
                del self._listeners[job_id]

    @contextlib.asynccontextmanager
    async def listen_all(self) -> AsyncIterator[asyncio.Queue[str]]:
        """Every job's raw events (the dashboard's live table), RESYNC as for `listen`."""
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._everything.add(queue)
        try:
            yield queue
        finally:
            self._everything.discard(queue)

    async def run(self) -> None:
        """Keep the subscription up; on every (re)connect tell listeners to resync."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(keys.PROGRESS_PATTERN)
                    if pubsub.connection is not None:
                        pubsub.connection.register_connect_callback(self._reconnected)
                    self.ready.set()
                    self._broadcast_resync()
                    async for message in pubsub.listen():
                        if message["type"] == "pmessage":
                            if self._on_event is not None:
                                self._on_event(message["data"])
                            self._deliver(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                self.ready.clear()
                log.warning("event subscription lost (%s); retrying", exc)
                await asyncio.sleep(0.5)

    async def _reconnected(self, connection: object) -> None:
        """redis-py re-subscribes a dropped subscription by itself (a Redis restarted): what
        was published meanwhile was missed, so listeners resync as after one of ours."""
        log.warning("event subscription restored after its connection dropped; resyncing")
        self._broadcast_resync()

    def _deliver(self, channel: str, data: str) -> None:
        for queue in self._listeners.get(keys.job_id_from_channel(channel), ()):
            _offer(queue, data)
        for queue in self._everything:
            _offer(queue, data)

    def _broadcast_resync(self) -> None:
        for queue in (*self._everything, *(q for qs in self._listeners.values() for q in qs)):
            _offer(queue, RESYNC)


def _offer(queue: asyncio.Queue[str], item: str) -> None:
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        # Too slow a reader: drop its backlog and let it catch up from the history.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESYNC)
