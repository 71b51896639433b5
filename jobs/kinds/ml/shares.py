"""How the workers of one job share out a list of items (`explain-batch`'s signals).

Each worker claims the next unclaimed item just before working on it (an atomic `HSETNX` of
the item's position to the worker's completion index), so the workers of an Indexed Job
split the list between them whatever their number (a task is not told how many completions
its job has), and a faster worker takes more. A retried worker (the same completion index)
takes its own claims back, so nothing it claimed before dying is lost. Items finished by any
worker are counted in a set, for the job's aggregate progress. Without a Redis URL one
worker takes everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import redis

from kubetask import keys


class Shares(Protocol):
    def claim(self, position: int) -> bool:
        """True when the item at `position` is this worker's (claimed now, or before)."""
        ...

    def finish(self, position: int) -> int:
        """Mark the item done; how many items the whole job has done."""
        ...

    def done(self) -> int:
        """How many items the whole job has done."""
        ...

    def close(self) -> None: ...


class RedisShares:
    """Claims and done items in Redis, shared by every worker of the job and its retries."""

    def __init__(self, url: str, *, job_id: str, worker: int) -> None:
        self._client = redis.Redis.from_url(url)
        self._claimed = keys.shares_claimed(job_id)
        self._done = keys.shares_done(job_id)
        self._worker = worker

    def claim(self, position: int) -> bool:
        if self._client.hsetnx(self._claimed, str(position), str(self._worker)):
            return True
        owner = self._client.hget(self._claimed, str(position))
        return owner is not None and int(owner) == self._worker

    def finish(self, position: int) -> int:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._done, str(position))
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

    def claim(self, position: int) -> bool:
        return True

    def finish(self, position: int) -> int:
        self._done.add(position)
        return len(self._done)

    def done(self) -> int:
        return len(self._done)

    def close(self) -> None:
        pass


def my_share(shares: Shares, count: int) -> Iterator[int]:
    """The positions in range(count) this worker gets, each claimed only when asked for."""
    for position in range(count):
        if shares.claim(position):
            yield position
