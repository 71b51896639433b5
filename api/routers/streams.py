"""A job's live events: Server-Sent Events and WebSocket, resumable by seq. Each stream is
the caller's tenant's job only (another tenant's: 404, or close code 4404) and holds one
of the tenant's stream slots while it lasts (429, or close code 4429, when none is free)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException

from api.deps import LimitsDep, PrincipalDep, RuntimeDep, limits_of, principal_of, runtime_of
from api.limits import StreamLease
from api.problems import problem
from api.runtime import Runtime
from api.streaming import KEEPALIVE_FRAME, follow, parse_last_event_id
from controller.errors import JobNotFound

router = APIRouter(
    prefix="/v1/jobs",
    tags=["events"],
    responses={
        401: {"description": "No valid bearer token (WWW-Authenticate says why)."},
        503: {"description": "The job store is unavailable; try again after Retry-After."},
    },
)


async def _sse(runtime: Runtime, job_id: str, since: int, lease: StreamLease) -> AsyncIterator[str]:
    try:
        async for batch in follow(
            job_id,
            since=since,
            bus=runtime.bus,
            hub=runtime.hub,
            get_record=runtime.store.get,
            keepalive_s=runtime.settings.keepalive_s,
        ):
            await lease.renew()
            yield KEEPALIVE_FRAME if batch is None else "".join(frame.sse() for frame in batch)
    finally:
        await lease.close()


@router.get(
    "/{job_id}/events",
    operation_id="job_events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        404: {"description": "No such job."},
        429: {"description": "The tenant has as many event streams open as allowed."},
    },
)
async def job_events(
    job_id: str,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    limits: LimitsDep,
    since: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: `id:` is the seq, `event:` progress or state (or gap, naming seqs
    the bounded history no longer holds); ends after the terminal state. Resumes after
    `Last-Event-ID` (or `?since=`)."""
    await runtime.service.get(job_id, tenant=principal.scope)  # 404 before the stream starts
    lease = await limits.open_stream(principal.tenant)  # 429 before the stream starts
    resume = parse_last_event_id(last_event_id)
    return StreamingResponse(
        _sse(runtime, job_id, since if resume is None else resume, lease),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/{job_id}/ws")
async def job_ws(websocket: WebSocket, job_id: str, since: int = 0) -> None:
    """The same events as JSON text messages; closes (1000) after the terminal state.
    Refused before the handshake completes: with the HTTP answer (401, 404, 429 problem
    details) where the server can send one, else by closing with 4401, 4404 or 4429."""
    runtime = runtime_of(websocket)
    try:
        principal = principal_of(websocket)
        await runtime.service.get(job_id, tenant=principal.scope)
        lease = await limits_of(websocket).open_stream(principal.tenant)
    except HTTPException as exc:
        await _refuse(websocket, exc.status_code, str(exc.detail), exc.headers)
        return
    except JobNotFound:
        await _refuse(websocket, 404, f"no job with id {job_id}")
        return
    try:
        await websocket.accept()
        async for batch in follow(
            job_id,
            since=max(since, 0),
            bus=runtime.bus,
            hub=runtime.hub,
            get_record=runtime.store.get,
            keepalive_s=runtime.settings.keepalive_s,
        ):
            await lease.renew()
            for frame in batch or ():
                await websocket.send_text(frame.data)
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return
    finally:
        await lease.close()


async def _refuse(
    websocket: WebSocket, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        title = HTTPStatus(status).phrase
        await websocket.send_denial_response(
            problem(status, title, detail, headers=dict(headers or {}))
        )
    else:
        await websocket.close(code=4000 + status, reason=detail[:120])
