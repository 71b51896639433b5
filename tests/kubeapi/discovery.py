"""Discovery documents (legacy JSON, which kubectl falls back to): `/version`, `/api`,
`/api/v1`, `/apis`, `/apis/{group}` and `/apis/{group}/{version}`."""

from __future__ import annotations

from typing import Any

from tests.kubeapi.resources import GROUPS, ResourceType, in_group_version

Obj = dict[str, Any]

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_SUBRESOURCES: dict[str, Obj] = {
    "status": {"verbs": ["get", "patch", "update"]},
    "log": {"verbs": ["get"]},
    "eviction": {"verbs": ["create"], "group": "policy", "version": "v1", "kind": "Eviction"},
    "binding": {"verbs": ["create"], "kind": "Binding"},
}


def version_info(version: str) -> Obj:
    major, minor, *_ = version.removeprefix("v").split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{version.removeprefix('v')}",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str) -> Obj:
    version = GROUPS[name]
    entry = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [entry], "preferredVersion": entry}


def api_groups() -> Obj:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name) for name in GROUPS if name],
    }


def api_group(name: str) -> Obj | None:
    if name not in GROUPS or not name:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def _resource(rt: ResourceType) -> list[Obj]:
    main: Obj = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": VERBS,
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    entries = [main]
    for sub in rt.subresources:
        extra = _SUBRESOURCES[sub]
        entries.append(
            {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": extra.get("kind", rt.kind),
                **{k: v for k, v in extra.items() if k != "kind"},
            }
        )
    return entries


def resource_list(group: str, version: str) -> Obj | None:
    types = in_group_version(group, version)
    if not types:
        return None
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [entry for rt in types for entry in _resource(rt)],
    }
