"""All jobs' live events in one stream (the dashboard's job table)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import RuntimeDep
from api.firehose import live_frames

router = APIRouter(prefix="/v1", tags=["events"])


@router.get(
    "/events",
    operation_id="live_events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live_events(runtime: RuntimeDep) -> StreamingResponse:
    """Server-Sent Events of every job: `ready` first (load the list now), then `state` and
    `progress` events (progress conflated to the latest per job, a few per second), and
    `resync` when some may have been missed (load the list again). No history, no resume:
    a job's own stream (`/v1/jobs/{id}/events`) has those."""
    return StreamingResponse(
        live_frames(runtime.hub, keepalive_s=runtime.settings.keepalive_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
