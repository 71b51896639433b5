"""Following one job's events: the history first (from the seq the client last saw), then
live events, in seq order without repeats, until the terminal state event. And the response
every event stream goes out in, which gives its stream slot back however it ends.

Events pass through as the JSON Redis holds (no re-encoding on the hot path), in batches.
Where the bounded history no longer holds what a client missed, a `gap` event says which
seqs are gone instead of skipping them silently.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from kubetask.api.limits import StreamLease
from kubetask.controller.bus import RESYNC, EventBus, EventHub
from kubetask.controller.records import JobRecord
from kubetask.models import TERMINAL_STATES, StateEvent

# A finished job whose terminal event is not in the history after this long lost it
# (expired or trimmed); the stream then ends with an event made from the record.
SETTLE = timedelta(seconds=5)
MAX_BATCH = 500
MAX_SEQ_DIGITS = 15  # below 2**53: Redis scores (doubles) hold every such seq exactly
KEEPALIVE_FRAME = ": keepalive\n\n"
# The last words of a stream cut short by a shutdown: reconnect (to another replica, or to
# this one restarted) in a second; a job's stream resumes by Last-Event-ID.
SHUTDOWN_FRAME = ": the server is shutting down; reconnect\nretry: 1000\n\n"
REVOKED_FRAME = ": the token this stream was opened with no longer grants it\n\n"
_TERMINAL = {state.value for state in TERMINAL_STATES}


@dataclass(frozen=True)
class Frame:
    """One event as it goes out: its seq, its type (progress, state, gap) and its JSON."""

    seq: int
    type: str
    data: str
    terminal: bool = False

    @classmethod
    def of(cls, raw: str) -> Frame:
        fields = json.loads(raw)
        terminal = fields["type"] == "state" and fields.get("state") in _TERMINAL
        return cls(seq=fields["seq"], type=fields["type"], data=raw, terminal=terminal)

    @classmethod
    def gap(cls, job_id: str, first: int, last: int) -> Frame:
        data = json.dumps(
            {
                "type": "gap",
                "job_id": job_id,
                "seq": last,
                "from_seq": first,
                "to_seq": last,
                "message": "these events are no longer in the history",
            }
        )
        return cls(seq=last, type="gap", data=data)

    def sse(self) -> str:
        return f"id: {self.seq}\nevent: {self.type}\ndata: {self.data}\n\n"


class BadResumePoint(ValueError):
    """A `Last-Event-ID` or `since` that is not a seq (the message names which)."""


def _seq(text: str, name: str) -> int:
    if 0 < len(text) <= MAX_SEQ_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    raise BadResumePoint(f"{name} must be a seq: up to {MAX_SEQ_DIGITS} ASCII digits")


def resume_point(last_event_id: str | None, since: str | None) -> int:
    """The seq a stream resumes after: `Last-Event-ID` (what a browser sends back) when
    given, else `since`, else 0. Strict: ASCII digits only (no sign, space, point,
    underscore or other scripts' digits), BadResumePoint otherwise. An empty
    `Last-Event-ID` is none, as the SSE rules make it."""
    if last_event_id:
        return _seq(last_event_id, "Last-Event-ID")
    return 0 if since is None else _seq(since, "since")


async def ended_by(job_id: str, since: int, bus: EventBus) -> bool:
    """Whether the job's terminal state event is at or before `since`: a resume there has
    nothing left to send (what every browser EventSource asks after the stream ended)."""
    if since <= 0:
        return False
    return any(Frame.of(raw).terminal for raw in await bus.history_until(job_id, until=since))


async def check_not_ahead(job_id: str, since: int, bus: EventBus) -> None:
    """`BadResumePoint` when `since` is past the job's last event: no event has that seq yet
    (it came from another job's stream, or was made up), so waiting for it would be silent
    until the job ends."""
    if since > 0 and since > (last := await bus.last_seq(job_id)):
        raise BadResumePoint(f"{since} is past the job's last event ({last})")


class Cursor:
    """Where a follower stands (the last seq sent), and what to send next: pure."""

    def __init__(self, job_id: str, last: int) -> None:
        self.job_id = job_id
        self.last = last
        self.done = False  # the terminal state was sent

    def from_history(self, raws: list[str]) -> list[Frame]:
        """Frames for stored events after `last`; a gap frame where the history is short."""
        frames: list[Frame] = []
        for frame in map(Frame.of, raws):
            if frame.seq <= self.last or self.done:
                continue
            if frame.seq > self.last + 1:
                frames.append(Frame.gap(self.job_id, self.last + 1, frame.seq - 1))
            frames.append(self._advance(frame))
        return frames

    def from_live(self, raws: list[str]) -> tuple[list[Frame], bool]:
        """Frames for live events in order, and whether the history must fill a hole
        (a RESYNC, or an event beyond the next seq)."""
        frames: list[Frame] = []
        for raw in raws:
            if self.done:
                break
            if raw == RESYNC:
                return frames, True
            frame = Frame.of(raw)
            if frame.seq <= self.last:
                continue  # a repeat
            if frame.seq > self.last + 1:
                return frames, True
            frames.append(self._advance(frame))
        return frames, False

    def _advance(self, frame: Frame) -> Frame:
        self.last = frame.seq
        self.done = frame.terminal
        return frame


async def follow(
    job_id: str,
    *,
    since: int,
    bus: EventBus,
    hub: EventHub,
    get_record: Callable[[str], Awaitable[JobRecord | None]],
    keepalive_s: float,
) -> AsyncGenerator[list[Frame] | None, None]:
    """Yields batches of frames with seq > since, and None as a keep-alive when quiet."""
    cursor = Cursor(job_id, since)
    read_history = True
    async with hub.listen(job_id) as queue:
        while not cursor.done:
            if read_history:
                batch = cursor.from_history(await bus.history_raw(job_id, since=cursor.last))
                if batch:
                    yield batch
                if cursor.done:
                    return
            raws = await _drain(queue, keepalive_s)
            if not raws:  # quiet: is the job over without us having heard?
                record = await get_record(job_id)
                if record is None:  # expired or purged as it was followed: nothing will come
                    return
                ending = await _lost_ending(record, cursor.last, bus)
                yield None if ending is None else [ending]
                if ending is not None:
                    return
                read_history = False
                continue
            batch, read_history = cursor.from_live(raws)
            if batch:
                yield batch


async def _drain(queue: asyncio.Queue[str], timeout_s: float) -> list[str]:
    """Wait for one item (up to `timeout_s`), then take what else is there already."""
    try:
        items = [await asyncio.wait_for(queue.get(), timeout_s)]
    except TimeoutError:
        return []
    while not queue.empty() and len(items) < MAX_BATCH:
        items.append(queue.get_nowait())
    return items


async def _lost_ending(record: JobRecord, last: int, bus: EventBus) -> Frame | None:
    """The terminal event of a job that ended without the stream hearing it (its events
    expired, or the event was lost), made from its record; None while it has not ended."""
    job_id = record.id
    if not record.status.state.terminal:
        return None
    finished = record.status.finished_at or record.created_at
    if datetime.now(UTC) - finished < SETTLE or await bus.history_raw(job_id, since=last):
        return None
    event = StateEvent(
        job_id=job_id,
        seq=max(last, await bus.last_seq(job_id)),
        timestamp=finished,
        state=record.status.state,
        reason=record.status.reason,
        message=record.status.message,
        attempts=record.status.attempts,
    )
    return Frame(seq=event.seq, type="state", data=event.model_dump_json(), terminal=True)


async def until(event: asyncio.Event, work: Callable[[], Awaitable[None]]) -> bool:
    """Run `work` to its end (True), or until `event` is set (False: `work` was cancelled).
    Errors from `work` pass unchanged."""
    with anyio.CancelScope() as scope:

        def cancel(_: object) -> None:
            scope.cancel()

        waiter = asyncio.ensure_future(event.wait())
        waiter.add_done_callback(cancel)
        try:
            await work()
        finally:
            waiter.remove_done_callback(cancel)
            waiter.cancel()
    return not scope.cancelled_caught


class LeasedStream(StreamingResponse):
    """Server-Sent Events holding one of the tenant's stream slots. The slot is given back
    and the events' generator closed however the response ends: the client gone before the
    first byte, mid-stream or at the end, an error, a cancel. When `closing` is set (the
    server shuts down) the stream ends at once with SHUTDOWN_FRAME; once `granted` says no
    (its token revoked), before the next frame (keep-alives included), with REVOKED_FRAME."""

    def __init__(
        self,
        content: AsyncGenerator[str, None],
        *,
        lease: StreamLease,
        closing: asyncio.Event,
        granted: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._content = content
        self._lease = lease
        self._closing = closing
        self._granted = granted

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )

        async def body() -> None:
            async for chunk in self._content:
                revoked = not self._granted()
                text = REVOKED_FRAME if revoked else chunk  # a revoked token's last frame
                await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
                if revoked:
                    return

        if not await until(self._closing, body):
            farewell = SHUTDOWN_FRAME.encode()
            await send({"type": "http.response.body", "body": farewell, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._content.aclose()
                finally:
                    await self._lease.close()
