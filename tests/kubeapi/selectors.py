"""Label and field selectors as the API server parses and applies them.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`, `k<1`
(`!=` and `notin` match objects without the key). Field selectors: `f=v`, `f==v`, `f!=v` over
the fields each resource supports; any other field is a 400 like the real server's."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.kubeapi.errors import ApiError, bad_request

Obj = dict[str, Any]

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[A-Za-z0-9._/-]+)")
_OPERATORS = frozenset({"!", "=", "==", "!=", "(", ")", ",", "<", ">"})


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                if not present or value is None or not value.lstrip("-").isdigit():
                    return False
                bound = int(self.values[0])
                return int(value) > bound if self.op == "gt" else int(value) < bound
        return False


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(r.matches(labels or {}) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise bad_request(f"unable to parse requirement: invalid label selector {text!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


class _LabelParser:
    """A recursive-descent parser over the tokens of a label selector."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def fail(self) -> ApiError:
        return bad_request(f"unable to parse requirement: found unexpected token in {self.text!r}")

    def peek(self) -> str:
        return self.tokens[self.at] if self.at < len(self.tokens) else ""

    def take(self) -> str:
        token = self.peek()
        self.at += 1
        return token

    def word(self) -> str:
        token = self.take()
        if not token or token in _OPERATORS:
            raise self.fail()
        return token

    def parse(self) -> LabelSelector:
        requirements = []
        while self.at < len(self.tokens):
            requirements.append(self.requirement())
            if self.at < len(self.tokens) and self.take() != ",":
                raise self.fail()
        return LabelSelector(tuple(requirements))

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(self.word(), "!")
        key = self.word()
        op = self.peek()
        if op in ("", ","):
            return Requirement(key, "exists")
        self.take()
        if op in ("=", "==", "!="):
            value = "" if self.peek() in ("", ",") else self.word()  # `k=` selects ""
            return Requirement(key, "!=" if op == "!=" else "=", (value,))
        if op in ("in", "notin"):
            return Requirement(key, op, self.value_set())
        if op in (">", "<"):
            bound = self.word()
            if not bound.lstrip("-").isdigit():
                raise self.fail()
            return Requirement(key, "gt" if op == ">" else "lt", (bound,))
        raise self.fail()

    def value_set(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise self.fail()
        values = []
        while (token := self.take()) != ")":
            if not token:
                raise self.fail()
            if token != ",":
                values.append(token)
        return tuple(values)


def parse_labels(text: str) -> LabelSelector:
    """Parse a `labelSelector` query value."""
    return _LabelParser(text).parse()


def from_label_selector(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A `metav1.LabelSelector` object (matchLabels + matchExpressions)."""
    if not selector:
        return LabelSelector()
    requirements = [
        Requirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()
    ]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or []:
        op = ops[expression["operator"]]
        requirements.append(
            Requirement(expression["key"], op, tuple(expression.get("values") or ()))
        )
    return LabelSelector(tuple(requirements))


# -- field selectors -----------------------------------------------------------------------


def _path(*keys: str) -> Callable[[Obj], str]:
    def get(obj: Obj) -> str:
        value: Any = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return get


_COMMON: dict[str, Callable[[Obj], str]] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}
_INVOLVED = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
FIELDS: dict[str, dict[str, Callable[[Obj], str]]] = {
    "/pods": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: str(bool(o.get("spec", {}).get("hostNetwork"))).lower(),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "batch/jobs": {"status.successful": lambda o: str(o.get("status", {}).get("succeeded", 0))},
    "events": {
        **{f"involvedObject.{k}": _path("involvedObject", k) for k in _INVOLVED},
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "/namespaces": {"status.phase": _path("status", "phase")},
}
# events.k8s.io/v1 names the same fields by their new names.
ALIASES: dict[str, str] = {
    **{f"regarding.{k}": f"involvedObject.{k}" for k in _INVOLVED},
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
}


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)
    getters: tuple[Callable[[Obj], str], ...] = ()

    def matches(self, obj: Obj) -> bool:
        return all(
            (get(obj) == value) == equal
            for (_, equal, value), get in zip(self.terms, self.getters, strict=True)
        )

    def value(self, name: str) -> str | None:
        """The value a term requires for `name` with `=`, if any (to narrow a lookup)."""
        return next((v for f, eq, v in self.terms if f == name and eq), None)


def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` outside of backslash escapes."""
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_fields(text: str, store_key: str) -> FieldSelector:
    """Parse a `fieldSelector` query value for the resource stored under `store_key`."""
    supported = {**_COMMON, **FIELDS.get(store_key, {})}
    terms: list[tuple[str, bool, str]] = []
    getters: list[Callable[[Obj], str]] = []
    for raw in _split(text, ","):
        if not raw.strip():
            continue
        match = re.fullmatch(r"\s*([^!=\s]+)\s*(!=|==|=)(.*)", raw)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{raw}'")
        name, op, value = match.group(1), match.group(2), _unescape(match.group(3).strip())
        canonical = ALIASES.get(name, name) if store_key == "events" else name
        if canonical not in supported:
            raise bad_request(f"field label not supported: {name}")
        terms.append((canonical, op != "!=", value))
        getters.append(supported[canonical])
    return FieldSelector(tuple(terms), tuple(getters))
