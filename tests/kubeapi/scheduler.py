"""A scheduler for simulated nodes: node selector and required node affinity, taints and
tolerations, and resource requests against allocatable (cpu, memory, pods, extended resources
such as `nvidia.com/gpu`). A pod that fits no node gets the scheduler's message, e.g.
`0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: ...`."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from tests.cluster.quantity import parse_quantity

Obj = dict[str, Any]


@dataclass(frozen=True)
class SimNode:
    """A simulated node: its labels, what it can allocate, its taints."""

    name: str = "sim-node-1"
    labels: Mapping[str, str] = field(default_factory=dict)
    allocatable: Mapping[str, str] = field(
        default_factory=lambda: {"cpu": "8", "memory": "32Gi", "pods": "110"}
    )
    taints: tuple[Mapping[str, str], ...] = ()

    def all_labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.labels,
        }


Amounts = defaultdict[str, Fraction]


def _amounts(container: Obj) -> dict[str, Fraction]:
    resources = container.get("resources") or {}
    given = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {k: parse_quantity(v) for k, v in given.items()}


def pod_requests(pod: Obj) -> Amounts:
    """Effective requests: the sum over containers, at least each init container's."""
    spec = pod.get("spec", {})
    total: Amounts = defaultdict(Fraction)
    for container in spec.get("containers") or []:
        for name, amount in _amounts(container).items():
            total[name] += amount
    for init in spec.get("initContainers") or []:
        for name, amount in _amounts(init).items():
            total[name] = max(total[name], amount)
    total["pods"] = Fraction(1)
    return total


def _expression_matches(expression: Obj, labels: Mapping[str, str]) -> bool:
    key, op = expression["key"], expression["operator"]
    values = expression.get("values") or []
    value = labels.get(key)
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and value is not None and value.lstrip("-").isdigit():
        return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])
    return False


def _affinity_matches(pod: Obj, labels: Mapping[str, str]) -> bool:
    spec = pod.get("spec", {})
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    return any(
        all(_expression_matches(e, labels) for e in term.get("matchExpressions") or [])
        for term in required.get("nodeSelectorTerms") or []
    )


def _tolerates(tolerations: list[Obj], taint: Mapping[str, str]) -> bool:
    for toleration in tolerations:
        operator = toleration.get("operator", "Equal")
        key_ok = (
            toleration.get("key", "") in ("", taint.get("key"))
            if operator == "Exists"
            else (toleration.get("key") == taint.get("key"))
        )
        effect_ok = toleration.get("effect", "") in ("", taint.get("effect"))
        value_ok = operator == "Exists" or toleration.get("value", "") == taint.get("value", "")
        if key_ok and effect_ok and value_ok:
            return True
    return False


def unfit_reasons(pod: Obj, node: SimNode, used: Amounts) -> list[str]:
    """Why `pod` does not fit `node` (empty: it fits). `used`: what bound pods request."""
    if not _affinity_matches(pod, node.all_labels()):
        return ["node(s) didn't match Pod's node affinity/selector"]
    tolerations = pod.get("spec", {}).get("tolerations") or []
    for taint in node.taints:
        if taint.get("effect") != "PreferNoSchedule" and not _tolerates(tolerations, taint):
            value = f": {taint['value']}" if taint.get("value") else ""
            return [f"node(s) had untolerated taint {{{taint.get('key')}{value}}}"]
    reasons = []
    for name, amount in sorted(pod_requests(pod).items()):
        capacity = parse_quantity(node.allocatable.get(name, "0"))
        if amount and used[name] + amount > capacity:
            reasons.append("Too many pods" if name == "pods" else f"Insufficient {name}")
    return reasons


def schedule(pod: Obj, nodes: list[SimNode], bound: list[Obj]) -> tuple[str | None, str]:
    """The node to bind `pod` to, or None and the FailedScheduling message."""
    counts: Counter[str] = Counter()
    for node in nodes:
        used: Amounts = defaultdict(Fraction)
        for other in bound:
            if other["spec"].get("nodeName") == node.name:
                for name, amount in pod_requests(other).items():
                    used[name] += amount
        reasons = unfit_reasons(pod, node, used)
        if not reasons:
            return node.name, ""
        counts.update(reasons)
    n = len(nodes)
    listed = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
    return None, (
        f"0/{n} nodes are available: {listed}. preemption: 0/{n} nodes are available: "
        f"{n} Preemption is not helpful for scheduling."
    )
