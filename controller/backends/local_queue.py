"""The local backend's queue of jobs waiting for a slot, oldest first (job ids sort by
age), each with the reason it waits. Pure bookkeeping: a freed slot goes to `oldest()`
without looking at any other job."""

from __future__ import annotations

import heapq


class WaitQueue:
    """Jobs waiting for a slot. Removal is lazy: a removed id leaves the heap when it
    reaches the top, so add, remove and oldest cost O(log n)."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}
        self._heap: list[str] = []
        self._in_heap: set[str] = set()

    def add(self, job_id: str, reason: str) -> None:
        self._reasons[job_id] = reason
        if job_id not in self._in_heap:
            self._in_heap.add(job_id)
            heapq.heappush(self._heap, job_id)

    def remove(self, job_id: str) -> str | None:
        """Take the job out; the reason it waited, None if it did not."""
        return self._reasons.pop(job_id, None)

    def reason(self, job_id: str) -> str | None:
        return self._reasons.get(job_id)

    def oldest(self, *, before: str | None = None) -> str | None:
        """The job that has waited longest (only if older than `before`), left in place."""
        while self._heap:
            head = self._heap[0]
            if head in self._reasons:
                return head if before is None or head < before else None
            heapq.heappop(self._heap)
            self._in_heap.discard(head)
        return None

    def __len__(self) -> int:
        return len(self._reasons)
