"""A job's live events: Server-Sent Events and WebSocket, resumable by seq. Each stream is
the caller's tenant's job only (another tenant's: 404, or close code 4404) and holds one
of the tenant's stream slots while it lasts (429, or close code 4429, when none is free)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from http import HTTPStatus
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException

from kubetask.api.deps import (
    GrantCheckDep,
    LimitsDep,
    PrincipalDep,
    RuntimeDep,
    limits_of,
    principal_of,
    runtime_of,
    still_granted,
)
from kubetask.api.limits import StreamLease
from kubetask.api.problems import RETRY_AFTER, problem
from kubetask.api.runtime import Runtime
from kubetask.api.streaming import (
    KEEPALIVE_FRAME,
    BadResumePoint,
    LeasedStream,
    check_not_ahead,
    ended_by,
    follow,
    resume_point,
    until,
)
from kubetask.controller.errors import JobNotFound

SEQ = {"pattern": "^[0-9]{1,15}$"}

router = APIRouter(
    prefix="/v1/jobs",
    tags=["events"],
    responses={
        401: {"description": "No valid bearer token (WWW-Authenticate says why)."},
        503: {
            "description": "The job store is unavailable; try again after Retry-After.",
            "headers": RETRY_AFTER,
        },
    },
)


async def _sse(
    runtime: Runtime, job_id: str, since: int, lease: StreamLease
) -> AsyncGenerator[str, None]:
    batches = follow(
        job_id,
        since=since,
        bus=runtime.bus,
        hub=runtime.hub,
        get_record=runtime.store.get,
        keepalive_s=runtime.settings.keepalive_s,
    )
    async with contextlib.aclosing(batches):
        async for batch in batches:
            await lease.renew()
            yield KEEPALIVE_FRAME if batch is None else "".join(frame.sse() for frame in batch)


@router.get(
    "/{job_id}/events",
    operation_id="job_events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {
            "description": "The job ended at or before the resume point: nothing follows "
            "(this also tells a browser's EventSource to stop reconnecting)."
        },
        400: {
            "description": "`Last-Event-ID` or `since` is not a seq (ASCII digits), or is "
            "past the job's last event."
        },
        404: {"description": "No such job."},
        429: {"description": "The tenant has as many event streams open as allowed."},
    },
)
async def job_events(
    job_id: str,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    limits: LimitsDep,
    granted: GrantCheckDep,
    since: Annotated[
        str | None, Query(description="Resume after this seq.", json_schema_extra=SEQ)
    ] = None,
    last_event_id: Annotated[
        str | None, Header(description="Resume after this seq; wins over `since`.")
    ] = None,
) -> Response:
    """Server-Sent Events: `id:` is the seq, `event:` progress or state (or gap, naming seqs
    the bounded history no longer holds); ends after the terminal state. Resumes after
    `Last-Event-ID` (or `?since=`); a resume at or past the terminal state is 204."""
    try:  # 400, 404 and 204 before a stream slot is taken, 429 when none is free
        resume = resume_point(last_event_id, since)
    except BadResumePoint as exc:
        raise HTTPException(400, str(exc)) from None
    await runtime.service.get(job_id, tenant=principal.scope)
    if await ended_by(job_id, resume, runtime.bus):
        return Response(status_code=204)
    try:
        await check_not_ahead(job_id, resume, runtime.bus)
    except BadResumePoint as exc:
        raise HTTPException(400, str(exc)) from None
    lease = await limits.open_stream(principal.tenant)
    return LeasedStream(
        _sse(runtime, job_id, resume, lease),
        lease=lease,
        closing=runtime.hub.closed,
        granted=granted,
    )


@router.websocket("/{job_id}/ws")
async def job_ws(websocket: WebSocket, job_id: str, since: str | None = None) -> None:
    """The same events as JSON text messages; closes (1000) after the terminal state, at
    once when `since` is at or past it, with 1001 (going away) when the server shuts
    down, and with 4401 once its token no longer grants it (revoked). Refused before the
    handshake completes: with the HTTP answer (400, 401, 404, 429 problem details; 422 for
    `since` given twice or a query parameter it does not take, api/url.py) where the
    server can send one, else by closing with 4400, 4401, 4404 or 4429."""
    runtime = runtime_of(websocket)
    opened = await _open_ws(websocket, job_id, since, runtime)
    if opened is None:
        return
    resume, lease, granted = opened
    batches = follow(
        job_id,
        since=resume,
        bus=runtime.bus,
        hub=runtime.hub,
        get_record=runtime.store.get,
        keepalive_s=runtime.settings.keepalive_s,
    )

    gone = False  # the client left: nothing more to send, not even a close
    revoked = False  # its token no longer grants it

    async def pump() -> None:
        nonlocal gone, revoked
        try:
            async for batch in batches:
                if not granted():
                    revoked = True
                    return
                await lease.renew()
                for frame in batch or ():
                    await websocket.send_text(frame.data)
        except WebSocketDisconnect:
            gone = True

    async def pump_while_connected() -> None:
        """`pump`, ended at once when the client leaves. It sends nothing but its close:
        unread, that close (or a dropped connection) would be seen at the next send only,
        which a quiet job may not make for hours, its slot held meanwhile."""
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                nonlocal gone
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass  # what a client sends is not read
                gone = True
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await pump()
            group.cancel_scope.cancel()

    try:
        async with contextlib.aclosing(batches):
            await websocket.accept()
            ended = await until(runtime.hub.closed, pump_while_connected)
            if not gone:  # 1001 going away: the server shuts down (resume with ?since=)
                await websocket.close(code=4401 if revoked else 1000 if ended else 1001)
    except WebSocketDisconnect:
        return
    finally:
        await lease.close()


async def _open_ws(
    websocket: WebSocket, job_id: str, since: str | None, runtime: Runtime
) -> tuple[int, StreamLease, Callable[[], bool]] | None:
    """The resume point, a stream slot and the token's check for a WebSocket that may
    follow `job_id`; None when it was refused (or closed at once: nothing follows `since`)."""
    try:
        principal = principal_of(websocket)
        resume = resume_point(None, since)
        await runtime.service.get(job_id, tenant=principal.scope)
        if await ended_by(job_id, resume, runtime.bus):
            await websocket.accept()
            await websocket.close(code=1000)
            return None
        await check_not_ahead(job_id, resume, runtime.bus)
        lease = await limits_of(websocket).open_stream(principal.tenant)
    except HTTPException as exc:
        await _refuse(websocket, exc.status_code, str(exc.detail), exc.headers)
        return None
    except BadResumePoint as exc:
        await _refuse(websocket, 400, str(exc))
        return None
    except JobNotFound:
        await _refuse(websocket, 404, f"no job with id {job_id}")
        return None
    return resume, lease, still_granted(websocket, principal)


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
