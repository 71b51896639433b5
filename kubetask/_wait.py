"""Waiting for a job, without I/O: the deadline, when to stop, how a job's end is told, and
how long a server out of reach is waited for (`RIDE_THROUGH_S`: a restart or a rolling update
of the API takes seconds; a server gone for longer is an error, whatever the timeout).

The sync and async clients drive these objects; the clock is passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kubetask.errors import ApiError, JobCancelled, JobFailed, ServerUnreachable, WaitTimeout
from kubetask.models import JobState, JobView

Clock = Callable[[], float]
RIDE_THROUGH_S = 60.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class Outage:
    """How long the server has been out of reach, counted from the first failure since it
    last answered."""

    def __init__(self, limit_s: float, clock: Clock = time.monotonic) -> None:
        self.limit_s = limit_s
        self.clock = clock
        self.since: float | None = None

    def over(self) -> None:
        self.since = None

    def too_long(self) -> bool:
        """Called at each failure: True once failures have lasted past `limit_s`."""
        now = self.clock()
        if self.since is None:
            self.since = now
        return now - self.since > self.limit_s


@dataclass(frozen=True)
class Deadline:
    """A point in time after which waiting stops (none when `timeout` is None)."""

    job_id: str
    timeout: float | None
    started: float
    clock: Clock = time.monotonic

    @classmethod
    def start(cls, job_id: str, timeout: float | None, clock: Clock = time.monotonic) -> Deadline:
        """`ValueError` for a timeout that is no number of seconds (NaN, below 0)."""
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout: {timeout!r} is not a number of seconds (0 or more)")
        return cls(job_id, timeout, clock(), clock)

    def remaining(self) -> float | None:
        if self.timeout is None:
            return None
        return max(0.0, self.started + self.timeout - self.clock())

    def cap(self, seconds: float) -> float:
        """`seconds`, or less where the deadline comes first (never below a few ms)."""
        remaining = self.remaining()
        return seconds if remaining is None else max(0.01, min(seconds, remaining))

    def check(self, state: JobState | None = None) -> None:
        """Raise `WaitTimeout` once the deadline has passed."""
        if self.timeout is not None and self.remaining() == 0.0:
            raise WaitTimeout(self.job_id, self.timeout, state)


def conclude(view: JobView, *, raise_on_failure: bool) -> JobView:
    """The final view of a finished job, or its failure raised when asked for."""
    if raise_on_failure and view.state is JobState.FAILED:
        raise JobFailed(view)
    if raise_on_failure and view.state is JobState.CANCELLED:
        raise JobCancelled(view)
    return view


class Waiter:
    """One `wait()`: follow the stream to the terminal state, then read (or poll) the view."""

    def __init__(
        self,
        job_id: str,
        timeout: float | None,
        *,
        raise_on_failure: bool,
        poll_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.deadline = Deadline.start(job_id, timeout, clock)
        self.raise_on_failure = raise_on_failure
        self.poll_s = poll_s
        self.outage = Outage(RIDE_THROUGH_S, clock)

    def settle(self, view: JobView) -> JobView | None:
        """The outcome when `view` is final (raising if asked), else None: keep waiting."""
        if not view.state.terminal:
            return None
        return conclude(view, raise_on_failure=self.raise_on_failure)

    def poll_delay(self, view: JobView) -> float:
        """How long to sleep before the next poll; `WaitTimeout` when time is up."""
        self.outage.over()
        self.deadline.check(view.state)
        return self.deadline.cap(self.poll_s)

    def unanswered(self, error: ServerUnreachable | ApiError) -> float:
        """A poll the server did not answer (or answered 429/5xx): the delay before the
        next, or `error` raised when retrying cannot help or it has been away too long;
        `WaitTimeout` when time is up."""
        if isinstance(error, ApiError) and error.status not in RETRYABLE_STATUS:
            raise error
        if self.outage.too_long():
            raise error
        self.deadline.check()
        asked = error.retry_after_s if isinstance(error, ApiError) else None
        return self.deadline.cap(max(self.poll_s, asked or 0.0))
