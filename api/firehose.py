"""Every job's live events in one stream, for the dashboard's job table.

Unlike a job's own stream this one has no history and no resume: a client loads the job list
once the stream says `ready`, then applies events; after `resync` (events may have been
missed) it loads the list again. Progress is conflated per job to the latest event in each
tick, so a chatty training loop costs the browser at most a few updates a second; state events
all pass, in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable

from kubetask.controller.bus import RESYNC, EventHub
from kubetask.controller.records import JobRecord

TICK_S = 0.25
MAX_BATCH = 2000
READY_FRAME = "event: ready\ndata: {}\n\n"
RESYNC_FRAME = "event: resync\ndata: {}\n\n"
KEEPALIVE_FRAME = ": keepalive\n\n"

Visible = Callable[[str], Awaitable[bool]]  # is this job's event for this client?
CACHE_SIZE = 10_000


class TenantFilter:
    """`Visible` for a caller scoped to one tenant: a job's tenant is read once (its record)
    and remembered; a job with no record yet is not shown until it has one."""

    def __init__(
        self, tenant: str, get_record: Callable[[str], Awaitable[JobRecord | None]]
    ) -> None:
        self._tenant = tenant
        self._get_record = get_record
        self._known: dict[str, bool] = {}

    async def __call__(self, job_id: str) -> bool:
        if job_id in self._known:
            return self._known[job_id]
        record = await self._get_record(job_id)
        if record is None:
            return False
        if len(self._known) >= CACHE_SIZE:
            self._known.clear()
        self._known[job_id] = record.visible_to(self._tenant)
        return self._known[job_id]


LiveEvent = tuple[str, str, str]  # (type, job id, the event's JSON)


def conflate(raws: Iterable[str]) -> list[LiveEvent]:
    """(type, job id, json) for each event worth sending: every state event, and for each job only
    its last progress event of the batch; arrival order is kept."""
    parsed: list[LiveEvent] = []
    for raw in raws:
        fields = json.loads(raw)
        parsed.append((str(fields.get("type")), str(fields.get("job_id")), raw))
    last_progress = {job: i for i, (kind, job, _) in enumerate(parsed) if kind == "progress"}
    return [
        event
        for i, event in enumerate(parsed)
        if event[0] != "progress" or last_progress[event[1]] == i
    ]


def render(events: list[LiveEvent]) -> str:
    return "".join(f"event: {kind}\ndata: {raw}\n\n" for kind, _, raw in events)


def _drain(queue: asyncio.Queue[str], first: str) -> list[str]:
    batch = [first]
    while len(batch) < MAX_BATCH and not queue.empty():
        batch.append(queue.get_nowait())
    return batch


async def live_frames(
    hub: EventHub,
    *,
    keepalive_s: float,
    visible: Visible | None = None,
    tick_s: float = TICK_S,
) -> AsyncGenerator[str, None]:
    """SSE text: `ready`, then batches of `state`/`progress` events, `resync` when some may
    have been missed, keepalive comments while idle. Runs until the client goes."""
    async with hub.listen_all() as queue:
        yield READY_FRAME
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield KEEPALIVE_FRAME
                continue
            await asyncio.sleep(tick_s)  # let a tick's worth of events gather
            batch = _drain(queue, first)
            if RESYNC in batch:
                yield RESYNC_FRAME
                batch = [raw for raw in batch if raw != RESYNC]
            events = conflate(batch)
            if visible is not None:
                events = [event for event in events if await visible(event[1])]
            if events:
                yield render(events)
