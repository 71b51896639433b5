"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from kubetask.api import problems, url
from kubetask.api.auth import document_bearer
from kubetask.api.deps import get_principal
from kubetask.api.head import HeadAsGet
from kubetask.api.hosts import LocalHostsOnly
from kubetask.api.limits import BodySizeLimit
from kubetask.api.routers import artifacts, dashboard, docs, jobs, live, meta, metrics, streams
from kubetask.api.runtime import Runtime, artifact_store, installed_kinds
from kubetask.api.settings import Settings, get_settings
from kubetask.controller.metrics import Metrics
from kubetask.storage import StoreError


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    kinds = installed_kinds(settings)  # KindError: the installed kinds cannot be served
    store = artifact_store(settings)  # InvalidStoreUrl: KUBETASK_ARTIFACTS_URL is unusable
    app_metrics = Metrics(kinds=tuple(kinds))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, kinds=kinds, artifacts=store, metrics=app_metrics)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="kubetask",
        version="0.1.0",
        summary="A Kubernetes-native job runner for ML work: one container per task.",
        lifespan=lifespan,
        docs_url=None,  # served by api/routers/docs.py, with its assets: no CDN
        redoc_url=None,
        dependencies=[Depends(url.well_formed)],
    )
    app.add_middleware(HeadAsGet, routes=app.router.routes)
    if settings.tokens_file is None:  # the local mode: no web page may reach it by a name
        app.add_middleware(LocalHostsOnly)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, exempt=artifacts.is_upload
    )  # an upload has its own, larger limit (KUBETASK_MAX_UPLOAD_BYTES)
    problems.install(app)
    app.include_router(jobs.router)
    app.include_router(artifacts.router)
    app.add_exception_handler(StoreError, artifacts.store_unavailable)
    app.include_router(streams.router)
    app.include_router(live.router)
    app.include_router(meta.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    app.include_router(docs.router)
    app.state.metrics = app_metrics
    _document_tokens(app)
    return app


def _document_tokens(app: FastAPI) -> None:
    """The spec names the bearer token on each operation that reads one."""
    built = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_bearer(built(), _token_operations(app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _token_operations(routes: Sequence[BaseRoute]) -> Iterator[tuple[str, str]]:
    """(path, method) of each operation in the spec that asks who is calling."""
    for route in iter_route_contexts(routes):
        path, api_route = route.path_format, isinstance(route.original_route, APIRoute)
        if path and api_route and route.include_in_schema and _asks(route.dependant):
            yield from ((path, method.lower()) for method in route.methods or ())


def _asks(dependant: Dependant) -> bool:
    return dependant.call is get_principal or any(map(_asks, dependant.dependencies))
