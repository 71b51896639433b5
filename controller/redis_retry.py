"""How the API's Redis client tries a command again: as redis-py does (back-off, a number of
tries) for a connection that dropped (a restarted server is back within about a second),
but never once `budget_s` has passed since the first try began: a server that hangs answers
none of them, and each try would wait the whole socket timeout again."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff

T = TypeVar("T")


class RetryWithin(Retry):
    def __init__(
        self,
        backoff: AbstractBackoff,
        retries: int,
        *,
        budget_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(backoff, retries)
        self._budget_s = budget_s
        self._clock = clock

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        deadline = self._clock() + self._budget_s

        def retryable(error: Exception) -> bool:
            in_time = self._clock() < deadline
            return in_time and (is_retryable is None or is_retryable(error))

        return await super().call_with_retry(do, fail, retryable, with_failure_count)
