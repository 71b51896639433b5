"""A process out of file descriptors (EMFILE, ENFILE) answers 503 problem details with
Retry-After wherever in a request it struck (a route, a dependency, a middleware, a library
that wraps the OSError), and any other unexpected error a 500 problem, never Starlette's
`Internal Server Error` in plain text; the server raises its soft limit on open files to
the hard one at start."""

from __future__ import annotations

import asyncio
import errno
import resource

import httpx
import pytest
from fastapi import Depends, FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.types import ASGIApp, Receive, Scope, Send

from kubetask.api import problems
from kubetask.api.__main__ import UNLIMITED_FILES, files_limit_target


def _emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files")


class FailingMiddleware:
    """Fails every request to /in-middleware as a middleware opening a file would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/in-middleware":
            raise OSError(errno.ENFILE, "Too many open files in system")
        await self.app(scope, receive, send)


def no_descriptor() -> None:
    raise _emfile()


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(FailingMiddleware)
    problems.install(app)

    @app.get("/in-route")
    async def in_route() -> None:
        raise _emfile()

    @app.get("/in-dependency", dependencies=[Depends(no_descriptor)])
    async def in_dependency() -> None:
        return None

    @app.get("/in-a-thread")
    def in_a_thread() -> None:  # a route in the thread pool (files, uploads)
        raise _emfile()

    @app.get("/wrapped")
    async def wrapped() -> None:
        try:
            raise _emfile()
        except OSError as exc:
            raise RuntimeError("making a connection failed") from exc

    @app.get("/store-wrapped")
    async def store_wrapped() -> None:
        raise RedisConnectionError("Error 24 connecting to redis. Too many open files.")

    @app.get("/in-middleware")
    async def in_middleware() -> None:
        return None

    @app.get("/not-found-file")
    async def not_found_file() -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a bug")

    return app


def get(path: str) -> httpx.Response:
    """`path` of the app, as a client sees it (the error still reaches the server's log)."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(call())


@pytest.mark.parametrize(
    "path", ["/in-route", "/in-dependency", "/in-a-thread", "/wrapped", "/in-middleware"]
)
def test_out_of_file_descriptors_is_503_problem_with_retry_after(path: str) -> None:
    response = get(path)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == problems.PROBLEM
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert (body["status"], body["title"]) == (503, "Service Unavailable")
    assert "try again" in body["detail"]


def test_the_store_unreachable_for_want_of_descriptors_stays_503() -> None:
    response = get("/store-wrapped")
    assert (response.status_code, response.headers["content-type"]) == (503, problems.PROBLEM)
    assert "retry-after" in response.headers


@pytest.mark.parametrize("path", ["/not-found-file", "/bug"])
def test_any_other_unexpected_error_is_a_500_problem(path: str) -> None:
    response = get(path)
    assert response.status_code == 500
    assert response.headers["content-type"] == problems.PROBLEM
    assert response.json()["title"] == "Internal Server Error"
    assert "retry-after" not in response.headers


def test_fd_exhaustion_is_found_behind_wrapping_errors_only_when_there() -> None:
    try:
        try:
            raise _emfile()
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        found = problems.fd_exhaustion(outer)
    assert found is not None
    assert found.errno == errno.EMFILE
    assert problems.fd_exhaustion(OSError(errno.ENOSPC, "No space left on device")) is None
    assert problems.fd_exhaustion(ValueError("x")) is None


@pytest.mark.parametrize(
    ("soft", "hard", "target"),
    [
        (256, 4096, 4096),  # `ulimit -n 256`: up to the hard limit
        (1024, 1024, 1024),  # already there
        (1024, resource.RLIM_INFINITY, UNLIMITED_FILES),  # "unlimited": a figure
        (resource.RLIM_INFINITY, resource.RLIM_INFINITY, resource.RLIM_INFINITY),
        (2_000_000, resource.RLIM_INFINITY, 2_000_000),  # never lowered
    ],
)
def test_the_soft_files_limit_is_raised_to_the_hard_one(soft: int, hard: int, target: int) -> None:
    assert files_limit_target(soft, hard) == target
