"""Pure helpers of the simulated Job controller: conditions, completion indexes, the pod
failure policy's matching, and the Pod made from a Job's template."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def condition(obj: Obj, kind: str) -> Obj | None:
    return next(
        (c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), None
    )


def has_condition(obj: Obj, kind: str) -> bool:
    found = condition(obj, kind)
    return found is not None and found.get("status") == "True"


def is_finished(job: Obj) -> bool:
    return has_condition(job, "Complete") or has_condition(job, "Failed")


def pod_index(pod: Obj) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    return int(value) if value is not None and value.isdigit() else None


def is_terminal(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def _exit_codes(pod: Obj) -> list[tuple[str, int]]:
    status = pod.get("status", {})
    found = []
    for entry in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        terminated = (entry.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            found.append((entry["name"], int(terminated["exitCode"])))
    return found


def match_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str, str] | None:
    """The action of the first `podFailurePolicy` rule a failed pod matches, and the message
    the real controller gives it."""
    meta = pod["metadata"]
    who = f"{meta.get('namespace', '')}/{meta['name']}"
    for i, rule in enumerate((policy or {}).get("rules") or []):
        action = rule["action"]
        codes = rule.get("onExitCodes")
        if codes is not None:
            for name, code in _exit_codes(pod):
                if codes.get("containerName") not in (None, name):
                    continue
                if (code in codes["values"]) == (codes["operator"] == "In"):
                    return action, (
                        f"Container {name} for pod {who} failed with exit code "
                        f"{code} matching {action} rule at index {i}"
                    )
        for pattern in rule.get("onPodConditions") or []:
            for cond in pod.get("status", {}).get("conditions") or []:
                if cond.get("type") == pattern["type"] and cond.get("status") == pattern.get(
                    "status", "True"
                ):
                    return action, (
                        f"Pod {who} has condition {pattern['type']} matching "
                        f"{action} rule at index {i}"
                    )
    return None


def compress_indexes(indexes: set[int]) -> str:
    """`completedIndexes` format: sorted intervals, e.g. "0-2,4"."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_indexes(text: str) -> set[int]:
    found: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def pod_for(job: Obj, index: int | None) -> Obj:
    """The Pod the controller creates from the Job's template (for an index if Indexed)."""
    meta, template = job["metadata"], copy.deepcopy(job["spec"]["template"])
    template_meta = template.get("metadata") or {}
    labels = dict(template_meta.get("labels") or {})
    annotations = dict(template_meta.get("annotations") or {})
    spec = template["spec"]
    prefix = f"{meta['name']}-"
    if index is not None:
        suffix = f"-{index}-"
        prefix = meta["name"] + suffix
        if len(prefix) > 58:
            prefix = prefix[: 58 - len(suffix)] + suffix
        labels[INDEX_KEY] = annotations[INDEX_KEY] = str(index)
        spec.setdefault("hostname", f"{meta['name']}-{index}"[:63].rstrip("-"))
        for container in spec.get("initContainers", []) + spec["containers"]:
            variables = container.setdefault("env", [])
            if not any(v.get("name") == "JOB_COMPLETION_INDEX" for v in variables):
                path = f"metadata.annotations['{INDEX_KEY}']"
                variables.append(
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}},
                    }
                )
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod_meta: Obj = {
        "generateName": prefix,
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [owner],
        "finalizers": [TRACKING_FINALIZER],
    }
    if annotations:
        pod_meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
