"""A minimal OpenAPI v3 for kubectl: the root index and, per group-version, the PATCH
operation of each resource with its `fieldValidation` parameter. That is what kubectl reads
(`create -f`, `apply -f`) to learn that the server validates fields itself; it then sends
`fieldValidation=Strict`. No schemas are served (`kubectl explain` does not work)."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.kubeapi.resources import GROUPS, ResourceType, in_group_version

Obj = dict[str, Any]


def _key(group: str) -> str:
    return f"apis/{group}/{GROUPS[group]}" if group else "api/v1"


def root() -> Obj:
    paths = {}
    for group in GROUPS:
        key = _key(group)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16].upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def _patch(rt: ResourceType) -> Obj:
    return {
        "operationId": f"patch{rt.kind}",
        "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": rt.version,
            "kind": rt.kind,
        },
    }


def group_version(path: str, version: str) -> Obj | None:
    """The document for `api/v1` or `apis/{group}/{version}`."""
    group = next((g for g in GROUPS if _key(g) == path), None)
    if group is None:
        return None
    paths = {}
    for rt in in_group_version(group, GROUPS[group]):
        prefix = f"/{path}/namespaces/{{namespace}}" if rt.namespaced else f"/{path}"
        paths[f"{prefix}/{rt.plural}/{{name}}"] = {"patch": _patch(rt)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{version}"},
        "paths": paths,
        "components": {"schemas": {}},
    }
