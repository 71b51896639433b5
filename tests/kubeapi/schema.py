"""Schema validation with the official OpenAPI-derived JSON schemas bundled with
`kubernetes-validate`, in strict mode (unknown fields rejected).

It does what `kubernetes_validate.validate(obj, version, strict=True)` does (same schema files,
same version resolution, same draft 2020-12 validator) but builds each validator once, and it
reports every error as a field error rather than the first as an exception."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema  # no stubs installed
import referencing
from kubernetes_validate import utils as kv
from packaging.version import Version

from tests.kubeapi.errors import ErrorType, FieldError, invalid, not_supported, required

Obj = dict[str, Any]


def resolve_version(desired: str) -> str:
    """The newest bundled schema version not newer than `desired` (e.g. "1.37.0")."""
    wanted = Version(desired.removeprefix("v"))
    bundled = [v for v in kv.all_versions() if Version(v).release[:2] <= wanted.release[:2]]
    if not bundled:
        raise ValueError(f"kubernetes-validate bundles no schemas for Kubernetes {desired}")
    return str(bundled[-1])


def newest_version() -> str:
    return str(kv.latest_version())


@functools.cache
def _registry(version: str) -> referencing.Registry[Any]:
    definitions = kv.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version
    )
    resource = referencing.Resource.from_contents(definitions)
    return resource @ referencing.Registry()


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    group_version = api_version.split("/")
    group = group_version[0].split(".")[0] if len(group_version) == 2 else ""
    suffix = f"{group}-{group_version[-1]}" if group else group_version[-1]
    schema = kv.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/{kind.lower()}-{suffix}.json", version
    )
    return jsonschema.Draft202012Validator(schema, registry=_registry(version))


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _to_field_errors(error: jsonschema.ValidationError) -> list[FieldError]:
    path = _path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(schema.get("properties", {}))
        return [
            FieldError(ErrorType.INVALID, _join(path, key), f'unknown field "{_join(path, key)}"')
            for key in error.instance
            if key not in known
        ]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        return [required(_join(path, k)) for k in missing]
    if error.validator == "enum":
        values = [v for v in error.validator_value if v is not None]
        return [not_supported(path, error.instance, [str(v) for v in values])]
    if error.validator in ("type", "oneOf", "anyOf"):
        return [invalid(path, error.instance, f"must be of type {_type_name(schema)}")]
    return [invalid(path, error.instance, error.message)]


def _type_name(schema: Obj) -> str:
    kinds = schema.get("type")
    if isinstance(kinds, list):
        kinds = next((k for k in kinds if k != "null"), "object")
    if kinds is None and "oneOf" in schema:
        return "string or integer"
    return str(kinds or "object")


class SchemaValidator:
    """Validate objects against the strict schemas of one Kubernetes version."""

    def __init__(self, version: str) -> None:
        self.version = resolve_version(version)

    def errors(self, obj: Obj) -> list[FieldError]:
        """Every schema violation in `obj` (which must carry `kind` and `apiVersion`)."""
        try:
            validator = _validator(self.version, obj["kind"], obj["apiVersion"])
        except FileNotFoundError:
            return [invalid("kind", obj.get("kind"), "no schema for this kind")]
        found: list[FieldError] = []
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
            found.extend(_to_field_errors(error))
        return found
