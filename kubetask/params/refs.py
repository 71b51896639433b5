"""Params that name files in the artifact store: `artifact_path(...)` fields (a path, or a
glob) and `output_ref(...)` fields (a path, or `job:<id>` of another job's output). Both
take `upload:<path>` too: the caller's own upload (`PUT /v1/uploads/<path>`), resolved at
submit to `uploads/<tenant>/<path>` (and refused when nothing is there).

The service resolves `job:<id>` at submit time to the path the named job's result lists under
`output` (and refuses, with a 422 on that field, a job that did not succeed or is of another
kind), so the task itself only ever sees artifact paths. Every such field, whatever the kind,
holds only paths inside the store (kubetask/params/paths.py): the `Params` base checks the syntax
of each, the service checks whose area each names at submit, the task runtime checks where
each leads before the kind runs. `path_values` finds them all in a kind's params.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

JOB_REF_PREFIX = "job:"
UPLOAD_REF_PREFIX = "upload:"
REF_SCHEMA_KEY = "x-kubetask-ref"
PATH_SCHEMA_KEY = "x-kubetask-artifact-path"

Loc = tuple[str | int, ...]


def artifact_path(*, description: str, default: Any = ..., glob: bool = False) -> Any:
    """A field holding a path (or with `glob`, a glob pattern) relative to the artifact
    store, confined to what the caller's tenant may read."""
    return Field(
        default,
        max_length=1000,
        description=description,
        json_schema_extra={PATH_SCHEMA_KEY: {"glob": glob}},
    )


def output_ref(
    *,
    output: str,
    kinds: tuple[str, ...],
    description: str,
    default: Any = ...,
    default_from: str | None = None,
    outputs_only: bool = False,
) -> Any:
    """A field holding an artifact path or `job:<id>` of a succeeded job of one of `kinds`,
    resolved to that job's `result[output]`. `default_from`: the name of a sibling
    `output_ref` field; when this field is left out and that one is a `job:<id>`, the service
    fills this one with that job's `result[output]` (what that job itself used).
    `outputs_only`: the file is unpickled (which runs code), so only what such a job wrote
    is taken: `job:<id>`, or the very path its result lists; never an upload."""
    ref: dict[str, Any] = {"output": output, "kinds": list(kinds)}
    if default_from is not None:
        ref["default_from"] = default_from
    if outputs_only:
        ref["outputs_only"] = True
    kinds_text = " or ".join(kinds)
    takes = (
        f"'job:<id>' of a succeeded {kinds_text} job (its '{output}'), or the path its result "
        "lists; no upload (the file is unpickled, which runs code)."
        if outputs_only
        else "An artifact path ('<job id>/<file>' of your tenant's job, or 'uploads/<tenant>/"
        f"...', or 'upload:<path>' of your own upload), or 'job:<id>' of a succeeded "
        f"{kinds_text} job (its '{output}')."
    )
    return Field(
        default,
        max_length=1000,
        description=f"{description} {takes}",
        json_schema_extra={REF_SCHEMA_KEY: ref, PATH_SCHEMA_KEY: {"glob": False}},
    )


def _extra(field: FieldInfo, key: str) -> dict[str, Any] | None:
    extra = field.json_schema_extra
    value = extra.get(key) if isinstance(extra, dict) else None
    return value if isinstance(value, dict) else None


def ref_target(field: FieldInfo) -> tuple[str, tuple[str, ...]] | None:
    """(output, kinds) when the field is an `output_ref`, else None."""
    ref = _extra(field, REF_SCHEMA_KEY)
    if ref is None:
        return None
    output, kinds = ref.get("output"), ref.get("kinds")
    if not isinstance(output, str) or not isinstance(kinds, list):
        return None
    return output, tuple(str(k) for k in kinds)


def outputs_only(field: FieldInfo) -> bool:
    """Whether an `output_ref` takes only what a job of its kinds wrote (see `output_ref`)."""
    return bool((_extra(field, REF_SCHEMA_KEY) or {}).get("outputs_only"))


def filled_from(field: FieldInfo) -> str | None:
    """The sibling field an `output_ref` is filled from when left out (`default_from`)."""
    value = (_extra(field, REF_SCHEMA_KEY) or {}).get("default_from")
    return value if isinstance(value, str) else None


def is_path_field(field: FieldInfo) -> bool:
    """Whether the field names files in the artifact store (`artifact_path`, `output_ref`)."""
    return _extra(field, PATH_SCHEMA_KEY) is not None


def is_glob_field(field: FieldInfo) -> bool:
    return bool((_extra(field, PATH_SCHEMA_KEY) or {}).get("glob"))


def referenced_job(value: object) -> str | None:
    """The job id in a `job:<id>` value, else None."""
    if isinstance(value, str) and value.startswith(JOB_REF_PREFIX):
        return value.removeprefix(JOB_REF_PREFIX)
    return None


def referenced_upload(value: object) -> str | None:
    """The upload path in an `upload:<path>` value, else None."""
    if isinstance(value, str) and value.startswith(UPLOAD_REF_PREFIX):
        return value.removeprefix(UPLOAD_REF_PREFIX)
    return None


@dataclass(frozen=True)
class PathValue:
    """One value of a path field in params: where it is, and what the field allows."""

    loc: Loc  # inside params, e.g. ("model",), ("train", "dataset") or ("models", 1)
    value: str
    ref: tuple[str, tuple[str, ...]] | None  # (output, kinds) of an output_ref field
    glob: bool
    outputs_only: bool = False  # only what a job of the ref's kinds wrote (`output_ref`)

    @property
    def job_ref(self) -> str | None:
        """The job id when the value is `job:<id>` in a field that takes one."""
        return referenced_job(self.value) if self.ref is not None else None

    @property
    def upload_ref(self) -> str | None:
        """The path inside the caller's uploads when the value is `upload:<path>`."""
        return referenced_upload(self.value)


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The params model a field holds (`Model` or `Model | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(models) == 1:
            return nested_model(models[0])
    return None


@dataclass(frozen=True)
class _Walked:
    """A field `path_values` looks into: a path field, or a params model that may hold some."""

    name: str
    nested: type[BaseModel] | None  # None: a path field
    ref: tuple[str, tuple[str, ...]] | None = None
    glob: bool = False
    outputs_only: bool = False


@functools.cache
def _walked(model: type[BaseModel]) -> tuple[_Walked, ...]:
    """The fields of `model` that `path_values` looks into, worked out once per model (most
    kinds' params have none: a submission walks nothing)."""
    walked: list[_Walked] = []
    for name, field in model.model_fields.items():
        if is_path_field(field):
            walked.append(
                _Walked(name, None, ref_target(field), is_glob_field(field), outputs_only(field))
            )
        elif (nested := nested_model(field.annotation)) is not None:
            walked.append(_Walked(name, nested))
    return tuple(walked)


def path_values(model: type[BaseModel], params: Mapping[str, Any]) -> list[PathValue]:
    """Every value of a path field in `params` of `model` (its JSON form): fields holding one
    value or a list of them, in nested params models too."""
    found: list[PathValue] = []
    for field in _walked(model):
        value = params.get(field.name)
        if field.nested is None:
            items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            for position, item in items:
                if isinstance(item, str):
                    loc: Loc = (field.name,) if position is None else (field.name, position)
                    found.append(PathValue(loc, item, field.ref, field.glob, field.outputs_only))
        elif isinstance(value, Mapping):
            for inner in path_values(field.nested, value):
                found.append(
                    PathValue(
                        (field.name, *inner.loc),
                        inner.value,
                        inner.ref,
                        inner.glob,
                        inner.outputs_only,
                    )
                )
    return found


def path_fields(model: type[BaseModel]) -> list[Loc]:
    """Where a kind's params name files: each path field's location, nested ones too."""
    found: list[Loc] = []
    for name, field in model.model_fields.items():
        nested = nested_model(field.annotation)
        if is_path_field(field):
            found.append((name,))
        elif nested is not None:
            found += [(name, *loc) for loc in path_fields(nested)]
    return found


def ref_fields(model: type[BaseModel]) -> list[tuple[Loc, str, tuple[str, ...]]]:
    """Every `output_ref` field of a kind's params, nested ones too: (location, output,
    producing kinds)."""
    found: list[tuple[Loc, str, tuple[str, ...]]] = []
    for name, field in model.model_fields.items():
        target = ref_target(field)
        nested = nested_model(field.annotation)
        if target is not None:
            found.append(((name,), *target))
        elif nested is not None:
            found += [((name, *loc), output, kinds) for loc, output, kinds in ref_fields(nested)]
    return found
