"""A job's live events: Server-Sent Events and WebSocket, resumable by seq."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from api.deps import RuntimeDep
from api.runtime import Runtime
from api.streaming import KEEPALIVE_FRAME, follow, parse_last_event_id

router = APIRouter(prefix="/v1/jobs", tags=["events"])


async def _sse(runtime: Runtime, job_id: str, since: int) -> AsyncIterator[str]:
    async for batch in follow(
        job_id,
        since=since,
        bus=runtime.bus,
        hub=runtime.hub,
        get_record=runtime.store.get,
        keepalive_s=runtime.settings.keepalive_s,
    ):
        yield KEEPALIVE_FRAME if batch is None else "".join(frame.sse() for frame in batch)


@router.get(
    "/{job_id}/events",
    operation_id="job_events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 404: {"description": "No such job."}},
)
async def job_events(
    job_id: str,
    runtime: RuntimeDep,
    since: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: `id:` is the seq, `event:` progress or state (or gap, naming seqs
    the bounded history no longer holds); ends after the terminal state. Resumes after
    `Last-Event-ID` (or `?since=`)."""
    await runtime.service.get(job_id)  # 404 before the stream starts
    resume = parse_last_event_id(last_event_id)
    return StreamingResponse(
        _sse(runtime, job_id, since if resume is None else resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/{job_id}/ws")
async def job_ws(websocket: WebSocket, job_id: str, since: int = 0) -> None:
    """The same events as JSON text messages; closes (1000) after the terminal state."""
    runtime: Runtime = websocket.app.state.runtime
    if await runtime.store.get(job_id) is None:
        await websocket.close(code=4404, reason="no such job")
        return
    await websocket.accept()
    try:
        async for batch in follow(
            job_id,
            since=max(since, 0),
            bus=runtime.bus,
            hub=runtime.hub,
            get_record=runtime.store.get,
            keepalive_s=runtime.settings.keepalive_s,
        ):
            for frame in batch or ():
                await websocket.send_text(frame.data)
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return
