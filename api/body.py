"""What a route that takes a JSON body accepts: JSON, and only what JSON allows.

- A body that is not JSON by its Content-Type (`application/json` or any `+json`; a body
  without one too) is refused with 415 before anything reads it as JSON; so is one sent
  compressed (`Content-Encoding` other than `identity`), here and for uploads.
- A syntax error (or bytes that are not UTF-8) is 422, as every body that cannot be read,
  saying line and column; it names no field (`field` is '').
- NaN, Infinity and -Infinity, which Python's `json` accepts though JSON has none, and
  numbers past a float's range (`1e400`, read as infinity) are refused with 422 naming each
  field, for every JSON body, before any model sees them; an integer of more than 4300
  digits (Python's limit) is refused as unreadable (422).
- A key given twice in one object (`{"kind": "noop", "kind": "train"}`, which Python's
  `json` reads as its last) is refused with 422 naming it.

Routes opt in with `route_class=JsonRoute` (a unit test checks that every route with a
body does). The body's size is capped before this (api/limits.py: 413).
"""

from __future__ import annotations

import email.message
import json
import math
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

JSON_MEDIA_TYPE = "application/json"


class UnsupportedMediaType(HTTPException):
    """The body is not JSON (415)."""

    def __init__(self, content_type: str | None) -> None:
        sent = f"not {content_type}" if content_type else "and there was no Content-Type"
        super().__init__(
            415,
            f"the body must be JSON (Content-Type: {JSON_MEDIA_TYPE}), {sent}",
            headers={"Accept": JSON_MEDIA_TYPE},
        )


class UnsupportedEncoding(HTTPException):
    """The body is compressed (or otherwise encoded): 415, as RFC 7694 has it, since the
    server would read, or store, the encoded bytes."""

    def __init__(self, encoding: str) -> None:
        super().__init__(
            415,
            f"the body must be sent as it is (no Content-Encoding), not {encoding}",
            headers={"Accept-Encoding": "identity"},
        )


def refuse_encoded(headers: Headers) -> None:
    """`UnsupportedEncoding` unless the body comes without a content coding (or `identity`),
    however many Content-Encoding lines say it (several are one list: RFC 9110 5.3)."""
    sent = ", ".join(headers.getlist("content-encoding"))
    codings = [coding.strip() for coding in sent.split(",") if coding.strip()]
    if any(coding.lower() != "identity" for coding in codings):
        raise UnsupportedEncoding(sent)


class _Duplicated(dict[str, Any]):
    """An object of the body in which some keys appear more than once (their last value)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        counts = Counter(key for key, _ in pairs)
        self.twice = sorted(key for key, n in counts.items() if n > 1)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    return value if len(value) == len(pairs) else _Duplicated(pairs)


class _NonFinite:
    """Where the body had NaN, Infinity or a number too large for a float."""

    def __init__(self, text: str) -> None:
        self.text = text


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON: application/json or application/<anything>+json."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def parse_json(body: bytes) -> Any:
    """The body's JSON value, or RequestValidationError: a syntax error at its line and
    column, or each field holding a number that is not finite."""
    try:
        value = json.loads(
            body, parse_constant=_NonFinite, parse_float=_finite_float, object_pairs_hook=_object
        )
    except json.JSONDecodeError as exc:
        raise _invalid(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        line, column = _position(body, exc.start)
        raise _invalid(f"not UTF-8 at line {line} column {column}") from None
    except RecursionError:
        raise _invalid("JSON nested too deeply") from None
    except ValueError:  # an integer past Python's 4300 digits (sys.get_int_max_str_digits)
        raise _invalid("a number with too many digits to read") from None
    errors = [_error(path, item) for path, item in _refused(value)]
    if errors:
        raise RequestValidationError(errors)
    return value


def _finite_float(text: str) -> float | _NonFinite:
    number = float(text)
    return number if math.isfinite(number) else _NonFinite(text)


def _error(path: tuple[str | int, ...], item: _NonFinite | str) -> dict[str, Any]:
    if isinstance(item, _NonFinite):
        return {
            "type": "finite_number",
            "loc": ("body", *path),
            "msg": f"must be a finite number, not {item.text}",
            "input": item.text,
        }
    return {"type": "duplicate_key", "loc": ("body", *path, item), "msg": "given more than once"}


def _refused(value: Any) -> Iterator[tuple[tuple[str | int, ...], _NonFinite | str]]:
    """Each non-finite number in `value` with its path, and each key given twice with the
    path of its object, without recursing (a body may be nested as deep as the parser
    allows)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _NonFinite):
            yield path, item
        elif isinstance(item, dict):
            if isinstance(item, _Duplicated):
                yield from ((path, key) for key in item.twice)
            stack.extend(((*path, key), child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*path, i), child) for i, child in reversed(list(enumerate(item))))


def _position(body: bytes, offset: int) -> tuple[int, int]:
    """Line and column (from 1, as json's) of a byte offset."""
    line_start = body.rfind(b"\n", 0, offset) + 1
    return body.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _invalid(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": message}])


class JsonRequest(Request):
    """A request whose `json()` is `parse_json` (FastAPI reads the body through it)."""

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = parse_json(await self.body())
        return self._strict_json


class JsonRoute(APIRoute):
    """A route whose JSON body is checked as above before FastAPI reads it, and whose
    OpenAPI operation documents the 413 and 415 that come of it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self._takes_json():
            self.responses.setdefault(413, {"description": "Body too large."})
            self.responses.setdefault(415, {"description": "Body not JSON, or compressed."})

    def _takes_json(self) -> bool:
        return self.body_field is not None and not isinstance(
            self.body_field.field_info, params.Form
        )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if not self._takes_json():
            return handle

        async def handle_json(request: Request) -> Response:
            request = JsonRequest(request.scope, request.receive)
            if await request.body():  # an empty one is a missing body (422) to FastAPI
                refuse_encoded(request.headers)
                content_type = request.headers.get("content-type")
                if not is_json(content_type):
                    raise UnsupportedMediaType(content_type)
                await request.json()  # its errors raised here, where FastAPI lets them pass
            return await handle(request)

        return handle_json
