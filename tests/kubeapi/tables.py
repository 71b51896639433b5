"""Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for (`Accept:
application/json;as=Table;v=v1;g=meta.k8s.io`) with the columns of the real printers for the
kinds served (Jobs, Pods, ConfigMaps, Events, Leases, Namespaces)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.kubeapi.resources import ResourceType

Obj = dict[str, Any]
Row = Callable[[Obj, datetime], list[Any]]


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, to the day."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 120:
        return f"{max(s, 0)}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d{hours % 24}h" if hours < 192 and hours % 24 else f"{hours // 24}d"


def _age(obj: Obj, now: datetime) -> str:
    created = _parse(obj["metadata"].get("creationTimestamp"))
    return human_duration((now - created).total_seconds()) if created else "<unknown>"


def _has(obj: Obj, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in obj.get("status", {}).get("conditions") or []
    )


def _job(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    labels = [("Complete", "Complete"), ("Failed", "Failed")]
    state = next((text for kind, text in labels if _has(obj, kind)), "")
    if not state:
        if obj["metadata"].get("deletionTimestamp"):
            state = "Terminating"
        else:
            later = [
                ("Suspended", "Suspended"),
                ("FailureTarget", "FailureTarget"),
                ("SuccessCriteriaMet", "SuccessCriteriaMet"),
            ]
            state = next((text for kind, text in later if _has(obj, kind)), "Running")
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = _parse(status.get("startTime")), _parse(status.get("completionTime"))
    duration = human_duration(((end or now) - start).total_seconds()) if start else ""
    return [obj["metadata"]["name"], state, completions, duration, _age(obj, now)]


def _pod(obj: Obj, now: datetime) -> list[Any]:
    status = obj.get("status", {})
    statuses = status.get("containerStatuses") or []
    total = len(obj.get("spec", {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("reason") or status.get("phase", "")
    for s in statuses:
        state = s.get("state", {})
        detail = state.get("waiting", {}).get("reason") or state.get("terminated", {}).get("reason")
        if detail:
            reason = detail
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    return [obj["metadata"]["name"], f"{ready}/{total}", reason, restarts, _age(obj, now)]


def _event(obj: Obj, now: datetime) -> list[Any]:
    seen = _parse(
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    return [
        human_duration((now - seen).total_seconds()) if seen else "<unknown>",
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{involved.get('kind', '').lower()}/{involved.get('name', '')}",
        obj.get("message") or obj.get("note", ""),
    ]


def _column(name: str, kind: str = "string", fmt: str = "") -> Obj:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": 0}


NAME = _column("Name", fmt="name")
AGE = _column("Age")
PRINTERS: dict[str, tuple[list[Obj], Row]] = {
    "batch/jobs": (
        [NAME, _column("Status"), _column("Completions"), _column("Duration"), AGE],
        _job,
    ),
    "/pods": (
        [NAME, _column("Ready"), _column("Status"), _column("Restarts", "integer"), AGE],
        _pod,
    ),
    "/configmaps": (
        [NAME, _column("Data", "integer"), AGE],
        lambda o, now: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _age(o, now),
        ],
    ),
    "/secrets": (
        [NAME, _column("Type"), _column("Data", "integer"), AGE],
        lambda o, now: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            len(o.get("data") or {}),
            _age(o, now),
        ],
    ),
    "events": (
        [
            _column("Last Seen"),
            _column("Type"),
            _column("Reason"),
            _column("Object"),
            _column("Message"),
        ],
        _event,
    ),
    "coordination.k8s.io/leases": (
        [NAME, _column("Holder"), AGE],
        lambda o, now: [
            o["metadata"]["name"],
            o.get("spec", {}).get("holderIdentity", ""),
            _age(o, now),
        ],
    ),
    "/namespaces": (
        [NAME, _column("Status"), AGE],
        lambda o, now: [o["metadata"]["name"], o.get("status", {}).get("phase", ""), _age(o, now)],
    ),
}


def table(
    rt: ResourceType,
    objects: list[Obj],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    now: datetime | None = None,
) -> Obj:
    """A Table of `objects` (already in `rt`'s version)."""
    columns, row = PRINTERS[rt.store_key]
    moment = now or datetime.now(UTC)
    rows = []
    for obj in objects:
        entry: Obj = {"cells": row(obj, moment)}
        if include_object == "Object":
            entry["object"] = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        elif include_object != "None":
            entry["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(entry)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    }
