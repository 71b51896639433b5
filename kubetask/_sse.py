"""A job's event stream, without I/O: SSE frame parsing, event decoding and the resume cursor.

The cursor remembers the last seq seen, so a new connection asks for what comes after it
(`Last-Event-ID`) and repeats are dropped; it decides how long to wait before reconnecting
and when to give up: once the server has been out of reach for `RIDE_THROUGH_S` (a restart
or a rolling update takes seconds), never while connections open, however often a proxy
cuts them. The sync and async clients only move bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kubetask._wait import RETRYABLE_STATUS, RIDE_THROUGH_S, Clock, Deadline, Outage
from kubetask.errors import ApiError, StreamLost
from kubetask.models import JobState, ProgressEvent, StateEvent

NO_CONTENT = 204  # a resume at or past the terminal state: the stream is over


class GapEvent(BaseModel):
    """Events `from_seq`..`to_seq` were lost: the server's bounded history no longer has them."""

    model_config = ConfigDict(frozen=True)

    type: Literal["gap"] = "gap"
    job_id: str
    seq: int
    from_seq: int
    to_seq: int
    message: str = ""


JobEvent = ProgressEvent | StateEvent | GapEvent
_EVENTS: TypeAdapter[JobEvent] = TypeAdapter(
    Annotated[ProgressEvent | StateEvent | GapEvent, Field(discriminator="type")]
)


@dataclass(frozen=True)
class SseFrame:
    """One Server-Sent Event as it came: `id`, `event` and the (joined) data lines."""

    id: str | None
    event: str
    data: str


@dataclass
class SseParser:
    """Lines in (without their line ends), frames out, per the HTML SSE rules."""

    _id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SseFrame | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SseFrame | None:
        data, event = self._data, self._event or "message"
        self._data, self._event = [], ""
        if not data:
            return None
        return SseFrame(id=self._id, event=event, data="\n".join(data))


def decode(frame: SseFrame) -> JobEvent | None:
    """The typed event in a frame; None for frames of other types (skipped, not fatal)."""
    if frame.event not in ("progress", "state", "gap"):
        return None
    try:
        return _EVENTS.validate_python(json.loads(frame.data))
    except (ValueError, ValidationError):
        return None


OnReconnect = Callable[[int, str], None]


class EventCursor:
    """Where a follower of one job's events stands, and what it does next."""

    def __init__(
        self,
        job_id: str,
        *,
        since: int = 0,
        deadline: Deadline | None = None,
        on_reconnect: OnReconnect | None = None,
        read_timeout_s: float = 60.0,
        ride_through_s: float = RIDE_THROUGH_S,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.last = since
        self.state: JobState | None = None
        self.done = False  # the terminal state came
        self.failures = 0  # connections in a row that brought no event (the back-off)
        self.outage = Outage(ride_through_s, clock)  # since when no connection opened
        self.deadline = deadline
        self.on_reconnect = on_reconnect
        self.read_timeout_s = read_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._parser = SseParser()

    @property
    def path(self) -> str:
        return f"/v1/jobs/{quote(self.job_id, safe='')}/events"

    def connect(self) -> dict[str, str]:
        """Headers for a new connection; forgets any half-read frame of the last one."""
        self._parser = SseParser()
        if self.deadline is not None:
            self.deadline.check(self.state)
        headers = {"Accept": "text/event-stream"}
        if self.last > 0:
            headers["Last-Event-ID"] = str(self.last)
        return headers

    def opened(self) -> None:
        """A connection was answered with the stream: the server is there."""
        self.outage.over()

    def read_timeout(self) -> float:
        """The longest silence to accept on the wire (the server sends keep-alives)."""
        if self.deadline is None:
            return self.read_timeout_s
        return self.deadline.cap(self.read_timeout_s)

    def feed(self, line: str) -> JobEvent | None:
        """The next new event, if this line completes one."""
        if self.deadline is not None:
            self.deadline.check(self.state)
        frame = self._parser.feed(line)
        event = None if frame is None else decode(frame)
        if event is None or event.seq <= self.last or self.done:
            return None
        self.last = event.seq
        self.failures = 0
        if isinstance(event, StateEvent):
            self.state = event.state
            self.done = event.state.terminal
        return event

    def ended_before(self) -> None:
        """The server answered 204: the job ended at or before `last`, nothing follows."""
        self.done = True

    def refused(self, error: ApiError) -> float:
        """An error answer: raised when retrying cannot help, else a reconnect delay."""
        if error.status not in RETRYABLE_STATUS:
            raise error
        delay = self.lost(error.summary())
        asked = error.retry_after_s  # 429 and 503 may say when
        if asked is None:
            return delay
        return max(delay, asked) if self.deadline is None else self.deadline.cap(max(delay, asked))

    def lost(self, reason: str) -> float:
        """The connection broke, ended early or was refused: the delay before the next one
        (`StreamLost` once the server has been out of reach too long)."""
        self.failures += 1
        if self.outage.too_long():
            raise StreamLost(self.job_id, self.last, reason)
        if self.deadline is not None:
            self.deadline.check(self.state)
        if self.on_reconnect is not None:
            self.on_reconnect(self.last, reason)
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (self.failures - 1))
        return delay if self.deadline is None else self.deadline.cap(delay)
