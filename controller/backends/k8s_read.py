"""Reading Kubernetes objects (raw API JSON) into kubetask's terms: pure functions.

`observe_job` turns a Job and its Pods into the Observation that `derive_state` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.manifests import ANNOTATION_INDEX, CONTAINER
from controller.states import Condition, Observation, PodFacts

Obj = dict[str, Any]


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def pod_index(pod: Obj) -> int:
    raw = pod.get("metadata", {}).get("annotations", {}).get(ANNOTATION_INDEX, "0")
    return int(raw) if str(raw).isdigit() else 0


def _container_status(pod: Obj) -> Obj:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return next(
        (s for s in statuses if s.get("name") == CONTAINER), statuses[0] if statuses else {}
    )


def pod_facts(pod: Obj) -> PodFacts:
    status = pod.get("status", {})
    waiting = _container_status(pod).get("state", {}).get("waiting") or {}
    unschedulable = next(
        (
            c.get("message") or "no node can run this pod"
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ),
        None,
    )
    return PodFacts(
        phase=status.get("phase", "Pending"),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        unschedulable_message=unschedulable,
    )


def observe_job(job: Obj, pods: list[Obj]) -> Observation:
    """The Job's conditions and counters, and the facts of its pods (those being deleted
    left out: they no longer run for the Job)."""
    status = job.get("status") or {}
    current = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    return Observation(
        conditions=tuple(
            Condition(
                type=c["type"],
                status=c.get("status") == "True",
                reason=c.get("reason"),
                message=c.get("message"),
            )
            for c in status.get("conditions") or []
        ),
        suspended=bool(job.get("spec", {}).get("suspend")),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        start_time=parse_time(status.get("startTime")),
        pods=tuple(pod_facts(p) for p in sorted(current, key=_created)),
    )


def _created(pod: Obj) -> str:
    return str(pod.get("metadata", {}).get("creationTimestamp", ""))


def latest_pods(pods: list[Obj]) -> dict[int, Obj]:
    """The newest pod of each completion index."""
    latest: dict[int, Obj] = {}
    for pod in sorted(pods, key=_created):
        latest[pod_index(pod)] = pod
    return latest


def termination_messages(pods: list[Obj]) -> dict[int, str]:
    """Each index's last termination message (the task's outcome when Redis lost it)."""
    messages: dict[int, str] = {}
    for index, pod in latest_pods(pods).items():
        terminated = _container_status(pod).get("state", {}).get("terminated") or {}
        if terminated.get("message"):
            messages[index] = terminated["message"]
    return messages


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The seconds an API answer's `Retry-After` asks to wait (None: not said)."""
    value = (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
