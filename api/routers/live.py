"""All jobs' live events in one stream (the dashboard's job table): the caller's tenant's
jobs only (an admin's: every job), holding one of the tenant's stream slots."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from kubetask.api.auth import Principal
from kubetask.api.deps import GrantCheckDep, LimitsDep, PrincipalDep, RuntimeDep
from kubetask.api.firehose import TenantFilter, live_frames
from kubetask.api.limits import StreamLease
from kubetask.api.runtime import Runtime
from kubetask.api.streaming import LeasedStream

router = APIRouter(
    prefix="/v1",
    tags=["events"],
    responses={401: {"description": "No valid bearer token (WWW-Authenticate says why)."}},
)


async def _frames(
    runtime: Runtime, principal: Principal, lease: StreamLease
) -> AsyncGenerator[str, None]:
    scope = principal.scope
    visible = None if scope is None else TenantFilter(scope, runtime.store.get)
    frames = live_frames(runtime.hub, keepalive_s=runtime.settings.keepalive_s, visible=visible)
    async with contextlib.aclosing(frames):
        async for frame in frames:
            await lease.renew()
            yield frame


@router.get(
    "/events",
    operation_id="live_events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        429: {"description": "The tenant has as many event streams open as allowed."},
    },
)
async def live_events(
    runtime: RuntimeDep, principal: PrincipalDep, limits: LimitsDep, granted: GrantCheckDep
) -> StreamingResponse:
    """Server-Sent Events of every job the caller may see: `ready` first (load the list
    now), then `state` and `progress` events (progress conflated to the latest per job, a
    few per second), and `resync` when some may have been missed (load the list again). No
    history, no resume: a job's own stream (`/v1/jobs/{id}/events`) has those."""
    lease = await limits.open_stream(principal.tenant)  # 429 before the stream starts
    frames = _frames(runtime, principal, lease)
    return LeasedStream(frames, lease=lease, closing=runtime.hub.closed, granted=granted)
