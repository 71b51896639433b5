"""The rules a real API server enforces beyond the schema, for metadata and the simple kinds
(ConfigMaps, Events, Leases, Namespaces): names, labels, annotations, owner references, sizes.
Messages follow apimachinery's validation messages."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from tests.kubeapi.errors import FieldError, forbidden, invalid, invalid_at, required, too_long

Obj = dict[str, Any]

SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
CONFIG_KEY = r"[-._a-zA-Z0-9]+"
ANNOTATIONS_LIMIT = 256 * 1024
CONFIGMAP_LIMIT = 1024 * 1024


def dns1123_subdomain(value: str) -> list[str]:
    messages = []
    if len(value) > 253:
        messages.append("must be no more than 253 characters")
    if not re.fullmatch(SUBDOMAIN, value):
        messages.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{SUBDOMAIN}')"
        )
    return messages


def dns1123_label(value: str) -> list[str]:
    messages = []
    if len(value) > 63:
        messages.append("must be no more than 63 characters")
    if not re.fullmatch(LABEL, value):
        messages.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'123-abc', regex used for validation is '{LABEL}')"
        )
    return messages


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and a name of ≤ 63."""
    prefix, slash, name = value.rpartition("/")
    messages = []
    if slash and not prefix:
        messages.append("prefix part must be non-empty")
    elif slash:
        messages += [f"prefix part {m}" for m in dns1123_subdomain(prefix)]
    if not name:
        return [*messages, "name part must be non-empty"]
    if len(name) > 63:
        messages.append("name part must be no more than 63 characters")
    if not re.fullmatch(QUALIFIED, name):
        messages.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{QUALIFIED}')"
        )
    return messages


def label_value(value: str) -> list[str]:
    messages = []
    if len(value) > 63:
        messages.append("must be no more than 63 characters")
    if not re.fullmatch(LABEL_VALUE, value):
        messages.append(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'MyValue',  or 'my_value',  or '12345', regex used for validation is "
            f"'{LABEL_VALUE}')"
        )
    return messages


def validate_labels(labels: Mapping[str, Any] | None, path: str) -> list[FieldError]:
    errors = []
    for key, value in (labels or {}).items():
        errors += [invalid(path, key, m) for m in qualified_name(key)]
        errors += [invalid(path, value, m) for m in label_value(str(value))]
    return errors


def validate_annotations(annotations: Mapping[str, Any] | None, path: str) -> list[FieldError]:
    errors = []
    size = 0
    for key, value in (annotations or {}).items():
        errors += [invalid(path, key, m) for m in qualified_name(key.lower())]
        size += len(key.encode()) + len(str(value).encode())
    if size > ANNOTATIONS_LIMIT:
        errors.append(too_long(path, ANNOTATIONS_LIMIT))
    return errors


def _name_errors(name: str, *, label_names: bool, prefix: bool = False) -> list[str]:
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-1] + "a"  # apimachinery's maskTrailingDash
    return dns1123_label(name) if label_names else dns1123_subdomain(name)


def validate_metadata(
    meta: Obj, *, namespaced: bool, label_names: bool = False
) -> list[FieldError]:
    """ValidateObjectMeta: name/generateName, namespace, labels, annotations, owners, finalizers."""
    errors: list[FieldError] = []
    name, generate = meta.get("name", ""), meta.get("generateName", "")
    if not name and not generate:
        errors.append(required("metadata.name", "name or generateName is required"))
    if generate:
        prefix_errors = _name_errors(generate, label_names=label_names, prefix=True)
        errors += [invalid("metadata.generateName", generate, m) for m in prefix_errors]
    if name:
        errors += [
            invalid("metadata.name", name, m) for m in _name_errors(name, label_names=label_names)
        ]
    if namespaced and not meta.get("namespace"):
        errors.append(required("metadata.namespace"))
    errors += validate_labels(meta.get("labels"), "metadata.labels")
    errors += validate_annotations(meta.get("annotations"), "metadata.annotations")
    controllers = 0
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        path = f"metadata.ownerReferences[{i}]"
        errors += [
            required(f"{path}.{k}") for k in ("apiVersion", "kind", "name", "uid") if not ref.get(k)
        ]
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        errors.append(
            invalid_at(
                "metadata.ownerReferences", "Only one reference can have Controller set to true"
            )
        )
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        errors += [
            invalid(f"metadata.finalizers[{i}]", finalizer, m) for m in qualified_name(finalizer)
        ]
    return errors


def validate_secret(secret: Obj, old: Obj | None = None) -> list[FieldError]:
    """A Secret's keys and base64 values, its 1 MiB limit and `immutable` (as a ConfigMap's)."""
    errors = validate_configmap({**secret, "binaryData": None}, old)
    for key, value in (secret.get("data") or {}).items():
        try:
            base64.b64decode(str(value), validate=True)
        except ValueError:
            errors.append(invalid(f"data[{key}]", "<value>", "illegal base64 data"))
    return errors


def validate_configmap(cm: Obj, old: Obj | None = None) -> list[FieldError]:
    errors: list[FieldError] = []
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    size = 0
    for field_name, values in (("data", data), ("binaryData", binary)):
        for key, value in values.items():
            if len(key) > 253 or not re.fullmatch(CONFIG_KEY, key):
                errors.append(
                    invalid(
                        f"{field_name}[{key}]",
                        key,
                        (
                            "a valid config key must consist of alphanumeric characters, '-', "
                            "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex "
                            f"used for validation is '{CONFIG_KEY}')"
                        ),
                    )
                )
            size += len(str(value).encode()) if field_name == "data" else len(str(value)) * 3 // 4
    errors += [
        invalid(f"data[{k}]", k, "duplicate of key present in binaryData")
        for k in data
        if k in binary
    ]
    if size > CONFIGMAP_LIMIT:
        errors.append(too_long("", CONFIGMAP_LIMIT))
    if old is not None and old.get("immutable"):
        if any(cm.get(k) != old.get(k) for k in ("data", "binaryData")):
            errors.append(forbidden("data", "field is immutable when `immutable` is set"))
        if not cm.get("immutable"):
            errors.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return errors


def _events_api_rules(event: Obj) -> list[FieldError]:
    """What events.k8s.io/v1 adds: eventTime, a valid type, no deprecated fields."""
    errors = [] if event.get("eventTime") else [required("eventTime")]
    if event.get("type") not in ("Normal", "Warning"):
        errors.append(invalid_at("type", f"has invalid value: {event.get('type', '')}"))
    deprecated = (
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("source", "deprecatedSource"),
    )
    errors += [invalid_at(new, "needs to be unset") for old, new in deprecated if event.get(old)]
    return errors


def _new_event_rules(event: Obj, controller_field: str, note_field: str) -> list[FieldError]:
    """An event with an eventTime names its reporter, action and reason."""
    errors: list[FieldError] = []
    reporter = event.get("reportingComponent") or ""
    if not reporter:
        errors.append(required(controller_field))
    errors += [invalid(controller_field, reporter, m) for m in qualified_name(reporter or "x")]
    for name in ("reportingInstance", "action", "reason"):
        value = event.get(name) or ""
        if not value:
            errors.append(required(name))
        elif len(value) > 128:
            errors.append(invalid(name, "", "can have at most 128 characters"))
    if len(event.get("message") or "") > 1024:
        errors.append(invalid(note_field, "", "can have at most 1024 characters"))
    return errors


def validate_event(event: Obj, *, events_api: bool) -> list[FieldError]:
    """ValidateEventCreate, for a core/v1 Event (`event` is always in core/v1 form);
    `events_api` when it came through events.k8s.io/v1, whose rules are stricter."""
    errors = _events_api_rules(event) if events_api else []
    namespace = event.get("metadata", {}).get("namespace", "")
    involved = event.get("involvedObject", {}).get("namespace", "")
    allowed = ("", "default") if not event.get("eventTime") else ("default", "kube-system")
    if (involved and involved != namespace and not event.get("eventTime")) or (
        not involved and namespace not in allowed
    ):
        errors.append(
            invalid("involvedObject.namespace", involved, "does not match event.namespace")
        )
    if event.get("eventTime"):
        fields = (
            ("reportingController", "note") if events_api else ("reportingComponent", "message")
        )
        errors += _new_event_rules(event, *fields)
    return errors


def validate_lease(lease: Obj) -> list[FieldError]:
    spec = lease.get("spec") or {}
    errors = []
    if spec.get("leaseDurationSeconds") is not None and spec["leaseDurationSeconds"] <= 0:
        errors.append(
            invalid(
                "spec.leaseDurationSeconds", spec["leaseDurationSeconds"], "must be greater than 0"
            )
        )
    if spec.get("leaseTransitions") is not None and spec["leaseTransitions"] < 0:
        errors.append(
            invalid(
                "spec.leaseTransitions",
                spec["leaseTransitions"],
                "must be greater than or equal to 0",
            )
        )
    return errors
