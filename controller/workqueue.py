"""The reconciler's queue of job ids to sync: each id at most once, changes before resyncs.

A change (a submission, a cancel, the backend telling of one) is urgent; a resync's look at
every unfinished job is not, so that with 10,000 jobs open a change waits for none of
their syncs (controller-runtime's priority queue does the same with the items of its
initial list and resyncs). An id queued for the resync and then changed is promoted.

The periodic resync's entries are also `paced`: only `paced_at_once` of them are out at a
time, however many workers wait. Sixteen of the kubernetes backend's workers on the resync
of 2,000 queued jobs kept the event loop so busy that a submission took 26 ms instead of 6
for the second or two it lasted; a periodic look seldom finds work to wait for. The look
at every job when the reconciler starts leading is not paced: it creates the Jobs of a
backlog submitted meanwhile, each waiting on the API server.
"""

from __future__ import annotations

import asyncio
from collections import deque

PACED_AT_ONCE = 2


class WorkQueue:
    def __init__(self, *, paced_at_once: int = PACED_AT_ONCE) -> None:
        self._urgent: deque[str] = deque()
        self._background: deque[str] = deque()
        self._queued: dict[str, bool] = {}  # id -> urgent; its entry in the other deque is stale
        self._paced: set[str] = set()  # queued background ids that are paced
        self._paced_out: set[str] = set()  # paced ids given out, not done yet
        self._paced_at_once = paced_at_once
        self._getters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._queued)

    def put(self, job_id: str, *, urgent: bool = True, paced: bool = False) -> None:
        """Queue `job_id` unless it is queued already (an urgent put promotes it, an unpaced
        one unpaces it); `paced` only for a background entry."""
        queued = self._queued.get(job_id)
        if queued is None or (urgent and not queued):
            self._queued[job_id] = urgent
            (self._urgent if urgent else self._background).append(job_id)
            if paced and not urgent:
                self._paced.add(job_id)
            else:
                self._paced.discard(job_id)
            self._wake_one()
        elif not paced and job_id in self._paced:
            self._paced.discard(job_id)
            self._wake_one()

    async def get(self) -> str:
        """The next id: the oldest urgent one, else the oldest of the resync (a paced one
        while fewer than `paced_at_once` are out). Give each id back with `done`."""
        while (job_id := self._take()) is None:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter.done() and not getter.cancelled():
                    self._wake_one()  # it was woken: pass that on
                raise
        return job_id

    def done(self, job_id: str) -> None:
        """The sync of an id from `get` ended (a paced one's place is free again)."""
        if job_id in self._paced_out:
            self._paced_out.discard(job_id)
            self._wake_one()

    def _take(self) -> str | None:
        while self._urgent:
            job_id = self._urgent.popleft()
            if self._queued.get(job_id) is True:  # else taken already
                del self._queued[job_id]
                return job_id
        while self._background:
            job_id = self._background[0]
            if self._queued.get(job_id) is not False:  # promoted, or taken already
                self._background.popleft()
                continue
            if job_id in self._paced:
                if len(self._paced_out) >= self._paced_at_once:
                    return None
                self._paced.discard(job_id)
                self._paced_out.add(job_id)
            self._background.popleft()
            del self._queued[job_id]
            return job_id
        return None

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return
