"""The reconciler's queue of job ids to sync: each id at most once, changes before resyncs.

A change (a submission, a cancel, the backend telling of one) is urgent; the periodic resync
of every unfinished job is not, so that with 10,000 jobs open a change waits for none of
their syncs (controller-runtime's priority queue does the same with the items of its
initial list and resyncs). An id queued for the resync and then changed is promoted.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkQueue:
    def __init__(self) -> None:
        self._urgent: deque[str] = deque()
        self._background: deque[str] = deque()
        self._queued: dict[str, bool] = {}  # id -> urgent; its entry in the other deque is stale
        self._count = asyncio.Semaphore(0)  # one per queued id: a put wakes one getter

    def __len__(self) -> int:
        return len(self._queued)

    def put(self, job_id: str, *, urgent: bool = True) -> None:
        """Queue `job_id` unless it is queued already (an urgent put promotes it)."""
        queued = self._queued.get(job_id)
        if queued is None or (urgent and not queued):
            self._queued[job_id] = urgent
            (self._urgent if urgent else self._background).append(job_id)
        if queued is None:
            self._count.release()

    async def get(self) -> str:
        """The next id: the oldest urgent one, else the oldest of the resync."""
        await self._count.acquire()
        for urgent, ids in ((True, self._urgent), (False, self._background)):
            while ids:
                job_id = ids.popleft()
                if self._queued.get(job_id) is urgent:  # else promoted, or taken already
                    del self._queued[job_id]
                    return job_id
        raise AssertionError("a queued id in neither deque")  # the count says there is one
