"""No request waits for FastAPI's thread pool: every route and every dependency it declares
is a coroutine function (a plain `def` runs in the pool, a thread hop per call per request)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts

from kubetask.api.app import create_app
from kubetask.api.settings import Settings


def _calls(dependant: Dependant) -> Iterator[object]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def test_routes_and_their_dependencies_run_on_the_event_loop() -> None:
    app = create_app(Settings(backend="local"))
    routes = [
        c.original_route
        for c in iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute | APIWebSocketRoute)
    ]
    assert len(routes) > 10, "the API's routes"
    in_threads = sorted(
        {
            f"{route.path}: {getattr(call, '__qualname__', call)}"
            for route in routes
            for call in _calls(route.dependant)
            if not inspect.iscoroutinefunction(call)
        }
    )
    assert in_threads == []
