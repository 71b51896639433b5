"""What every HTTP route asks of its URL (one app-wide dependency, `well_formed`):

- Percent-encoded bytes that are UTF-8, in the path and the query: the server would read
  `%ff` as U+FFFD, so `uploads/%ff` and `uploads/%fe` would be one file. 400.
- A query parameter that the route reads as one value, given once: read as its last value
  alone, `dry_run=true&dry_run=false` would create a job and `purge=false&purge=true` would
  delete one. 422 naming it. A parameter declared as a list (`label`) repeats as it likes.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from kubetask.controller.errors import FieldError, InvalidRequest

_SEQUENCES = (list, tuple, set, frozenset)
_scalars: dict[int, frozenset[str]] = {}  # id(route) -> its one-value query parameters


async def well_formed(connection: HTTPConnection) -> None:
    """The checks above, for the route the request matched."""
    scope = connection.scope
    if not (_utf8(scope.get("raw_path", b"")) and _utf8(scope.get("query_string", b""))):
        raise HTTPException(400, "the URL is not UTF-8 once percent-decoded")
    given_once(connection)


def _utf8(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode()
    except UnicodeDecodeError:
        return False
    return True


def given_once(connection: HTTPConnection) -> None:
    """Each of the route's one-value query parameters at most once."""
    route = connection.scope.get("route")
    if not isinstance(route, APIRoute):  # a WebSocket's: its handshake reads what it reads
        return
    names = _scalars.get(id(route))
    if names is None:
        names = _scalars[id(route)] = frozenset(one_value_parameters(route.dependant))
    query = connection.query_params
    repeated = sorted(name for name in names if len(query.getlist(name)) > 1)
    if repeated:
        raise InvalidRequest(
            [FieldError(("query", n), "given more than once", "value_error") for n in repeated]
        )


def one_value_parameters(dependant: Dependant) -> Iterator[str]:
    """The names of the query parameters that the route and its dependencies read as one
    value."""
    for field in dependant.query_params:
        if not _is_sequence(field.field_info.annotation):
            yield field.alias
    for sub in dependant.dependencies:
        yield from one_value_parameters(sub)


def _is_sequence(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    return origin in _SEQUENCES or annotation in _SEQUENCES
