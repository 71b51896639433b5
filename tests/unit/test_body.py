"""JSON bodies (api/body.py): what counts as JSON, what parses, and which routes check it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts

from kubetask.api.app import create_app
from kubetask.api.body import JsonRoute, is_json, parse_json
from kubetask.api.settings import Settings


def _errors(body: bytes) -> list[tuple[tuple[Any, ...], str, str]]:
    with pytest.raises(RequestValidationError) as refused:
        parse_json(body)
    return [(tuple(e["loc"]), e["msg"], e["type"]) for e in refused.value.errors()]


@pytest.mark.parametrize(
    ("content_type", "json_or_not"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/problem+json", True),
        ("application/vnd.kubetask.job+json; version=1", True),
        ("text/plain", False),
        ("text/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/jsonl", False),
        ("", False),
        (None, False),
    ],
)
def test_what_counts_as_json(content_type: str | None, json_or_not: bool) -> None:
    assert is_json(content_type) is json_or_not


def test_json_parses_as_json() -> None:
    body = b'{"kind": "noop", "params": {"step_s": 0.5, "steps": [1, -2e3]}, "x": null}'
    assert parse_json(body) == json.loads(body)


def test_a_syntax_error_says_line_and_column_and_names_no_field() -> None:
    body = b'{\n  "kind": "noop",\n  "params": {"steps": 1,}\n}'
    [(loc, msg, kind)] = _errors(body)
    assert (loc, kind) == (("body",), "json_invalid")
    assert msg.startswith("invalid JSON at line 3 column 25: ")


def test_bytes_that_are_not_utf8_say_where() -> None:
    assert _errors(b'{"a":\n  "\xc3("}') == [
        (("body",), "not UTF-8 at line 2 column 4", "json_invalid")
    ]


def test_nesting_past_the_parser_is_refused_not_a_crash() -> None:
    assert _errors(b"[" * 200_000) == [(("body",), "JSON nested too deeply", "json_invalid")]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1E+999"])
def test_numbers_json_does_not_have_are_refused_with_their_path(number: str) -> None:
    body = f'{{"params": {{"lr": {number}, "ok": 1.5, "grid": [0, {{"x": {number}}}]}}}}'
    message = f"must be a finite number, not {number}"
    assert _errors(body.encode()) == [
        (("body", "params", "lr"), message, "finite_number"),
        (("body", "params", "grid", 1, "x"), message, "finite_number"),
    ]


def test_a_key_given_twice_is_refused_with_its_path_not_read_as_the_last() -> None:
    body = b'{"kind": "noop", "kind": "train", "params": {"grid": [{"x": 1, "x": 2, "y": 0}]}}'
    assert _errors(body) == [
        (("body", "kind"), "given more than once", "duplicate_key"),
        (("body", "params", "grid", 0, "x"), "given more than once", "duplicate_key"),
    ]


def test_a_deep_body_is_searched_without_recursing() -> None:
    depth = 900  # what the parser takes; a recursive search from inside a handler would not
    body = "[" * depth + "NaN" + "]" * depth
    [(loc, _, _)] = _errors(body.encode())
    assert loc == ("body", *([0] * depth))


def test_every_route_that_takes_a_body_checks_it_as_json() -> None:
    app = create_app(Settings(backend="local"))
    with_body = [
        context
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and context.original_route.body_field is not None
    ]
    assert with_body, "no route takes a body?"
    unchecked = [c.path for c in with_body if not isinstance(c.original_route, JsonRoute)]
    assert unchecked == []
    spec = app.openapi()
    for context in with_body:
        for method in context.methods or ():
            responses = spec["paths"][context.path][method.lower()]["responses"]
            for status in ("413", "415", "422"):
                media = responses[status]["content"]
                assert "application/problem+json" in media, (context.path, status)
