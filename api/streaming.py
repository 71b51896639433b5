"""Following one job's events: the history first (from the seq the client last saw), then
live events, in seq order without gaps or repeats, until the terminal state event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from controller.bus import RESYNC, EventBus, EventHub, is_terminal
from controller.records import JobRecord
from kubetask import eventlog
from kubetask.models import Event, StateEvent

# A finished job whose terminal event is not in the history after this long lost it
# (expired or trimmed); the stream then ends with an event made from the record.
SETTLE = timedelta(seconds=5)


def sse_frame(event: Event) -> str:
    data = event.model_dump_json()
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


def ws_message(event: Event) -> str:
    return event.model_dump_json()


KEEPALIVE_FRAME = ": keepalive\n\n"


def parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


async def follow(
    job_id: str,
    *,
    since: int,
    bus: EventBus,
    hub: EventHub,
    get_record: Callable[[str], Awaitable[JobRecord | None]],
    keepalive_s: float,
) -> AsyncIterator[Event | None]:
    """Yields events with seq > since, and None as a keep-alive when nothing happens."""
    last = since
    async with hub.listen(job_id) as queue:
        while True:
            for event in await bus.history(job_id, since=last):
                last = event.seq
                yield event
                if is_terminal(event):
                    return
            live = await _next_live(queue, keepalive_s)
            if live is None:  # quiet: is the job over without us having heard?
                ending = await _lost_ending(job_id, last, bus, get_record)
                if ending is not None:
                    yield ending
                    return
                yield None
                continue
            if live == RESYNC:
                continue
            event = eventlog.parse_event(live)
            if event.seq == last + 1:
                last = event.seq
                yield event
                if is_terminal(event):
                    return
            # older: a repeat, skipped; newer with a gap: the history fills it on the next turn


async def _next_live(queue: asyncio.Queue[str], timeout_s: float) -> str | None:
    try:
        return await asyncio.wait_for(queue.get(), timeout_s)
    except TimeoutError:
        return None


async def _lost_ending(
    job_id: str,
    last: int,
    bus: EventBus,
    get_record: Callable[[str], Awaitable[JobRecord | None]],
) -> StateEvent | None:
    record = await get_record(job_id)
    if record is None or not record.status.state.terminal:
        return None
    finished = record.status.finished_at or record.created_at
    if datetime.now(UTC) - finished < SETTLE or await bus.history(job_id, since=last):
        return None
    return StateEvent(
        job_id=job_id,
        seq=max(last, await bus.last_seq(job_id)),
        timestamp=finished,
        state=record.status.state,
        reason=record.status.reason,
        message=record.status.message,
        attempts=record.status.attempts,
    )


def dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))
