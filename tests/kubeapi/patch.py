"""The three patch formats: JSON merge patch (RFC 7386), strategic merge patch and JSON patch
(RFC 6902).

The strategic merge patch is the common subset of the real one: lists known to merge by a key
(containers, env, volumes, volumeMounts, ports, conditions, ownerReferences, ...) merge item by
item, `finalizers` merges as a set, other lists are replaced; the `$patch` (replace/delete),
`$retainKeys` and `$deleteFromPrimitiveList/` directives are honoured and `$setElementOrder/`
is ignored. The merge keys are looked up by field name, not by Go type."""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeapi.errors import ApiError, unsupported_media_type

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "podIPs": "ip",
    "hostIPs": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
}
MERGE_PRIMITIVES = {"finalizers"}


class PatchError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(422, "Invalid", message)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    if field in MERGE_PRIMITIVES:
        return target + [v for v in patch if v not in target]
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [strategic_merge_patch(None, item) for item in patch]
    if any(item.get("$patch") == "replace" for item in patch):
        return [strategic_merge_patch(None, i) for i in patch if i.get("$patch") != "replace"]
    result = copy.deepcopy(target)
    for item in patch:
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(strategic_merge_patch(None, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """The common subset of Kubernetes' strategic merge patch (see the module docstring)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: strategic_merge_patch(None, v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key not in ("$patch", "$retainKeys") and not key.startswith("$setElementOrder/"):
            _patch_key(result, key, value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _patch_key(result: dict[str, Any], key: str, value: Any) -> None:
    if key.startswith("$deleteFromPrimitiveList/"):
        field = key.split("/", 1)[1]
        result[field] = [v for v in result.get(field) or [] if v not in value]
    elif isinstance(value, list):
        current = result.get(key)
        result[key] = _merge_list(key, current if isinstance(current, list) else [], value)
    else:
        merged = None if value is None else strategic_merge_patch(result.get(key), value)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_index(node, part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise PatchError(f"doc is missing path: {'/'.join(parts)}")
    return node, parts[-1]


def _index(node: list[Any], part: str, *, adding: bool = False) -> int:
    if part == "-" and adding:
        return len(node)
    if not part.isdigit() or int(part) > len(node) - (0 if adding else 1):
        raise PatchError(f"invalid index {part!r}")
    return int(part)


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        return parent[_index(parent, last)]
    if not isinstance(parent, dict) or last not in parent:
        raise PatchError(f"doc is missing path: {path}")
    return parent[last]


def _remove(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, _pointer(path))
    if isinstance(parent, list):
        return parent.pop(_index(parent, last))
    if not isinstance(parent, dict) or last not in parent:
        raise PatchError(f"doc is missing path: {path}")
    return parent.pop(last)


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        parent.insert(_index(parent, last, adding=True), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"doc is missing path: {path}")
    return doc


def json_patch(target: Obj, operations: Any) -> Obj:
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")
    doc: Any = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(doc, path)
        elif op == "replace":
            _get(doc, path)
            _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            value = copy.deepcopy(_get(doc, operation.get("from", "")))
            if op == "move":
                _remove(doc, operation["from"])
            doc = _add(doc, path, value)
        elif op == "test":
            if _get(doc, path) != operation.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"Unexpected kind: {op}")
    if not isinstance(doc, dict):
        raise PatchError("the patched document is not an object")
    return doc


def apply_patch(target: Obj, patch: Any, content_type: str) -> Obj:
    """Apply a patch of the given media type; ApiError 415 for an unknown type."""
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
    if content_type == MERGE_PATCH:
        result: Obj = merge_patch(target, patch)
        return result
    if content_type == STRATEGIC_MERGE_PATCH:
        merged: Obj = strategic_merge_patch(target, patch)
        return merged
    raise unsupported_media_type(
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH} (the test server does not "
        f"support server-side apply)"
    )
