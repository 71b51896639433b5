"""Params that name another job's output: an artifact path, or `job:<id>`.

A kind that consumes a model or a dataset declares the field with `output_ref(...)`. The
service resolves `job:<id>` at submit time to the path the named job's result lists under
`output` (and refuses, with a 422 on that field, a job that did not succeed or is of another
kind), so the task itself only ever sees artifact paths.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic.fields import FieldInfo

JOB_REF_PREFIX = "job:"
REF_SCHEMA_KEY = "x-kubetask-ref"


def output_ref(*, output: str, kinds: tuple[str, ...], description: str, default: Any = ...) -> Any:
    """A field holding an artifact path or `job:<id>` of a succeeded job of one of `kinds`,
    resolved to that job's `result[output]`."""
    return Field(
        default,
        max_length=1000,
        description=f"{description} An artifact path, or 'job:<id>' of a succeeded "
        f"{' or '.join(kinds)} job (its '{output}').",
        json_schema_extra={REF_SCHEMA_KEY: {"output": output, "kinds": list(kinds)}},
    )


def ref_target(field: FieldInfo) -> tuple[str, tuple[str, ...]] | None:
    """(output, kinds) when the field is an `output_ref`, else None."""
    extra = field.json_schema_extra
    if not isinstance(extra, dict):
        return None
    ref = extra.get(REF_SCHEMA_KEY)
    if not isinstance(ref, dict):
        return None
    output, kinds = ref.get("output"), ref.get("kinds")
    if not isinstance(output, str) or not isinstance(kinds, list):
        return None
    return output, tuple(str(k) for k in kinds)


def referenced_job(value: object) -> str | None:
    """The job id in a `job:<id>` value, else None."""
    if isinstance(value, str) and value.startswith(JOB_REF_PREFIX):
        return value.removeprefix(JOB_REF_PREFIX)
    return None
