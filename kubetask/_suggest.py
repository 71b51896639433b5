"""`did you mean …?` for what the API turned down: an unknown kind, an unknown param (the
kinds' params schemas are those of GET /v1/kinds). Pure: the caller brings the data."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from pydantic import JsonValue

from kubetask.errors import FieldError
from kubetask.models import KindInfo

CUTOFF = 0.6  # difflib's default: `noopp` → noop, `stpes` → steps, `xyz` → nothing


def close_to(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word`, if any is close enough."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=CUTOFF)
    return matches[0] if matches else None


def _resolve(
    schema: Mapping[str, JsonValue], root: Mapping[str, JsonValue]
) -> dict[str, JsonValue]:
    """`schema` with a `$ref` (directly, or in its anyOf/allOf/oneOf) followed into `$defs`."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        defs = root.get("$defs")
        target = defs.get(ref.removeprefix("#/$defs/")) if isinstance(defs, dict) else None
        return dict(target) if isinstance(target, dict) else {}
    for key in ("anyOf", "allOf", "oneOf"):
        options = schema.get(key)
        for option in options if isinstance(options, list) else []:
            if isinstance(option, dict) and "$ref" in option:
                return _resolve(option, root)
    return dict(schema)


def param_names(schema: Mapping[str, JsonValue], path: Sequence[str]) -> list[str]:
    """The params a kind's schema allows at `path` (`[]`: the top level; `["datagen"]`: in
    the nested object `datagen`)."""
    node = _resolve(schema, schema)
    for part in path:
        properties = node.get("properties")
        child = properties.get(part) if isinstance(properties, dict) else None
        if not isinstance(child, dict):
            return []
        node = _resolve(child, schema)
    properties = node.get("properties")
    return list(properties) if isinstance(properties, dict) else []


def did_you_mean(kind: str, errors: Sequence[FieldError], kinds: Sequence[KindInfo]) -> list[str]:
    """A hint per error that has a close match: `did you mean noop?`, `params.stpes: did you
    mean steps?`."""
    by_name = {info.kind: info for info in kinds}
    if kind not in by_name:
        match = close_to(kind, by_name)
        return [f"did you mean {match}?"] if match else []
    hints = []
    for error in errors:
        parts = error.field.split(".")
        if parts[0] != "params" or len(parts) < 2:
            continue
        *parents, leaf = parts[1:]
        match = close_to(leaf, param_names(by_name[kind].params_schema, parents))
        if match and match != leaf:
            hints.append(f"{error.field}: did you mean {'.'.join([*parents, match])}?")
    return hints
