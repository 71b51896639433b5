"""API errors as the real server sends them: a `Status` object with the HTTP code, the reason
and, for 422 Invalid, `details.causes` naming each field. Field errors render their messages
the way apimachinery's `field.Error` does (`spec.x: Invalid value: "y": must be ...`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tests.kubeapi.resources import ResourceType

Obj = dict[str, Any]
_OMIT = object()


class ErrorType(StrEnum):
    """apimachinery's field.ErrorType: the value is the cause's `reason`."""

    REQUIRED = "FieldValueRequired"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    DUPLICATE = "FieldValueDuplicate"
    NOT_FOUND = "FieldValueNotFound"


_PREFIX = {
    ErrorType.REQUIRED: "Required value",
    ErrorType.INVALID: "Invalid value",
    ErrorType.NOT_SUPPORTED: "Unsupported value",
    ErrorType.FORBIDDEN: "Forbidden",
    ErrorType.TOO_LONG: "Too long",
    ErrorType.TOO_MANY: "Too many",
    ErrorType.DUPLICATE: "Duplicate value",
    ErrorType.NOT_FOUND: "Not found",
}
_SHOWS_VALUE = {
    ErrorType.INVALID,
    ErrorType.NOT_SUPPORTED,
    ErrorType.DUPLICATE,
    ErrorType.NOT_FOUND,
}


def _render(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return json.dumps(value)
    return '"object"'


@dataclass(frozen=True)
class FieldError:
    """One invalid field: `field` is the dotted path (`spec.template.spec.restartPolicy`)."""

    type: ErrorType
    field: str
    detail: str = ""
    value: Any = _OMIT

    def body(self) -> str:
        parts = [_PREFIX[self.type]]
        if self.type in _SHOWS_VALUE and self.value is not _OMIT:
            parts.append(_render(self.value))
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts)

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> Obj:
        return {"reason": self.type.value, "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.REQUIRED, path, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(ErrorType.INVALID, path, detail, value)


def invalid_at(path: str, detail: str) -> FieldError:
    """Invalid, without echoing the (structured) value."""
    return FieldError(ErrorType.INVALID, path, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError(ErrorType.NOT_SUPPORTED, path, detail, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(ErrorType.FORBIDDEN, path, detail)


def too_long(path: str, limit: int, unit: str = "bytes") -> FieldError:
    return FieldError(ErrorType.TOO_LONG, path, f"must have at most {limit} {unit}")


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(ErrorType.DUPLICATE, path, "", value)


def not_found(path: str, value: Any) -> FieldError:
    return FieldError(ErrorType.NOT_FOUND, path, "", value)


@dataclass
class ApiError(Exception):
    """An error response: `status()` is the body, `headers` extra response headers."""

    code: int
    reason: str
    message: str
    details: Obj | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str, *, kind: str | None = None) -> Obj:
    details: Obj = {"name": name, "kind": kind or rt.plural}
    if rt.group:
        details["group"] = rt.group
    return details


def not_found_error(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    message = f'{rt.group_resource} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    message = f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(rt, name))


def invalid_error(rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    listed = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(map(str, errors)) + "]"
    message = f'{rt.group_kind} "{name}" is invalid: {listed}'
    details = _details(rt, name, kind=rt.kind)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", message, details)


def forbidden_error(rt: ResourceType, name: str, why: str) -> ApiError:
    message = f'{rt.group_resource} "{name}" is forbidden: {why}'
    return ApiError(403, "Forbidden", message, _details(rt, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(detail: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", detail)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_many_requests(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after_s},
        {"Retry-After": str(retry_after_s)},
    )


def server_error(code: int, message: str = "", retry_after_s: int | None = None) -> ApiError:
    """5xx: 500 InternalError, 503 ServiceUnavailable, 504 Timeout, others InternalError."""
    reason = {503: "ServiceUnavailable", 504: "Timeout"}.get(code, "InternalError")
    text = message or {
        503: "the server is currently unable to handle the request",
        504: "the server was unable to return a response in the time allotted",
    }.get(code, "Internal error occurred: injected fault")
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
    details = {"retryAfterSeconds": retry_after_s} if retry_after_s is not None else None
    return ApiError(code, reason, text, details, headers)


def error_for_code(code: int, retry_after_s: int | None = None) -> ApiError:
    """A generic error for an injected fault with this HTTP code."""
    if code == 429:
        return too_many_requests(retry_after_s if retry_after_s is not None else 1)
    if code >= 500:
        return server_error(code, retry_after_s=retry_after_s)
    reasons = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        410: "Gone",
        422: "Invalid",
    }
    return ApiError(code, reasons.get(code, "Unknown"), f"injected fault ({code})")
