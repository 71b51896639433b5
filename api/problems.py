"""Errors as RFC 9457 `application/problem+json`, with field paths for invalid input, and
the OpenAPI spec telling the truth about them: every error response a route declares is
documented as a `Problem` in `application/problem+json` (what the handlers here send).
The process out of file descriptors (EMFILE, ENFILE) is a 503 with Retry-After wherever it
struck; any other unexpected error a 500 problem, never Starlette's plain text."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from kubetask.controller.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    JobFinished,
    JobNotFound,
    NotDurable,
)

log = logging.getLogger("kubetask.api")

PROBLEM = "application/problem+json"
# FastAPI's answer to a body it cannot decode (not UTF-8): answered as invalid JSON (422).
_BODY_NOT_DECODED = "There was an error parsing the body"
_PARAMETER_LOCATIONS = ("query", "path", "header")
_SCHEMAS = "#/components/schemas/"
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
RETRY_AFTER_S = 2  # a 503's suggestion: the store is away, busy, or its disk is slow
RETRY_AFTER = {  # a response's `headers` in the OpenAPI spec: every 429, most 503s
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "Bearer, with the reason a token was refused (RFC 6750).",
        "schema": {"type": "string"},
    }
}
BAD_REQUEST = (
    "The request cannot be read: its Host is not this server's own address (a server bound "
    "to the loopback only), or its URL is not UTF-8 once percent-decoded."
)
# Out of file descriptors: this process's (EMFILE) or the system's (ENFILE). Each open stream
# holds one; they come back as clients leave.
FD_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


class FieldProblem(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Dotted path, e.g. `params.n_per_class` ('' for the body).")
    loc: list[str] = Field(description="Where: body, query, path or header, then the path.")
    msg: str
    type: str


MAX_FIELD_ERRORS = 100  # a 422 lists at most this many invalid fields
MAX_DETAIL_ERRORS = 10  # and names this many in its detail


class Problem(BaseModel):
    """An error as RFC 9457 problem details. Some say more: `errors` (422: each invalid
    field, the first 100; `errors_left_out`: how many more there were), `state` (409: the
    finished job's state), `job_id` (409: the job an Idempotency-Key already belongs to)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldProblem] = Field(default_factory=list)


class ProblemResponse(JSONResponse):
    """A problem as JSON in ASCII: what it quotes of the request may hold a lone surrogate
    (`"\\ud800"` is valid JSON, not valid UTF-8), which is escaped, never a failure."""

    media_type = PROBLEM

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def problem(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return ProblemResponse(body, status_code=status, headers=headers)


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic/FastAPI errors as {field, loc, msg, type}; `field` is the dotted path (a bad
    mapping key is named as its entry: `labels.Bad Key`, where `loc` ends in `[key]`)."""
    out = []
    for error in errors:
        loc = [str(part) for part in error["loc"]]
        path = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
        field = ".".join(part for part in path if part != "[key]")
        out.append({"field": field, "loc": loc, "msg": error["msg"], "type": error["type"]})
    return out


def _named(error: dict[str, Any]) -> str:
    """A field as a detail names it: its dotted path; one with none, by where it is (the
    body; a query parameter with an empty name)."""
    if error["field"]:
        return str(error["field"])
    where = error["loc"][0] if error["loc"] else "body"
    return "body" if where == "body" else f"{where} parameter ''"


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    """A 422 listing the first MAX_FIELD_ERRORS fields (`errors_left_out`: how many more),
    and the first MAX_DETAIL_ERRORS in its detail: a body made of errors gets a short answer."""
    named = errors[:MAX_DETAIL_ERRORS]
    detail = "; ".join(f"{_named(e)}: {e['msg']}" for e in named)
    if len(errors) > len(named):
        detail += f"; and {len(errors) - len(named)} more"
    left_out = len(errors) - MAX_FIELD_ERRORS
    extra: dict[str, Any] = {"errors_left_out": left_out} if left_out > 0 else {}
    return problem(422, "Unprocessable Content", detail, errors=errors[:MAX_FIELD_ERRORS], **extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid(field_errors(exc.errors()))

    @app.exception_handler(InvalidRequest)
    async def _invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        errors = [{"loc": _located(e.loc), "msg": e.msg, "type": e.type} for e in exc.errors]
        return _invalid(field_errors(errors))

    @app.exception_handler(JobNotFound)
    async def _not_found(request: Request, exc: JobNotFound) -> JSONResponse:
        return problem(404, "Not Found", f"no job with id {exc}")

    @app.exception_handler(JobFinished)
    async def _finished(request: Request, exc: JobFinished) -> JSONResponse:
        return problem(409, "Conflict", str(exc), state=exc.state)

    @app.exception_handler(IdempotencyKeyReused)
    async def _reused(request: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        return problem(409, "Conflict", str(exc), job_id=exc.job_id)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_NOT_DECODED:
            msg = "the body is not valid JSON (UTF-8)"
            return _invalid([{"field": "", "loc": ["body"], "msg": msg, "type": "json_invalid"}])
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # Starlette names the first matching route's methods only
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail), headers=headers)

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        return problem(
            503, "Service Unavailable", "the job store is unavailable; try again",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )  # fmt: skip

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno not in FD_EXHAUSTED:
            raise exc  # a 500 (`_unexpected`), as any other error
        return _out_of_descriptors(exc)

    @app.exception_handler(Exception)  # Starlette's last resort, around every middleware
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if (cause := fd_exhaustion(exc)) is not None:  # in a middleware, or wrapped
            return _out_of_descriptors(cause)
        return problem(500, "Internal Server Error", "the server failed; its log says why")

    @app.exception_handler(NotDurable)
    async def _not_durable(request: Request, exc: NotDurable) -> JSONResponse:
        detail = f"{exc}; nothing was created: try again"
        return problem(
            503, "Service Unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_S)}
        )

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(original_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def fd_exhaustion(exc: BaseException) -> OSError | None:
    """The EMFILE or ENFILE behind `exc`: itself, or what it was raised from (a library that
    wraps an OSError in its own error); None when it is something else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in FD_EXHAUSTED:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _out_of_descriptors(exc: OSError) -> JSONResponse:
    log.warning("out of file descriptors: %s", exc)
    return problem(
        503, "Service Unavailable", "the server has too many files and connections open; try again",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )  # fmt: skip


def _located(loc: tuple[str | int, ...]) -> list[str | int]:
    """A controller FieldError's path, under `body` unless it names a parameter."""
    return list(loc) if loc and loc[0] in _PARAMETER_LOCATIONS else ["body", *loc]


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (for the Allow header of a 405); HEAD
    wherever GET is (api/head.py answers it)."""
    routes = request.app.router.routes

    def served(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    return [m for m in _METHODS if served(m) or (m == "HEAD" and served("GET"))]


def document_problems(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with each declared 4xx/5xx response documented as the `Problem` the
    handlers send (in place of FastAPI's default 422 body, or of no body at all);
    responses that declare a body of their own keep it. Every operation may answer 400
    (the middleware reads the Host and the URL first); every 429 carries Retry-After and
    every 401 WWW-Authenticate."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template=_SCHEMAS + "{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    problem_content = {PROBLEM: {"schema": {"$ref": _SCHEMAS + "Problem"}}}
    always = {"429": RETRY_AFTER, "401": WWW_AUTHENTICATE}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("400", {"description": BAD_REQUEST})
            for status, response in responses.items():
                if status[:1] in ("4", "5") and _problem_or_nothing(response.get("content")):
                    response["content"] = dict(problem_content)
                if status in always:
                    response["headers"] = {**response.get("headers", {}), **always[status]}
    for default in ("HTTPValidationError", "ValidationError"):
        schemas.pop(default, None)
    return spec


def _problem_or_nothing(content: dict[str, Any] | None) -> bool:
    if not content:
        return True
    refs = {media.get("schema", {}).get("$ref") for media in content.values()}
    return refs <= {_SCHEMAS + "HTTPValidationError", _SCHEMAS + "Problem"}


def _title(status: int) -> str:
    from http import HTTPStatus

    if status == 413:  # RFC 9110's name (Python 3.11 still says "Request Entity Too Large")
        return "Content Too Large"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
