"""Per-kind behaviour, as the real registry's strategies hold it: defaulting, what create
resets, validation on create and update, admission, graceful deletion and the default
propagation policy."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.kubeapi import pod_security
from tests.kubeapi.defaults import admit_pod, default_job, default_pod, generate_job_selector
from tests.kubeapi.errors import ApiError, FieldError, forbidden_error
from tests.kubeapi.job_validation import validate_job, validate_job_update
from tests.kubeapi.pod_validation import validate_pod_spec, validate_pod_update
from tests.kubeapi.resources import EVENTS_V1, PODS, ResourceType
from tests.kubeapi.validation import (
    validate_configmap,
    validate_event,
    validate_lease,
    validate_secret,
)

Obj = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What strategies may consult: the server's settings and other stored objects."""

    relaxed_env: bool
    priority_classes: Mapping[str, int]
    namespace_labels: Mapping[str, str]


class Strategy:
    """The defaults: no status, no generation, Background deletion, immediate removal."""

    tracks_generation = False
    returns_deleted_object = False
    label_names = False
    default_propagation = "Background"

    def default(self, obj: Obj) -> None:
        """Defaulting on decode (create and update)."""

    def prepare_for_create(self, obj: Obj) -> None:
        """What create resets or generates (status, selectors)."""

    def validate(self, obj: Obj, rt: ResourceType, ctx: Context) -> list[FieldError]:
        return []

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return []

    def admit(self, obj: Obj, ctx: Context) -> list[str]:
        """Admission after validation: raise ApiError to reject; return warnings."""
        return []

    def grace_period_s(self, obj: Obj, requested: int | None) -> int:
        return 0


def _qos(spec: Obj) -> str:
    containers = spec.get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    named = [{**(r.get("requests") or {}), **(r.get("limits") or {})} for r in resources]
    if not any(k in ("cpu", "memory") for amounts in named for k in amounts):
        return "BestEffort"
    guaranteed = all(
        all(k in (r.get("limits") or {}) for k in ("cpu", "memory"))
        and (r.get("requests") or {}).get("cpu", r["limits"]["cpu"]) == r["limits"]["cpu"]
        and (r.get("requests") or {}).get("memory", r["limits"]["memory"]) == r["limits"]["memory"]
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _security_levels(labels: Mapping[str, str]) -> tuple[str, str]:
    return labels.get(pod_security.ENFORCE, "privileged"), labels.get(pod_security.WARN, "")


class PodStrategy(Strategy):
    tracks_generation = True
    returns_deleted_object = True

    def default(self, obj: Obj) -> None:
        default_pod(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending", "qosClass": _qos(obj["spec"])}
        obj["metadata"]["generation"] = 1

    def validate(self, obj: Obj, rt: ResourceType, ctx: Context) -> list[FieldError]:
        return validate_pod_spec(obj.get("spec") or {}, "spec", relaxed_env=ctx.relaxed_env)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_pod_update(new, old)

    def admit(self, obj: Obj, ctx: Context) -> list[str]:
        spec, name = obj["spec"], obj["metadata"]["name"]
        class_name = spec.get("priorityClassName")
        if class_name and class_name not in ctx.priority_classes:
            raise forbidden_error(PODS, name, f"no PriorityClass with name {class_name} was found")
        admit_pod(obj, ctx.priority_classes.get(class_name or "", 0))
        enforce, warn = _security_levels(ctx.namespace_labels)
        found = pod_security.violations(spec, enforce)
        if found:
            raise forbidden_error(PODS, name, pod_security.describe(enforce, found))
        warned = pod_security.violations(spec, warn)
        return [pod_security.describe(warn, warned)] if warned else []

    def grace_period_s(self, obj: Obj, requested: int | None) -> int:
        unscheduled = not obj.get("spec", {}).get("nodeName")
        finished = obj.get("status", {}).get("phase") in ("Succeeded", "Failed")
        if unscheduled or finished:
            return 0
        if requested is not None:
            return max(requested, 0)
        return int(obj["spec"].get("terminationGracePeriodSeconds", 30))


class JobStrategy(Strategy):
    tracks_generation = True
    default_propagation = "Orphan"  # batch/v1 keeps its legacy default

    def default(self, obj: Obj) -> None:
        default_job(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {}
        obj["metadata"]["generation"] = 1
        generate_job_selector(obj)

    def validate(self, obj: Obj, rt: ResourceType, ctx: Context) -> list[FieldError]:
        return validate_job(obj, relaxed_env=ctx.relaxed_env)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_job_update(new, old)

    def admit(self, obj: Obj, ctx: Context) -> list[str]:
        enforce, warn = _security_levels(ctx.namespace_labels)
        spec = obj["spec"]["template"].get("spec") or {}
        for level in (enforce, warn):
            found = pod_security.violations(spec, level)
            if found:
                return ["would " + pod_security.describe(level, found)]
        return []


class ConfigMapStrategy(Strategy):
    def validate(self, obj: Obj, rt: ResourceType, ctx: Context) -> list[FieldError]:
        return validate_configmap(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_configmap(new, old)


class SecretStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        """`stringData` is write-only: merged into `data` (base64), as the real server does."""
        plain = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) or {}
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in plain.items()})
        obj["data"] = data
        obj.setdefault("type", "Opaque")

    def validate(self, obj: Obj, rt: ResourceType, ctx: Context) -> list[FieldError]:
        return validate_secret(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return validate_secret(new, old)


class EventStrategy(Strategy):
    def validate(self, obj: Obj, rt: ResourceType, ctx: Context) -> list[FieldError]:
        return validate_event(obj, events_api=rt == EVENTS_V1)


class LeaseStrategy(Strategy):
    def validate(self, obj: Obj, rt: ResourceType, ctx: Context) -> list[FieldError]:
        return validate_lease(obj)


class NamespaceStrategy(Strategy):
    label_names = True

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Active"}
        obj["spec"] = {"finalizers": ["kubernetes"]}
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


STRATEGIES: dict[str, Strategy] = {
    "/pods": PodStrategy(),
    "batch/jobs": JobStrategy(),
    "/configmaps": ConfigMapStrategy(),
    "/secrets": SecretStrategy(),
    "events": EventStrategy(),
    "coordination.k8s.io/leases": LeaseStrategy(),
    "/namespaces": NamespaceStrategy(),
}


def strip_nulls(value: Any) -> Any:
    """JSON nulls decode to zero values in Go: drop them from maps, as the real server does."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def check_kind(rt: ResourceType, body: Any) -> Obj:
    """The body as an object of this resource's kind (a copy); 400 if it is something else."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", f"the body of the request is not a {rt.kind} object")
    obj: Obj = strip_nulls(copy.deepcopy(body))
    api_version, kind = (
        obj.setdefault("apiVersion", rt.api_version),
        obj.setdefault("kind", rt.kind),
    )
    if api_version != rt.api_version or kind != rt.kind:
        raise ApiError(
            400,
            "BadRequest",
            f"the API version in the data ({api_version}) or kind "
            f"({kind}) does not match the expected {rt.api_version} {rt.kind}",
        )
    obj.setdefault("metadata", {})
    return obj
