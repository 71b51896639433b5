"""FastAPI dependencies as `Annotated` aliases. They are `async def`: FastAPI runs a plain
`def` dependency in its thread pool, a hop per dependency per request (five for a submission)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from kubetask.api.auth import (
    LOCAL_PRINCIPAL,
    Principal,
    TokenFile,
    TokensFileError,
    bearer_token,
    challenge,
)
from kubetask.api.limits import TenantLimits
from kubetask.api.runtime import Runtime
from kubetask.controller.service import JobService
from kubetask.storage import ArtifactStore


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


def runtime_of(connection: HTTPConnection) -> Runtime:
    """The app's Runtime, for a request or a WebSocket."""
    runtime: Runtime = connection.app.state.runtime
    return runtime


async def get_service(request: Request) -> JobService:
    return runtime_of(request).service


async def get_artifacts(request: Request) -> ArtifactStore:
    """The artifact store the runtime was started with."""
    store = runtime_of(request).artifacts
    if store is None:  # a Runtime made by hand without one
        raise HTTPException(503, "the artifact store is not configured")
    return store


@lru_cache(maxsize=4)
def _token_file(path: Path) -> TokenFile:
    return TokenFile(path)


class Unauthenticated(HTTPException):
    """401 with the RFC 6750 challenge; `error="invalid_token"` when a token was given."""

    def __init__(self, *, token_given: bool) -> None:
        detail = "invalid bearer token" if token_given else "a bearer token is required"
        super().__init__(
            401, detail, headers={"WWW-Authenticate": challenge(token_given=token_given)}
        )


def principal_of(connection: HTTPConnection) -> Principal:
    """Who is calling, from `Authorization: Bearer <token>`; Unauthenticated if nobody
    known. Without a tokens file: the local admin."""
    path = runtime_of(connection).settings.tokens_file
    if path is None:
        return LOCAL_PRINCIPAL
    try:
        table = _token_file(path).table()
    except TokensFileError as exc:  # unreadable since start-up: nobody gets in
        raise HTTPException(503, f"authentication unavailable: {exc}") from None
    token = bearer_token(connection.headers.get("authorization"))
    principal = table.lookup(token) if token is not None else None
    if principal is None:
        raise Unauthenticated(token_given=token is not None)
    return principal


async def get_principal(request: Request) -> Principal:
    return principal_of(request)


def limits_of(connection: HTTPConnection) -> TenantLimits:
    """The per-tenant caps kept in Redis, made once per app."""
    state = connection.app.state
    limits: TenantLimits | None = getattr(state, "tenant_limits", None)
    if limits is None:
        runtime = runtime_of(connection)
        limits = TenantLimits(
            runtime.redis,
            submits_per_minute=runtime.settings.max_submits_per_minute,
            streams=runtime.settings.max_streams_per_tenant,
        )
        state.tenant_limits = limits
    return limits


async def get_limits(request: Request) -> TenantLimits:
    return limits_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ServiceDep = Annotated[JobService, Depends(get_service)]
GRANT_CHECK_S = 1.0  # how often an open stream asks whether its token still grants it


def still_granted(connection: HTTPConnection, principal: Principal) -> Callable[[], bool]:
    """For a stream held open for hours: whether the token it was opened with still grants
    `principal` (a token removed from the tokens file, or moved to another tenant or role,
    ends the streams it opened). Asked often; reads the table at most once a second."""
    path = runtime_of(connection).settings.tokens_file
    if path is None:
        return lambda: True
    token = bearer_token(connection.headers.get("authorization"))
    checked, granted = time.monotonic(), True

    def check() -> bool:
        nonlocal checked, granted
        if granted and time.monotonic() - checked >= GRANT_CHECK_S:
            checked = time.monotonic()
            try:
                table = _token_file(path).table()
            except TokensFileError:  # unreadable since start-up: nobody was let in
                return False
            granted = token is not None and table.lookup(token) == principal
        return granted

    return check


PrincipalDep = Annotated[Principal, Depends(get_principal)]
LimitsDep = Annotated[TenantLimits, Depends(get_limits)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]


async def get_grant_check(request: Request, principal: PrincipalDep) -> Callable[[], bool]:
    return still_granted(request, principal)


GrantCheckDep = Annotated[Callable[[], bool], Depends(get_grant_check)]
