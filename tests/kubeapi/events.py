"""core/v1 Events and events.k8s.io/v1 Events are one stored object seen through two versions.
The store keeps the core/v1 form; these functions convert to and from the events.k8s.io form
with the field renames of the real conversion (involvedObject <-> regarding, message <-> note,
reportingComponent <-> reportingController, source/firstTimestamp/lastTimestamp/count <->
deprecated*)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

# core/v1 name -> events.k8s.io/v1 name; the other fields keep their names.
RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_BACK = {new: old for old, new in RENAMES.items()}


def to_events_v1(event: Obj) -> Obj:
    out = {RENAMES.get(k, k): v for k, v in event.items()}
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "Event"
    return out


def from_events_v1(event: Obj) -> Obj:
    out = {_BACK.get(k, k): v for k, v in event.items()}
    out["apiVersion"], out["kind"] = "v1", "Event"
    return out
