"""The API's Redis retry: a dropped connection is tried again (a restarting server), but not
once the budget since the first try has passed (a hung server, whose every try would wait
the whole socket timeout)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from kubetask.api.settings import Settings
from kubetask.controller.redis_retry import RetryWithin


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def attempts(*, each_takes_s: float, failures: int) -> tuple[int, bool]:
    """How many tries a command that fails `failures` times (each taking `each_takes_s`)
    gets, and whether it came through."""
    clock = Clock()
    retry = RetryWithin(NoBackoff(), 5, budget_s=3.0, clock=clock)
    tries = 0

    async def do() -> str:
        nonlocal tries
        tries += 1
        clock.now += each_takes_s
        if tries <= failures:
            raise RedisConnectionError("dropped")
        return "ok"

    async def fail(error: Exception) -> None:
        return None

    try:
        asyncio.run(retry.call_with_retry(do, fail))
    except RedisConnectionError:
        return tries, False
    return tries, True


def test_a_dropped_connection_is_tried_again_within_the_budget() -> None:
    assert attempts(each_takes_s=0.01, failures=3) == (4, True)


def test_a_try_that_waited_past_the_budget_is_not_sent_again() -> None:
    assert attempts(each_takes_s=10.0, failures=1) == (1, False)


@pytest.mark.parametrize(("each_takes_s", "tries"), [(1.0, 3), (0.5, 6)])
def test_tries_stop_at_the_budget_or_the_count(each_takes_s: float, tries: int) -> None:
    assert attempts(each_takes_s=each_takes_s, failures=10) == (tries, False)


def test_the_redis_timeout_must_leave_room_for_the_fsync_wait() -> None:
    """WAITAOF waits up to the fsync timeout on the server: a shorter socket timeout would
    cut every slow fsync as a hung server."""
    with pytest.raises(ValidationError, match="redis_timeout_s must be above fsync_timeout_s"):
        Settings(redis_timeout_s=3, fsync_timeout_s=3)
    assert Settings(redis_timeout_s=3.5, fsync_timeout_s=3).redis_timeout_s == 3.5
