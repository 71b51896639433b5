"""Task logs archived into the artifact store when a job ends, so `GET /v1/jobs/{id}/logs`
still answers after the backend dropped them (the local backend's folder TTL, a Job's
`ttlSecondsAfterFinished`).

The archive is `<job id>/logs/output.log`: the log as the backend gives it whole (each
worker's last attempt, under a header per index when there are several). It lives inside
the job's prefix on purpose: it is listed and downloaded as one of the job's artifacts, and
it goes with them (`DELETE ?purge=true`, the retention sweep) under the one rule that a job's
files are its prefix.

Off the hot path: the reconciler only `offer`s a job id when it records the job's end (never
waits; a full queue drops the id with a log line). A cancelled job ends before its tasks do
(they stop on SIGTERM, writing their last lines): the worker waits for them (`stopped`, at
most STOP_WAIT_S) without holding up the jobs behind it, then reads the backend's log and
writes it in a thread; a failure is tried again later (exponential back-off, `attempts` in
all), without holding up the jobs queued behind it either. At shutdown the queue is drained for a
moment (`drain`); what is left then is not archived (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kubetask.storage import ArtifactStore, NotFound

log = logging.getLogger("kubetask.archive")

LOG_FILE = "logs/output.log"  # within the job's prefix
CAPACITY = 1000  # jobs waiting to be archived; beyond, ids are dropped (logged)

ReadLog = Callable[[str], Awaitable[str | None]]  # job id -> its whole log, None: none
Wanted = Callable[[str], Awaitable[bool]]  # job id -> still worth archiving (not purged)
Stopped = Callable[[str], Awaitable[bool]]  # job id -> none of its tasks runs any more
STOP_POLL_S = 0.5  # how often the tasks of an ended job are looked at until they stopped
STOP_WAIT_S = 120.0  # beyond, the log is archived as it is (a task that will not die)


def log_key(job_id: str) -> str:
    """Where the job's log is archived in the artifact store."""
    return f"{job_id}/{LOG_FILE}"


def last_lines(text: str, tail: int | None) -> str:
    """The last `tail` lines of `text` (all when None), as the backends' `logs` cut them."""
    if not tail:
        return text
    return "".join(text.splitlines(keepends=True)[-tail:])


async def archived_log(store: ArtifactStore, job_id: str, *, tail: int | None) -> str | None:
    """The job's archived log (its last `tail` lines), or None when none was archived."""

    def read() -> str | None:
        try:
            with store.open(log_key(job_id)) as reader:
                return b"".join(reader).decode(errors="replace")
        except NotFound:
            return None

    text = await asyncio.to_thread(read)
    return None if text is None else last_lines(text, tail)


@dataclass(frozen=True)
class Backoff:
    """How a failed archive is tried again: `base_s` doubling up to `max_s`, `attempts` in all
    (by default about an hour: an object store away for a while, restarted, being fixed)."""

    attempts: int = 36
    base_s: float = 2.0
    max_s: float = 120.0

    def delay_s(self, attempt: int) -> float:
        """The wait after the `attempt`-th failure (1 for the first)."""
        return min(self.base_s * 2.0 ** min(attempt - 1, 32), self.max_s)


class LogArchiver:
    """Copies each ended job's log from the backend into the artifact store, in the background."""

    def __init__(
        self,
        *,
        read_log: ReadLog,
        store: ArtifactStore,
        wanted: Wanted | None = None,
        stopped: Stopped | None = None,
        backoff: Backoff = Backoff(),
        capacity: int = CAPACITY,
    ) -> None:
        self._read_log = read_log
        self._store = store
        self._wanted = wanted
        self._stopped = stopped
        self._waiting: dict[str, float] = {}  # job id -> since when its tasks were waited for
        self._last_seen: dict[str, str] = {}  # job id -> its log as last read while waiting
        self._backoff = backoff
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue(capacity)
        self._later: set[asyncio.TimerHandle] = set()
        self._archiving: dict[str, asyncio.Event] = {}  # job id -> set when its try is over
        self.dropped: list[str] = []  # job ids never archived (queue full, or out of attempts)

    def offer(self, job_id: str) -> bool:
        """Archive this job's log soon (call it on the event loop; it never waits). False,
        with a log line, when the queue is full and the job's log is not archived."""
        return self._put(job_id, 1)

    def _put(self, job_id: str, attempt: int) -> bool:
        try:
            self._queue.put_nowait((job_id, attempt))
        except asyncio.QueueFull:
            self.dropped.append(job_id)
            log.warning(
                "log archive queue full (%d): job %s's log not archived",
                self._queue.maxsize,
                job_id,
            )
            return False
        return True

    async def join(self) -> None:
        """Until every job offered so far is archived, or given up on (retries included)."""
        while True:
            await self._queue.join()
            if not self._later:
                return
            await asyncio.sleep(0.05)

    async def drain(self, timeout_s: float) -> int:
        """At shutdown: let the worker archive what is queued, for at most `timeout_s`; how
        many jobs were left unarchived (logged)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.join(), timeout_s)
        left = self._queue.qsize() + len(self._later)
        if left:
            log.warning("stopping with %d jobs' logs not archived", left)
        return left

    async def run(self) -> None:
        """Archive what is offered, forever."""
        try:
            while True:
                job_id, attempt = await self._queue.get()
                try:
                    await self._attempt(job_id, attempt)
                finally:
                    self._queue.task_done()
        finally:
            for handle in self._later:
                handle.cancel()
            self._later.clear()

    async def _attempt(self, job_id: str, attempt: int) -> None:
        if not await self._tasks_over(job_id):
            self._later_put(job_id, attempt, STOP_POLL_S)  # not a try: its log is not whole yet
            return
        try:
            await self.archive(job_id)
        except Exception as exc:
            if attempt >= self._backoff.attempts:
                self.dropped.append(job_id)
                log.error("job %s's log not archived after %d tries: %s", job_id, attempt, exc)
                return
            delay = self._backoff.delay_s(attempt)
            log.warning("archiving job %s's log: %s; trying again in %.0fs", job_id, exc, delay)
            self._later_put(job_id, attempt + 1, delay)

    async def _tasks_over(self, job_id: str) -> bool:
        """Whether the job's tasks have stopped (a cancelled job's still write their last
        lines), or it waited STOP_WAIT_S for them: the log is archived as it is then. While
        they stop, the log is read each time (a deleted Job's pods vanish once stopped, their
        log with them: the last read is then what is kept)."""
        if self._stopped is None or await self._stopped(job_id):
            self._waiting.pop(job_id, None)
            return True
        since = self._waiting.setdefault(job_id, time.monotonic())
        await self.remember(job_id)
        if time.monotonic() - since < STOP_WAIT_S:
            return False
        log.warning(
            "job %s's tasks still run after %.0f s: its log archived as it is", job_id, STOP_WAIT_S
        )
        self._waiting.pop(job_id, None)
        return True

    async def remember(self, job_id: str) -> None:
        """Read the job's log now and keep it, should a later read have lost part of it:
        asked while its tasks stop, and before its pods go (a cancel deletes them, and the
        Job controller deletes a failed Job's running workers, their logs with them). A log
        only grows, so the longest read is the wholest."""
        with contextlib.suppress(Exception):  # a read that fails: the next one may not
            text = await self._read_log(job_id)
            if text is not None and len(text) >= len(self._last_seen.get(job_id, "")):
                self._last_seen[job_id] = text

    def _later_put(self, job_id: str, attempt: int, delay: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def again() -> None:
            if handle is not None:
                self._later.discard(handle)
            self._put(job_id, attempt)

        handle = loop.call_later(delay, again)
        self._later.add(handle)

    async def settled(self, job_id: str) -> None:
        """Once no try of this job's archive is under way (a purge waits for it, so that a
        log being written as the record goes is deleted after it, not left behind)."""
        while (over := self._archiving.get(job_id)) is not None:
            await over.wait()

    async def archive(self, job_id: str) -> bool:
        """One try: the backend's log of the job into the store. False when there was nothing
        to archive (no log, or the job was purged meanwhile); raises what failed."""
        over = self._archiving[job_id] = asyncio.Event()
        try:
            return await self._archive(job_id)
        finally:
            del self._archiving[job_id]
            over.set()

    async def _archive(self, job_id: str) -> bool:
        seen = self._last_seen.pop(job_id, None)
        if self._wanted is not None and not await self._wanted(job_id):
            return False
        text = await self._read_log(job_id)
        if seen is not None and (text is None or len(seen) > len(text)):
            text = seen  # pods went as they stopped (and their logs): the log as last read
        if text is None:  # an empty log is kept: '' then tells it apart from a lost one
            log.info("job %s ended with no log to archive", job_id)
            return False
        data = text.encode()
        await asyncio.to_thread(self._store.write, log_key(job_id), [data])
        log.info("job %s's log archived (%d bytes)", job_id, len(data))
        return True
