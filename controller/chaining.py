"""Chaining jobs: params that name another job's output as `job:<id>` are resolved at
submit time to the path that job's result lists (relative to the artifact store).

A kind declares such a field with `jobs.params.refs.output_ref(output=..., kinds=...)`. A
reference to a job that does not exist, has not succeeded, is of another kind, or whose
result lacks the output is refused here, as a 422 on that field, instead of failing the task
minutes later. Finding the references and judging a referenced record are pure; only
`resolve_references` reads the store (through the `lookup` it is given).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, JsonValue

from controller.errors import FieldError, InvalidRequest
from controller.ids import is_job_id
from controller.records import JobRecord
from jobs.params.refs import ref_target, referenced_job
from kubetask.models import JobState

JobLookup = Callable[[str], Awaitable[JobRecord | None]]
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
    for name, field in model.model_fields.items():
        value = params.get(name)
        target = ref_target(field)
        if target is not None:
            output, kinds = target
            items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            for position, item in items:
                job_id = referenced_job(item)
                if job_id is not None:
                    loc: Loc = (name,) if position is None else (name, position)
                    found.append(Reference(loc=loc, job_id=job_id, output=output, kinds=kinds))
            continue
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel) and isinstance(value, dict):
            for ref in find_references(nested, value):
                found.append(
                    Reference(
                        loc=(name, *ref.loc), job_id=ref.job_id, output=ref.output, kinds=ref.kinds
                    )
                )
    return found


def _kinds_text(kinds: tuple[str, ...]) -> str:
    return " or ".join(kinds)


def judge(ref: Reference, record: JobRecord | None) -> str | FieldError:
    """The artifact path `ref` resolves to, or why it cannot be used (on `params.<loc>`)."""
    loc = ("params", *ref.loc)
    if record is None:
        return FieldError(loc, f"no job {ref.job_id!r} (it may have expired)", "job_ref_not_found")
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
    if not isinstance(path, str) or not path:
        return FieldError(
            loc, f"job {ref.job_id}'s result has no {ref.output!r} output", "job_ref_output"
        )
    return path


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


async def resolve_references(
    model: type[BaseModel], params: Mapping[str, JsonValue], *, lookup: JobLookup
) -> dict[str, JsonValue]:
    """`params` with each `job:<id>` replaced by that job's output path; raises
    `InvalidRequest` naming every reference that cannot be used."""
    references = find_references(model, params)
    if not references:
        return dict(params)
    records: dict[str, JobRecord | None] = {}
    for ref in references:
        if ref.job_id not in records:
            records[ref.job_id] = await lookup(ref.job_id) if is_job_id(ref.job_id) else None
    resolved: dict[Loc, str] = {}
    errors: list[FieldError] = []
    for ref in references:
        outcome = judge(ref, records[ref.job_id])
        if isinstance(outcome, FieldError):
            errors.append(outcome)
        else:
            resolved[ref.loc] = outcome
    if errors:
        raise InvalidRequest(errors)
    return substitute(params, resolved)
