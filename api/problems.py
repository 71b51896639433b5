"""Errors as RFC 9457 `application/problem+json`, with field paths for invalid input."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from controller.errors import IdempotencyKeyReused, InvalidRequest, JobFinished, JobNotFound

log = logging.getLogger("kubetask.api")

PROBLEM = "application/problem+json"


def problem(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic/FastAPI errors as {field, loc, msg, type}; `field` is the dotted path."""
    out = []
    for error in errors:
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
        out.append({"field": field, "loc": loc, "msg": error["msg"], "type": error["type"]})
    return out


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    detail = "; ".join(f"{e['field'] or 'body'}: {e['msg']}" for e in errors)
    return problem(422, "Unprocessable Content", detail, errors=errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid(field_errors(exc.errors()))

    @app.exception_handler(InvalidRequest)
    async def _invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        errors = [{"loc": ["body", *e.loc], "msg": e.msg, "type": e.type} for e in exc.errors]
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
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail), headers=headers)

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        return problem(
            503, "Service Unavailable", "the job store is unavailable; try again",
            headers={"Retry-After": "2"},
        )  # fmt: skip


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
