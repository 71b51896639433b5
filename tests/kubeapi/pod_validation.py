"""ValidatePodSpec (for Pods and for the pod templates of Jobs) and ValidatePodUpdate: the
rules of the real server that a schema cannot express and that a manifest builder can trip on
(names, images, env, volume mounts, resources, tolerations, spec immutability)."""

from __future__ import annotations

import copy
import re
from typing import Any

from tests.kubeapi.errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    required,
)
from tests.cluster.quantity import parse_quantity
from tests.kubeapi.validation import dns1123_label, dns1123_subdomain, validate_labels

Obj = dict[str, Any]

ENV_NAME = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_SUBSCRIPTED = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")
_NATIVE = ("cpu", "memory", "ephemeral-storage", "storage", "pods")


def _is_extended(resource: str) -> bool:
    if resource in _NATIVE or resource.startswith("hugepages-"):
        return False
    return "/" in resource and not resource.split("/", maxsplit=1)[0].endswith("kubernetes.io")


def _env(container: Obj, path: str, relaxed_env: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, variable in enumerate(container.get("env") or []):
        at = f"{path}.env[{i}]"
        name = variable.get("name", "")
        if not name:
            errors.append(required(f"{at}.name"))
        elif relaxed_env and ("=" in name or not name.isprintable() or not name.isascii()):
            errors.append(
                invalid(
                    f"{at}.name",
                    name,
                    "a valid environment variable name must "
                    "consist only of printable ASCII characters other than '='",
                )
            )
        elif not relaxed_env and not re.fullmatch(ENV_NAME, name):
            errors.append(
                invalid(
                    f"{at}.name",
                    name,
                    (
                        "a valid environment variable name must consist of alphabetic "
                        "characters, digits, '_', '-', or '.', and must not start with a digit "
                        "(e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used "
                        "for validation is "
                        f"'{ENV_NAME}')"
                    ),
                )
            )
        source = variable.get("valueFrom")
        if source is None:
            continue
        if variable.get("value"):
            errors.append(
                invalid(f"{at}.valueFrom", "", "may not be specified when `value` is not empty")
            )
        if len(source) != 1:
            errors.append(
                invalid(
                    f"{at}.valueFrom", "", "may not have more than one field specified at a time"
                )
            )
        field_ref = source.get("fieldRef")
        if field_ref is not None:
            field_path = field_ref.get("fieldPath", "")
            if not (field_path in FIELD_PATHS or _SUBSCRIPTED.fullmatch(field_path)):
                errors.append(
                    not_supported(
                        f"{at}.valueFrom.fieldRef.fieldPath", field_path, list(FIELD_PATHS)
                    )
                )
    return errors


def _resources(container: Obj, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    amounts: dict[tuple[str, str], Any] = {}
    for kind, values in (("limits", limits), ("requests", requests)):
        for name, value in values.items():
            try:
                amounts[kind, name] = parse_quantity(value)
            except ValueError as error:
                errors.append(invalid(f"{path}.resources.{kind}[{name}]", value, str(error)))
                continue
            if amounts[kind, name] < 0:
                errors.append(
                    invalid(
                        f"{path}.resources.{kind}[{name}]",
                        value,
                        "must be greater than or equal to 0",
                    )
                )
            if _is_extended(name) and amounts[kind, name].denominator != 1:
                errors.append(
                    invalid(f"{path}.resources.{kind}[{name}]", value, "must be an integer")
                )
    for (kind, name), amount in list(amounts.items()):
        if kind != "requests":
            continue
        limit = amounts.get(("limits", name))
        at = f"{path}.resources.requests"
        if _is_extended(name):
            if limit is None:
                errors.append(
                    required(
                        f"{path}.resources.limits",
                        "Limit must be set for non overcommitable resources",
                    )
                )
            elif amount != limit:
                errors.append(
                    invalid(
                        f"{at}[{name}]",
                        requests[name],
                        f"must be equal to {name} limit of {limits[name]}",
                    )
                )
        elif limit is not None and amount > limit:
            errors.append(
                invalid(
                    f"{at}[{name}]",
                    requests[name],
                    f"must be less than or equal to {name} limit of {limits[name]}",
                )
            )
    return errors


def _container(container: Obj, path: str, volumes: set[str], relaxed_env: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    name = container.get("name", "")
    errors += (
        [invalid(f"{path}.name", name, m) for m in dns1123_label(name)]
        if name
        else [required(f"{path}.name")]
    )
    if not container.get("image"):
        errors.append(required(f"{path}.image"))
    checks = (
        ("imagePullPolicy", ["Always", "IfNotPresent", "Never"]),
        ("terminationMessagePolicy", ["File", "FallbackToLogsOnError"]),
    )
    for key, allowed in checks:
        if key in container and container[key] not in allowed:
            errors.append(not_supported(f"{path}.{key}", container[key], allowed))
    errors += _env(container, path, relaxed_env)
    mount_paths: set[str] = set()
    for i, mount in enumerate(container.get("volumeMounts") or []):
        at = f"{path}.volumeMounts[{i}]"
        if mount.get("name") not in volumes:
            errors.append(not_found(f"{at}.name", mount.get("name", "")))
        mount_path = mount.get("mountPath", "")
        if not mount_path:
            errors.append(required(f"{at}.mountPath"))
        elif mount_path in mount_paths:
            errors.append(invalid(f"{at}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
    for i, port in enumerate(container.get("ports") or []):
        number = port.get("containerPort", 0)
        if not 1 <= number <= 65535:
            errors.append(
                invalid(
                    f"{path}.ports[{i}].containerPort",
                    number,
                    "must be between 1 and 65535, inclusive",
                )
            )
    return errors + _resources(container, path)


def _tolerations(tolerations: list[Obj], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, toleration in enumerate(tolerations):
        at = f"{path}[{i}]"
        operator = toleration.get("operator", "Equal")
        if operator not in ("Equal", "Exists"):
            errors.append(not_supported(f"{at}.operator", operator, ["Equal", "Exists"]))
        if operator == "Exists" and toleration.get("value"):
            errors.append(
                invalid(
                    f"{at}.operator", toleration, "value must be empty when `operator` is 'Exists'"
                )
            )
        if not toleration.get("key") and operator != "Exists":
            errors.append(
                invalid(
                    f"{at}.operator",
                    operator,
                    "operator must be Exists when `key` is empty, which means "
                    '"match all values and all keys"',
                )
            )
        effect = toleration.get("effect", "")
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(
                not_supported(
                    f"{at}.effect", effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"]
                )
            )
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errors.append(
                invalid(
                    f"{at}.effect",
                    effect,
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
    return errors


def _volumes(spec: Obj, path: str) -> tuple[list[FieldError], set[str]]:
    errors: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name", "")
        at = f"{path}.volumes[{i}]"
        errors += [invalid(f"{at}.name", name, m) for m in dns1123_label(name)]
        if name in names:
            errors.append(duplicate(f"{at}.name", name))
        names.add(name)
        if len([k for k in volume if k != "name"]) != 1:
            errors.append(required(at, "must specify exactly one volume type"))
    return errors, names


def _policies(spec: Obj, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    allowed = {
        "restartPolicy": ["Always", "OnFailure", "Never"],
        "dnsPolicy": ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    }
    for key, values in allowed.items():
        if key in spec and spec[key] not in values:
            errors.append(not_supported(f"{path}.{key}", spec[key], values))
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and grace < 0:
        errors.append(
            invalid(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        errors.append(
            invalid(
                f"{path}.activeDeadlineSeconds",
                deadline,
                "must be between 1 and 2147483647, inclusive",
            )
        )
    for key in ("priorityClassName", "serviceAccountName"):
        if spec.get(key):
            errors += [invalid(f"{path}.{key}", spec[key], m) for m in dns1123_subdomain(spec[key])]
    return errors


def validate_pod_spec(spec: Obj, path: str, *, relaxed_env: bool = True) -> list[FieldError]:
    """ValidatePodSpec, for the parts that matter here."""
    errors, volumes = _volumes(spec, path)
    if not spec.get("containers"):
        errors.append(required(f"{path}.containers"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(key) or []):
            at = f"{path}.{key}[{i}]"
            errors += _container(container, at, volumes, relaxed_env)
            if container.get("name") in names:
                errors.append(duplicate(f"{at}.name", container.get("name")))
            names.add(container.get("name", ""))
    errors += _policies(spec, path)
    errors += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    return errors + _tolerations(spec.get("tolerations") or [], f"{path}.tolerations")


_MUTABLE_NOTE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


def validate_pod_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidatePodUpdate: only images, activeDeadlineSeconds and added tolerations change."""
    new_spec, old_spec = copy.deepcopy(new.get("spec", {})), copy.deepcopy(old.get("spec", {}))
    errors: list[FieldError] = []
    for key in ("initContainers", "containers"):
        for a, b in zip(new_spec.get(key) or [], old_spec.get(key) or [], strict=False):
            if a.get("image"):
                b["image"] = a["image"]
    old_deadline = old_spec.get("activeDeadlineSeconds")
    new_deadline = new_spec.get("activeDeadlineSeconds")
    if new_deadline != old_deadline:
        if old_deadline is not None and (new_deadline is None or new_deadline > old_deadline):
            errors.append(
                invalid(
                    "spec.activeDeadlineSeconds",
                    new_deadline,
                    "must be less than or equal to previous value",
                )
            )
        old_spec["activeDeadlineSeconds"] = new_deadline
    old_tolerations = old_spec.get("tolerations") or []
    new_tolerations = new_spec.get("tolerations") or []
    if all(t in new_tolerations for t in old_tolerations):
        old_spec["tolerations"] = new_tolerations
    if new_spec != old_spec:
        errors.append(forbidden("spec", _MUTABLE_NOTE))
    return errors
