"""What every route asks of its URL (one app-wide dependency, `well_formed`), a WebSocket's
too (refused with the HTTP answer before its handshake):

- Percent-encoded bytes that are UTF-8, in the path and the query: the server would read
  `%ff` as U+FFFD, so `uploads/%ff` and `uploads/%fe` would be one file. 400.
- A query parameter that the route reads as one value, given once: read as its last value
  alone, `dry_run=true&dry_run=false` would create a job and `purge=false&purge=true` would
  delete one. 422 naming it. A parameter declared as a list (`label`) repeats as it likes.
- No query parameter that the route does not take: ignored, `dryrun=true` would create a
  job and `limt=5` list every one. 422 naming it, with the parameter it is closest to. The
  pages a browser opens (the dashboard, /docs: routes outside the spec) take none and
  ignore any (a link's tracking or cache-busting query).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from fastapi.dependencies.models import Dependant
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from kubetask._suggest import close_to
from kubetask.controller.errors import FieldError, InvalidRequest

_SEQUENCES = (list, tuple, set, frozenset)


@dataclass(frozen=True)
class QueryParameters:
    """The query parameters a route reads: each by name, and those it reads as one value."""

    names: frozenset[str]
    one_value: frozenset[str]
    others_refused: bool  # False: a page for browsers, which ignores any other


_routes: dict[int, QueryParameters] = {}  # id(route) -> what it reads


async def well_formed(connection: HTTPConnection) -> None:
    """The checks above, for the route the request (or WebSocket) matched."""
    scope = connection.scope
    if not (_utf8(scope.get("raw_path", b"")) and _utf8(scope.get("query_string", b""))):
        raise HTTPException(400, "the URL is not UTF-8 once percent-decoded")
    route = scope.get("route")
    if isinstance(dependant := getattr(route, "dependant", None), Dependant):
        check_query(connection.query_params.multi_items(), _taken_by(route, dependant))


def _taken_by(route: object, dependant: Dependant) -> QueryParameters:
    """What `route` reads from the query, worked out once per route."""
    taken = _routes.get(id(route))
    if taken is None:
        in_spec = getattr(route, "include_in_schema", True)  # a WebSocket's has no flag
        taken = _routes[id(route)] = query_parameters(dependant, others_refused=in_spec)
    return taken


def _utf8(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode()
    except UnicodeDecodeError:
        return False
    return True


def check_query(query: list[tuple[str, str]], taken: QueryParameters) -> None:
    """InvalidRequest naming each one-value parameter given more than once and each
    parameter the route does not take (unless it ignores those)."""
    given = [name for name, _ in query]
    errors = [
        FieldError(("query", name), "given more than once", "value_error")
        for name in sorted(taken.one_value)
        if given.count(name) > 1
    ]
    if taken.others_refused:
        unknown = dict.fromkeys(name for name in given if name not in taken.names)
        errors += [
            FieldError(("query", name), unknown_parameter(name, taken.names), "extra_forbidden")
            for name in unknown
        ]
    if errors:
        raise InvalidRequest(errors)


def unknown_parameter(name: str, names: frozenset[str]) -> str:
    """Why `name` is refused: what it may have meant, else what the route takes."""
    match = close_to(name, names)
    if match is not None:
        return f"not a parameter of this route; did you mean {match}?"
    if not names:
        return "not a parameter of this route, which takes none"
    return f"not a parameter of this route, which takes: {', '.join(sorted(names))}"


def query_parameters(dependant: Dependant, *, others_refused: bool) -> QueryParameters:
    """What the route of `dependant` (and its dependencies) reads from the query."""
    fields = list(_query_fields(dependant))
    return QueryParameters(
        names=frozenset(name for name, _ in fields),
        one_value=frozenset(name for name, many in fields if not many),
        others_refused=others_refused,
    )


def _query_fields(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    """(name, whether it takes several values) of each query parameter read."""
    for field in dependant.query_params:
        yield field.alias, _is_sequence(field.field_info.annotation)
    for sub in dependant.dependencies:
        yield from _query_fields(sub)


def _is_sequence(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    return origin in _SEQUENCES or annotation in _SEQUENCES
