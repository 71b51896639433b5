"""Chaining jobs, and whose files params may name: every path field of a kind's params
(kubetask/params/refs.py) is checked at submit time against the caller's tenant.

A `job:<id>` value (in an `output_ref` field) is resolved to the path the named job's result
lists (relative to the artifact store). A reference to a job that does not exist, is another
tenant's, has not succeeded, is of another kind, or whose result lacks the output is refused
here, as a 422 on that field, instead of failing the task minutes later.

A plain path must lie in an area the tenant may read (kubetask/params/paths.py): `<job id>/...`
of one of its own jobs, or `uploads/<its tenant>/...`. A path naming another tenant's job is
refused exactly as a `job:<id>` of that job is, as a job that does not exist, so ids cannot be
probed; a path is never looked up on disk here, so no answer tells whether a file exists.
An `upload:<path>` value (in any path field) is the tenant's own upload: resolved to
`uploads/<tenant>/<path>`, and refused when the artifact store has nothing there (a file, a
folder's files, or for a glob the files under its leading folder), asked through the
`uploads` check given (the tenant's own area: the answer tells nothing about others).
Finding the values and judging them are pure; only `resolve_references` reads the stores
(through the `lookup` and `uploads` it is given).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from pydantic import BaseModel, JsonValue

from kubetask.controller.errors import FieldError, InvalidRequest
from kubetask.controller.ids import is_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.shapes import fill_and_check
from kubetask.models import JobState
from kubetask.params.paths import (
    UPLOADS,
    OutsideTheStore,
    area,
    has_wildcards,
    store_parts,
    uploads_area,
)
from kubetask.params.refs import PathValue, path_values
from kubetask.storage.base import store_key

JobLookup = Callable[[str], Awaitable[JobRecord | None]]
# Whether the artifact store has files at a store path (`glob`: the value is a glob pattern)
UploadCheck = Callable[[str, bool], Awaitable[bool]]
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Reference:
    """One `job:<id>` value in the params: where it is and what it must point at."""

    loc: Loc  # the path inside params, e.g. ("model",) or ("datasets", 1)
    job_id: str
    output: str
    kinds: tuple[str, ...]


def find_references(model: type[BaseModel], params: Mapping[str, JsonValue]) -> list[Reference]:
    """Every `job:<id>` in validated `params` of `model`: in `output_ref` fields holding one
    value or a list of them, and in nested params models."""
    found: list[Reference] = []
    for value in path_values(model, params):
        job_id = value.job_ref
        if job_id is not None and value.ref is not None:
            output, kinds = value.ref
            found.append(Reference(loc=value.loc, job_id=job_id, output=output, kinds=kinds))
    return found


def find_paths(model: type[BaseModel], params: Mapping[str, JsonValue]) -> list[PathValue]:
    """Every plain artifact path (not a `job:<id>` nor an `upload:<path>`) in validated
    `params` of `model`."""
    return [
        value
        for value in path_values(model, params)
        if value.job_ref is None and value.upload_ref is None
    ]


def find_uploads(model: type[BaseModel], params: Mapping[str, JsonValue]) -> list[PathValue]:
    """Every `upload:<path>` value in validated `params` of `model`."""
    return [value for value in path_values(model, params) if value.upload_ref is not None]


def upload_path(value: PathValue, *, tenant: str) -> str | FieldError:
    """The store path `upload:<path>` names (`uploads/<tenant>/<path>`), or why it cannot be
    used (on `params.<loc>`). Syntax only: nothing is looked up."""
    try:
        parts = store_parts(value.upload_ref or "")
    except OutsideTheStore as exc:
        return FieldError(("params", *value.loc), f"upload:<path>: {exc}", "artifact_path")
    return "/".join((*uploads_area(tenant), *parts))


def no_upload(value: PathValue, *, tenant: str) -> FieldError:
    return FieldError(
        ("params", *value.loc),
        f"no upload {value.upload_ref!r} in your tenant's uploads ('uploads/{tenant}/'): "
        "upload it first (PUT /v1/uploads/<path>)",
        "upload_not_found",
    )


def not_found(loc: Loc, job_id: str) -> FieldError:
    """The one answer for a job that does not exist and for another tenant's."""
    return FieldError(loc, f"no job {job_id!r} (it may have expired)", "job_ref_not_found")


def path_owner(path: PathValue, *, tenant: str) -> str | FieldError | None:
    """The job whose record decides whether `tenant` may read the plain path `path` (it must
    be the tenant's), None when the path is in the tenant's own uploads, or why the path is
    refused (on `params.<loc>`). Syntax only: nothing is looked up."""
    loc = ("params", *path.loc)
    try:
        owner = area(store_parts(path.value))
    except OutsideTheStore as exc:
        return FieldError(loc, str(exc), "artifact_path")
    if path.glob and has_wildcards(owner):
        return FieldError(
            loc,
            "the leading '<job id>/' or 'uploads/<tenant>/' must be named without wildcards",
            "artifact_path",
        )
    if owner[0] == UPLOADS:
        if owner == uploads_area(tenant):
            return None
        return FieldError(
            loc, f"outside your tenant's uploads area 'uploads/{tenant}/'", "artifact_path"
        )
    if not is_job_id(owner[0]):
        return FieldError(
            loc,
            "must start with the id of one of your tenant's jobs ('<job id>/<file>') or "
            f"with your tenant's uploads area 'uploads/{tenant}/'",
            "artifact_path",
        )
    return owner[0]


def _kinds_text(kinds: tuple[str, ...]) -> str:
    return " or ".join(kinds)


def judge(ref: Reference, record: JobRecord | None) -> str | FieldError:
    """The artifact path `ref` resolves to, or why it cannot be used (on `params.<loc>`)."""
    loc = ("params", *ref.loc)
    if record is None:
        return not_found(loc, ref.job_id)
    kind = record.request.kind
    if kind not in ref.kinds:
        return FieldError(
            loc,
            f"job {ref.job_id} is a {kind} job; expected a {_kinds_text(ref.kinds)} job",
            "job_ref_kind",
        )
    state = record.status.state
    if state is not JobState.SUCCEEDED:
        return FieldError(
            loc,
            f"job {ref.job_id} is {state}, not succeeded: only a succeeded job's output "
            "can be used",
            "job_ref_state",
        )
    path = (record.status.result or {}).get(ref.output)
    if not isinstance(path, str) or not _inside_the_store(path):
        return FieldError(
            loc, f"job {ref.job_id}'s result has no {ref.output!r} output", "job_ref_output"
        )
    return path


def _inside_the_store(path: str) -> bool:
    try:
        store_parts(path)
    except OutsideTheStore:
        return False
    return True


def substitute(
    params: Mapping[str, JsonValue], resolved: Mapping[Loc, str]
) -> dict[str, JsonValue]:
    """A copy of `params` with the value at each location replaced."""
    out: dict[str, JsonValue] = dict(params)
    for loc, path in resolved.items():
        head, *rest = loc
        out[str(head)] = _replaced(out.get(str(head)), tuple(rest), path)
    return out


def _replaced(value: JsonValue, loc: Loc, new: str) -> JsonValue:
    """A copy of `value` with `new` at `loc` inside it."""
    if not loc:
        return new
    head, *rest = loc
    if isinstance(value, dict) and isinstance(head, str):
        copied = dict(value)
        copied[head] = _replaced(value.get(head), tuple(rest), new)
        return copied
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value):
        items = list(value)
        items[head] = _replaced(value[head], tuple(rest), new)
        return items
    raise ValueError(f"no {head!r} in {value!r}")


def _judge_path(
    path: PathValue, owner: str | FieldError | None, records: Mapping[str, JobRecord | None]
) -> FieldError | JobRecord | None:
    """Why the plain `path` (of `owner`, see `path_owner`) is refused, or the job it is an
    output of (listed in its result), or None."""
    if isinstance(owner, FieldError):
        return owner
    record = None if owner is None else records[owner]
    if owner is not None and record is None:
        return not_found(("params", *path.loc), owner)
    output_of = record if record and path.value in (record.status.result or {}).values() else None
    if path.outputs_only and (output_of is None or not _is_the_output(output_of, path)):
        return not_an_output(path)
    return output_of


def _canonical(path: PathValue) -> PathValue:
    """The path spelled as the store names it (`a//b/./c` is `a/b/c`): compared with the
    paths a result lists, and given to the task so (a model's own data is found held out).
    A glob, or a path outside the store (refused by `path_owner`), stays as it is."""
    if path.glob:
        return path
    try:
        return replace(path, value=store_key(path.value))
    except OutsideTheStore:
        return path


def _is_the_output(record: JobRecord, path: PathValue) -> bool:
    """`path` is what the field takes of `record`: the output the field names (a model's
    file, not the metadata or the losses the same job lists), of a job of its kinds."""
    if path.ref is None or not _of_kinds(record, path):
        return False
    return (record.status.result or {}).get(path.ref[0]) == path.value


def _of_kinds(record: JobRecord, path: PathValue) -> bool:
    return path.ref is not None and record.request.kind in path.ref[1]


def not_an_output(path: PathValue) -> FieldError:
    """A field that is unpickled takes only what a job of its kinds wrote."""
    kinds = _kinds_text(path.ref[1]) if path.ref else "the right"
    output = f"its {path.ref[0]!r}" if path.ref else "its output"
    return FieldError(
        ("params", *path.loc),
        f"only a {kinds} job's output ('job:<id>', or the path of {output} its result "
        "lists): this file is unpickled, which runs code, so no upload or other file is taken",
        "job_output_only",
    )


async def _resolve_uploads(
    model: type[BaseModel],
    params: Mapping[str, JsonValue],
    *,
    tenant: str,
    uploads: UploadCheck | None,
) -> tuple[dict[Loc, str], list[FieldError]]:
    """The store path of each `upload:<path>` (checked to exist when `uploads` is given),
    and why the others cannot be used."""
    resolved: dict[Loc, str] = {}
    errors: list[FieldError] = []
    for value in find_uploads(model, params):
        path = upload_path(value, tenant=tenant)
        if value.outputs_only:
            errors.append(not_an_output(value))
        elif isinstance(path, FieldError):
            errors.append(path)
        elif uploads is None or await uploads(path, value.glob):
            resolved[value.loc] = path
        else:
            errors.append(no_upload(value, tenant=tenant))
    return resolved, errors


async def resolve_references(
    model: type[BaseModel],
    params: Mapping[str, JsonValue],
    *,
    tenant: str,
    lookup: JobLookup,
    uploads: UploadCheck | None = None,
) -> dict[str, JsonValue]:
    """`params` with each `job:<id>` replaced by that job's output path and each
    `upload:<path>` by its store path, every plain path checked to be `tenant`'s to read,
    the fields left out that take a model's own data filled in and signal shapes checked
    (controller/shapes.py); raises `InvalidRequest` naming every value that cannot be used.
    `lookup` answers None for a job the tenant may not see; `uploads` says whether an
    upload exists (None: not checked)."""
    references = find_references(model, params)
    owners = [(path, path_owner(path, tenant=tenant)) for path in find_paths(model, params)]
    wanted = [ref.job_id for ref in references]
    wanted += [owner for _, owner in owners if isinstance(owner, str)]
    records: dict[str, JobRecord | None] = {}
    for job_id in wanted:
        if job_id not in records:
            records[job_id] = await lookup(job_id) if is_job_id(job_id) else None
    resolved, errors = await _resolve_uploads(model, params, tenant=tenant, uploads=uploads)
    sources: dict[Loc, JobRecord] = {}  # the job each path value is an output of
    for ref in references:
        referenced = records[ref.job_id]
        outcome = judge(ref, referenced)
        if isinstance(outcome, FieldError):
            errors.append(outcome)
        else:
            resolved[ref.loc] = outcome
            if referenced is not None:
                sources[ref.loc] = referenced
    for given, owner in owners:
        path = _canonical(given)  # `id//file`, `id/./file`: as `id/file`, for the checks too
        if not isinstance(owner, FieldError):
            resolved.setdefault(path.loc, path.value)
        judged = _judge_path(path, owner, records)
        if isinstance(judged, FieldError):
            errors.append(judged)
        elif judged is not None:
            sources[path.loc] = judged
    if errors:
        raise InvalidRequest(errors)
    filled, errors = fill_and_check(model, substitute(params, resolved), sources)
    errors += await _filled_gone(params, filled, records, lookup)
    if errors:
        raise InvalidRequest(errors)
    return filled


async def _filled_gone(
    params: Mapping[str, JsonValue],
    filled: Mapping[str, JsonValue],
    records: dict[str, JobRecord | None],
    lookup: JobLookup,
) -> list[FieldError]:
    """Why each path filled in (a field left out, from its model's job's result: what it was
    trained on) cannot be used: the job that wrote it is gone (purged, expired)."""
    errors = []
    for name, value in filled.items():
        if params.get(name) is None and isinstance(value, str):
            gone = await _gone(name, value, records, lookup)
            errors += [gone] if gone is not None else []
    return errors


async def _gone(
    name: str, value: str, records: dict[str, JobRecord | None], lookup: JobLookup
) -> FieldError | None:
    try:
        owner = store_parts(value)[0]
    except OutsideTheStore:
        return None
    if not is_job_id(owner):
        return None
    if owner not in records:
        records[owner] = await lookup(owner)
    if records[owner] is not None:
        return None
    return FieldError(
        ("params", name),
        f"left out, it would be {value!r}, what the model was trained on, but job {owner!r} "
        f"that wrote it no longer exists (purged or expired): pass `{name}`",
        "job_ref_not_found",
    )
