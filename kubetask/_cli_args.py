"""What the CLI reads from its arguments, without I/O beyond the request file: `k=v` params
(values as JSON when they parse, dotted keys nested), labels and request files."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import yaml
from pydantic import JsonValue

from kubetask._calls import request_json
from kubetask.errors import InvalidRequest


class ArgumentError(ValueError):
    """An argument the CLI cannot use; the message says which and why."""


def _finite(text: str) -> float:
    """A JSON number or constant (NaN, Infinity, -Infinity) as a float, if finite."""
    value = float(text)
    if not math.isfinite(value):
        raise ArgumentError(f"{text} is not a finite number (JSON has no NaN or Infinity)")
    return value


def parse_value(text: str) -> JsonValue:
    """`5` -> 5, `true` -> True, `[1,2]` -> [1, 2], `{"a": 1}` -> {...}; else the string.
    `ArgumentError` for NaN, Infinity or a number too large for a float (1e999)."""
    try:
        value: JsonValue = json.loads(text, parse_float=_finite, parse_constant=_finite)
    except ArgumentError:
        raise
    except ValueError:
        return text
    return value


def _split(item: str, what: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ArgumentError(f"{what} {item!r} is not key=value")
    return key.strip(), value


def parse_params(items: Sequence[str]) -> dict[str, JsonValue]:
    """`--param` values as a params object; `a.b=1` sets `{"a": {"b": 1}}`."""
    params: dict[str, JsonValue] = {}
    for item in items:
        key, raw = _split(item, "param")
        *parents, leaf = key.split(".")
        node = params
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ArgumentError(f"param {key!r}: {where!r} is already set to a value")
            node = child
        try:
            node[leaf] = parse_value(raw)
        except ArgumentError as exc:
            raise ArgumentError(f"param {key!r}: {exc}") from None
    return params


def seconds(value: float | None) -> float | None:
    """A `--timeout`: None (no limit), or a finite number of seconds above 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ArgumentError(f"must be a finite number of seconds above 0, not {value:g}")
    return value


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    return dict(_split(item, "label") for item in items)


def parse_secrets(items: Sequence[str]) -> list[JsonValue]:
    """`--secret ENV=SECRET/KEY` values as the request's `secrets` (Secret references)."""
    secrets: list[JsonValue] = []
    for item in items:
        env_name, ref = _split(item, "secret")
        name, slash, key = ref.partition("/")
        if not slash or not name or not key:
            raise ArgumentError(f"secret {item!r} is not ENV=SECRET/KEY")
        secrets.append({"env": env_name, "name": name, "key": key})
    return secrets


def deep_merge(base: Mapping[str, JsonValue], top: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """`top` over `base`, objects merged key by key."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def read_request(path: Path) -> str:
    """A request file's text; `ArgumentError` for one that is missing, a folder, unreadable
    or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ArgumentError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ArgumentError(f"{path}: {exc.strerror or exc}") from None


def load_request(path: Path, text: str | None = None) -> dict[str, JsonValue]:
    """A job request from a JSON or YAML file (`text` given: its content, e.g. stdin), as
    JSON: YAML dates and times as ISO 8601 strings; `ArgumentError` naming the field for a
    value JSON cannot carry (`.nan`, `.inf`, a set, binary)."""
    content = read_request(path) if text is None else text
    try:
        loaded = json.loads(content) if path.suffix == ".json" else yaml.safe_load(content)
    except (ValueError, yaml.YAMLError) as exc:
        raise ArgumentError(f"{path}: not valid JSON or YAML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ArgumentError(f"{path}: a job request is an object (kind, params, ...)")
    try:
        return request_json(loaded)
    except InvalidRequest as exc:
        fields = "; ".join(f"{error.field}: {error.msg}" for error in exc.errors)
        raise ArgumentError(f"{path}: {fields}") from None


def build_request(
    *,
    kind: str | None,
    base: Mapping[str, JsonValue],
    params: Mapping[str, JsonValue],
    options: Mapping[str, JsonValue],
) -> dict[str, JsonValue]:
    """The request: the file's (if any), then the kind, params and options given."""
    request = dict(base)
    if kind is not None:
        request["kind"] = kind
    if "kind" not in request:
        raise ArgumentError("give a KIND (or a request file with a kind)")
    file_params = request.get("params") or {}
    if not isinstance(file_params, dict):
        raise ArgumentError("params must be an object")
    request["params"] = deep_merge(file_params, params)
    for key, value in options.items():
        if isinstance(value, dict) and isinstance(request.get(key), dict):
            request[key] = deep_merge(cast(dict[str, JsonValue], request[key]), value)
        else:
            request[key] = value
    return request
