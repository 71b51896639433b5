"""Writes that may be late or lost, off the hot path: a bounded queue drained by one worker.

The kubernetes backend's Events (one per state transition) go through it, so that a job's
creation is one API write, not two. `offer` never waits: when the queue is full the item is
dropped with a log line. The worker writes in the order offered; a write that fails is
logged and skipped, and one that asks for a pause (`BackendError.retry_after_s`, the API
server's `Retry-After`) pauses the worker that long, at most `max_pause_s`. Before each
write the worker awaits `yield_to` (e.g. `InFlight.idle`: no job being created, and none for
a quiet spell), so while jobs are being created, one after another, the writes that matter go
first; but not while more than half the queue is taken (a burst longer than the queue would
otherwise lose most of its writes). `stop` writes what is queued, for at most `drain_s`,
then drops the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from kubetask.controller.backends.base import BackendError

log = logging.getLogger("kubetask.best_effort")

T = TypeVar("T")


class InFlight:
    """Counts the calls of a hot path in progress (`with in_flight.one():`); `idle` waits,
    at most `max_wait_s`, until there are none and none ended in the last `quiet_s` (a
    burst of calls one after another, with gaps between them, is not idle)."""

    def __init__(self, max_wait_s: float, *, quiet_s: float = 0.0) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._max_wait_s = max_wait_s
        self._quiet_s = quiet_s
        self._last_end = -math.inf  # loop time

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            self._last_end = asyncio.get_running_loop().time()
            if not self._count:
                self._idle.set()

    async def idle(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while (left := deadline - loop.time()) > 0:
            if self._count:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), left)
                continue
            quiet_for = loop.time() - self._last_end
            if quiet_for >= self._quiet_s:
                return
            await asyncio.sleep(min(self._quiet_s - quiet_for, left))


class BestEffortWriter(Generic[T]):
    """Calls `write(item)` for each item offered, one at a time, in order, in the background."""

    def __init__(
        self,
        write: Callable[[T], Awaitable[None]],
        *,
        name: str,
        capacity: int = 1000,
        max_pause_s: float = 10.0,
        describe: Callable[[T], str] = repr,
        yield_to: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._write = write
        self._name = name
        self._describe = describe  # an item, in a log line
        self._yield_to = yield_to
        self._queue: asyncio.Queue[T] = asyncio.Queue(capacity)
        self._max_pause_s = max_pause_s
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    def offer(self, item: T) -> bool:
        """Queue `item` (starting the worker if need be: call it on the event loop); False
        (logged) when the queue is full and it is dropped."""
        self.start()
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "%s: queue full (%d), dropped %s",
                self._name,
                self._queue.maxsize,
                self._describe(item),
            )
            return False
        return True

    async def join(self) -> None:
        """Wait until every item offered so far is written (or given up)."""
        await self._queue.join()

    async def stop(self, drain_s: float = 2.0) -> None:
        """Write what is queued, for at most `drain_s`, then stop the worker."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None
        left = self._queue.qsize()
        if left:
            self.dropped += left
            log.warning("%s: stopped with %d writes not done", self._name, left)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            pause = 0.0
            try:
                backlog = self._queue.qsize() + 1  # this item included
                if self._yield_to is not None and backlog <= self._queue.maxsize // 2:
                    await self._yield_to()
                await self._write(item)
            except Exception as exc:
                log.warning("%s: %s not written: %s", self._name, self._describe(item), exc)
                if isinstance(exc, BackendError) and exc.retry_after_s:
                    pause = min(exc.retry_after_s, self._max_pause_s)
            finally:
                self._queue.task_done()
            if pause:
                await asyncio.sleep(pause)
