"""Events from the simulated controllers, as client-go's event recorder writes them: core/v1
Events named `<object>.<hex time>`, with source, reportingComponent/Instance, first/last
timestamps and a count. Like the recorder's correlator, it does not repeat an event (same
object, reason and message)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from tests.kubeapi.errors import ApiError
from tests.kubeapi.registry import Registry
from tests.kubeapi.resources import EVENTS, JOBS, PODS

Obj = dict[str, Any]


class EventRecorder:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._seen: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def record(
        self, obj: Obj, kind: str, reason: str, message: str, *, component: str, host: str = ""
    ) -> None:
        """Record an Event of `kind` (Normal/Warning) on a Job or Pod."""
        meta = obj["metadata"]
        with self._lock:
            if (meta["uid"], reason, message) in self._seen:
                return
            self._seen.add((meta["uid"], reason, message))
        now = self.registry.now()
        rt = JOBS if obj.get("kind") == "Job" else PODS
        event = {
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "kind": rt.kind,
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": rt.api_version,
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": component, **({"host": host} if host else {})},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": host,
        }
        with contextlib.suppress(ApiError):  # e.g. the namespace is being deleted
            self.registry.create(EVENTS, meta["namespace"], event)
