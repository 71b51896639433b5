"""How the workers of one job share out a list of items (`explain-batch`'s signals).

Each worker claims the next unclaimed items just before working on them, a group at a time
(an atomic `HSETNX` of each item's position to the worker's completion index, the group's in
one round trip), so the workers of an Indexed Job split the list between them whatever their
number (a task is not told how many completions its job has), and a faster worker takes
more. A retried worker (the same completion index) takes its own claims back, so nothing it
claimed before dying is lost. Items finished by any worker are counted in a set (a group's
in one round trip), for the job's aggregate progress. Every command here can be sent
twice to the same effect, so a worker waits for Redis while it is away (the task's patient
client, jobs/patient_redis.py). Without a Redis URL one worker takes everything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from kubetask import keys
from kubetask.jobs.patient_redis import patient_client


class Shares(Protocol):
    def claim(self, positions: Sequence[int]) -> list[int]:
        """Those of `positions` whose items are this worker's (claimed now, or before)."""
        ...

    def finish(self, positions: Sequence[int]) -> int:
        """Mark the items done; how many items the whole job has done."""
        ...

    def done(self) -> int:
        """How many items the whole job has done."""
        ...

    def close(self) -> None: ...


class RedisShares:
    """Claims and done items in Redis, shared by every worker of the job and its retries."""

    def __init__(self, url: str, *, job_id: str, worker: int) -> None:
        self._client = patient_client(url)
        self._claimed = keys.shares_claimed(job_id)
        self._done = keys.shares_done(job_id)
        self._worker = worker

    def claim(self, positions: Sequence[int]) -> list[int]:
        with self._client.pipeline(transaction=False) as pipe:
            for position in positions:
                pipe.hsetnx(self._claimed, str(position), str(self._worker))
            pipe.hmget(self._claimed, [str(position) for position in positions])
            *_, owners = pipe.execute()
        return [
            position
            for position, owner in zip(positions, owners, strict=True)
            if owner is not None and int(owner) == self._worker
        ]

    def finish(self, positions: Sequence[int]) -> int:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._done, *(str(position) for position in positions))
            pipe.scard(self._done)
            _, done = pipe.execute()
        return int(done)

    def done(self) -> int:
        return int(self._client.scard(self._done))

    def expire(self, ttl_s: int) -> None:
        """The keys live as long as the job's outcomes (a later worker sets it again)."""
        with self._client.pipeline(transaction=False) as pipe:
            pipe.expire(self._claimed, ttl_s)
            pipe.expire(self._done, ttl_s)
            pipe.execute()

    def close(self) -> None:
        self._client.close()


class LocalShares:
    """A single worker's shares (no Redis): every item is its own."""

    def __init__(self) -> None:
        self._done: set[int] = set()

    def claim(self, positions: Sequence[int]) -> list[int]:
        return list(positions)

    def finish(self, positions: Sequence[int]) -> int:
        self._done.update(positions)
        return len(self._done)

    def done(self) -> int:
        return len(self._done)

    def close(self) -> None:
        pass


def my_share(shares: Shares, count: int, size: int) -> Iterator[list[int]]:
    """The positions in range(count) this worker gets, in groups of `size` (the last may be
    shorter), each group claimed only when asked for: the next positions, as many as the
    group lacks, until it is full (positions other workers hold are passed over)."""
    start = 0
    while start < count:
        group: list[int] = []
        while len(group) < size and start < count:
            window = range(start, min(start + size - len(group), count))
            group += shares.claim(window)
            start = window.stop
        if group:
            yield group
