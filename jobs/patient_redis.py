"""The Redis client of a task that cannot go on without Redis: `hpo`/`nas`'s shared study and
`explain-batch`'s claims live there. A command that finds Redis away (restarting; the
embedded one comes back with its controller) is tried again, with back-off, for up to
`WAIT_S`; then its error stands and the task fails as any failure does (and is retried).
A server that hangs is given `COMMAND_TIMEOUT_S` per try.

Only commands whose repeat changes nothing go through it, or scripts that tell a repeat
themselves (a token per write): a command whose answer was lost may have run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

WAIT_S = 600.0  # how long a task waits for Redis to come back
COMMAND_TIMEOUT_S = 60.0  # a try's wait for an answer (a server that hangs)
CONNECT_TIMEOUT_S = 5.0

log = logging.getLogger("kubetask.task")
T = TypeVar("T")


class RetryFor(Retry):
    """redis-py's retries (back-off, doubling to 2 s) of a dropped or refused connection, for
    as long as `wait_s` from the command's first try, saying once that it waits."""

    def __init__(self, wait_s: float = WAIT_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ExponentialBackoff(cap=2.0, base=0.1), retries=-1)
        self._wait_s = wait_s
        self._clock = clock

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        deadline = self._clock() + self._wait_s
        said = False

        def retryable(error: Exception) -> bool:
            nonlocal said
            if self._clock() >= deadline or not (is_retryable is None or is_retryable(error)):
                return False
            if not said:
                said = True
                log.warning("Redis is away (%s); waiting up to %.0f s for it", error, self._wait_s)
            return True

        return super().call_with_retry(do, fail, retryable, with_failure_count)


def patient_client(url: str, *, wait_s: float = WAIT_S) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        retry=RetryFor(wait_s),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
    )
