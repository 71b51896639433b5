"""ValidateJob and ValidateJobUpdate: the batch/v1 Job rules a schema cannot express —
generated selector, restart policy, pod failure policy, Indexed completions, and which parts
of the spec may change after creation."""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeapi.defaults import CONTROLLER_UID, JOB_NAME
from tests.kubeapi.errors import (
    ErrorType,
    FieldError,
    duplicate,
    forbidden,
    invalid,
    invalid_at,
    not_supported,
    required,
)
from tests.kubeapi.pod_validation import validate_pod_spec
from tests.kubeapi.selectors import from_label_selector
from tests.kubeapi.validation import qualified_name, validate_annotations, validate_labels

Obj = dict[str, Any]

MAX_INDEXED = 100_000
ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
IMMUTABLE = "field is immutable"


def _failure_policy(spec: Obj) -> list[FieldError]:
    policy = spec.get("podFailurePolicy")
    if policy is None:
        return []
    path = "spec.podFailurePolicy.rules"
    template = spec.get("template", {}).get("spec", {})
    containers = {
        c.get("name") for k in ("containers", "initContainers") for c in template.get(k) or []
    }
    errors: list[FieldError] = []
    restart = template.get("restartPolicy")
    if restart != "Never":
        errors.append(
            invalid(
                "spec.template.spec.restartPolicy",
                restart,
                'only "Never" is supported when podFailurePolicy is specified',
            )
        )
    rules = policy.get("rules") or []
    if len(rules) > 20:
        errors.append(FieldError(ErrorType.TOO_MANY, path, "must have at most 20 items"))
    for i, rule in enumerate(rules):
        at = f"{path}[{i}]"
        action = rule.get("action")
        if action not in ACTIONS:
            errors.append(not_supported(f"{at}.action", action, ACTIONS))
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errors.append(
                forbidden(
                    f"{at}.action",
                    "the 'FailIndex' action can only be used when backoffLimitPerIndex is set",
                )
            )
        on_codes, on_conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if on_codes is not None and on_conditions is not None:
            errors.append(
                invalid_at(at, "specifying both OnExitCodes and OnPodConditions is not supported")
            )
        elif on_codes is None and on_conditions is None:
            errors.append(
                invalid_at(at, "specifying one of OnExitCodes and OnPodConditions is required")
            )
        if on_codes is not None:
            errors += _exit_codes(on_codes, f"{at}.onExitCodes", containers)
        for j, condition in enumerate(on_conditions or []):
            errors += [
                invalid(f"{at}.onPodConditions[{j}].type", condition.get("type"), m)
                for m in qualified_name(condition.get("type", ""))
            ]
            status = condition.get("status", "True")
            if status not in ("True", "False", "Unknown"):
                errors.append(
                    not_supported(
                        f"{at}.onPodConditions[{j}].status", status, ["False", "True", "Unknown"]
                    )
                )
    return errors


def _exit_codes(on_codes: Obj, at: str, containers: set[Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    name = on_codes.get("containerName")
    if name is not None and name not in containers:
        errors.append(
            invalid(
                f"{at}.containerName",
                name,
                "must be one of the container or initContainer names in the pod template",
            )
        )
    operator = on_codes.get("operator")
    if operator not in ("In", "NotIn"):
        errors.append(not_supported(f"{at}.operator", operator, ["In", "NotIn"]))
    values: list[int] = on_codes.get("values") or []
    if not values:
        errors.append(required(f"{at}.values", "at least one value is required"))
    if len(values) > 255:
        errors.append(FieldError(ErrorType.TOO_MANY, f"{at}.values", "must have at most 255 items"))
    for k, value in enumerate(values):
        if k and value == values[k - 1]:
            errors.append(duplicate(f"{at}.values[{k}]", value))
        elif k and value < values[k - 1]:
            errors.append(invalid(f"{at}.values[{k}]", value, "must be ordered"))
        if operator == "In" and value == 0:
            errors.append(invalid(f"{at}.values[{k}]", 0, "must not be 0 for the In operator"))
    return errors


def _selector(job: Obj) -> list[FieldError]:
    spec, meta = job["spec"], job["metadata"]
    template_labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
    errors: list[FieldError] = []
    if not spec.get("selector"):
        return [required("spec.selector")]
    selector = from_label_selector(spec["selector"])
    if selector.empty:
        errors.append(invalid_at("spec.selector", "empty selector is invalid for deployment"))
    elif not selector.matches(template_labels):
        errors.append(
            invalid_at(
                "spec.template.metadata.labels", "`selector` does not match template `labels`"
            )
        )
    if not spec.get("manualSelector"):
        if template_labels.get(CONTROLLER_UID) != meta.get("uid") or template_labels.get(
            JOB_NAME
        ) != meta.get("name"):
            errors.append(
                invalid_at(
                    "spec.template.metadata.labels", "`selector` does not match template `labels`"
                )
            )
        if not selector.matches({CONTROLLER_UID: meta.get("uid", "")}):
            errors.append(invalid_at("spec.selector", "`selector` not auto-generated"))
    return errors


def validate_job(job: Obj, *, relaxed_env: bool = True) -> list[FieldError]:
    """The create-time rules for a defaulted Job (selector already generated)."""
    spec = job.get("spec") or {}
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    errors = _selector(job)
    errors += validate_labels(template_meta.get("labels"), "spec.template.metadata.labels")
    errors += validate_annotations(
        template_meta.get("annotations"), "spec.template.metadata.annotations"
    )
    for key in (
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ):
        if spec.get(key) is not None and spec[key] < 0:
            errors.append(invalid(f"spec.{key}", spec[key], "must be greater than or equal to 0"))
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        errors.append(not_supported("spec.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed":
        if spec.get("completions") is None:
            errors.append(required("spec.completions", "when completion mode is Indexed"))
        for key in ("completions", "parallelism"):
            if (spec.get(key) or 0) > MAX_INDEXED:
                errors.append(
                    invalid(
                        f"spec.{key}",
                        spec[key],
                        f"must be less than or equal "
                        f"to {MAX_INDEXED} when completion mode is Indexed",
                    )
                )
    elif spec.get("backoffLimitPerIndex") is not None:
        errors.append(
            invalid(
                "spec.backoffLimitPerIndex",
                spec["backoffLimitPerIndex"],
                "requires indexed completion mode",
            )
        )
    replacement = spec.get("podReplacementPolicy", "TerminatingOrFailed")
    if replacement not in ("Failed", "TerminatingOrFailed"):
        errors.append(
            not_supported(
                "spec.podReplacementPolicy", replacement, ["Failed", "TerminatingOrFailed"]
            )
        )
    elif spec.get("podFailurePolicy") is not None and replacement != "Failed":
        errors.append(not_supported("spec.podReplacementPolicy", replacement, ["Failed"]))
    restart = template.get("spec", {}).get("restartPolicy")
    if restart not in ("OnFailure", "Never"):
        errors.append(
            not_supported("spec.template.spec.restartPolicy", restart, ["OnFailure", "Never"])
        )
    errors += _failure_policy(spec)
    errors += validate_pod_spec(
        template.get("spec") or {}, "spec.template.spec", relaxed_env=relaxed_env
    )
    return errors


_SCHEDULING = ("nodeSelector", "tolerations", "affinity", "schedulingGates")


def validate_job_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateJobSpecUpdate: what may change after creation."""
    new_spec, old_spec = new.get("spec", {}), old.get("spec", {})
    errors: list[FieldError] = []
    for key in (
        "selector",
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "manualSelector",
        "podReplacementPolicy",
        "successPolicy",
        "managedBy",
    ):
        if new_spec.get(key) != old_spec.get(key):
            errors.append(invalid(f"spec.{key}", new_spec.get(key), IMMUTABLE))
    if new_spec.get("completions") != old_spec.get("completions"):
        elastic = (
            new_spec.get("completionMode") == "Indexed"
            and old_spec.get("completions") == old_spec.get("parallelism")
            and new_spec.get("completions") == new_spec.get("parallelism")
        )
        if not elastic:
            errors.append(invalid("spec.completions", new_spec.get("completions"), IMMUTABLE))
    new_template = copy.deepcopy(new_spec.get("template", {}))
    old_template = copy.deepcopy(old_spec.get("template", {}))
    never_started = old_spec.get("suspend") and not old.get("status", {}).get("startTime")
    if never_started:
        for template in (new_template, old_template):
            template.setdefault("metadata", {}).pop("labels", None)
            template["metadata"].pop("annotations", None)
            for key in _SCHEDULING:
                template.setdefault("spec", {}).pop(key, None)
    if new_template != old_template:
        errors.append(invalid_at("spec.template", IMMUTABLE))
    return errors
