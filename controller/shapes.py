"""The data a model job runs on, decided at submit: a field marked `default_from` (e.g. the
analysis kinds' `dataset`, filled from their `model`) takes, when left out, what the job
named in that other field used itself (a `train` job's result names the dataset it trained
on); and a dataset whose signals the model cannot take is refused, naming both shapes.

The shape of signals (length, sample rate, classes) is read from the results that record it
(`datagen`, `mat-import`, `train`) or from `datagen` params; what is not known is not
judged (the task checks the length again when it runs). Pure: the job records come in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, JsonValue
from pydantic.fields import FieldInfo

from kubetask.controller.errors import FieldError
from kubetask.controller.records import JobRecord
from kubetask.params.refs import filled_from, ref_target, referenced_job

Loc = tuple[str | int, ...]
GENERATED = "datagen"  # the field holding the params of signals generated in the task


@dataclass(frozen=True)
class SignalShape:
    """What a model takes, or what a dataset holds."""

    length: int
    sample_rate: float | None
    classes: tuple[str, ...] | None
    features: str = "raw"  # a model's input transform: 'spectrum' takes lengths of equal bins

    def takes_length(self, length: int) -> bool:
        if self.features == "spectrum":
            return length // 2 == self.length // 2  # rfft: as many bins
        return length == self.length

    def described(self) -> str:
        rate = f" at {self.sample_rate:g} Hz" if self.sample_rate is not None else ""
        return f"length {self.length}{rate}"


def shape_of(values: Mapping[str, JsonValue] | None) -> SignalShape | None:
    """The shape a job's result (or `datagen` params) records, if it records one."""
    if not values:
        return None
    length, rate, classes = values.get("length"), values.get("sample_rate"), values.get("classes")
    if not isinstance(length, int) or isinstance(length, bool):
        return None
    features = values.get("features")
    return SignalShape(
        length=length,
        sample_rate=float(rate) if isinstance(rate, int | float) else None,
        classes=tuple(str(c) for c in classes) if isinstance(classes, list) else None,
        features=features if isinstance(features, str) else "raw",
    )


def mismatch(model: SignalShape, data: SignalShape) -> str | None:
    """Why a model of shape `model` cannot take signals of shape `data`, or None."""
    rates = (model.sample_rate, data.sample_rate)
    if not model.takes_length(data.length) or (
        None not in rates and not math.isclose(rates[0] or 0.0, rates[1] or 0.0)
    ):
        return f"signals of {data.described()}; the model takes {model.described()}"
    if model.classes is not None and data.classes is not None:
        unknown = sorted(set(data.classes) - set(model.classes))
        if unknown:
            return (
                f"signals of classes the model does not know: {unknown}; the model's classes "
                f"are {list(model.classes)}"
            )
    return None


def _result(record: JobRecord | None) -> Mapping[str, JsonValue] | None:
    return record.status.result if record is not None else None


def fill_and_check(
    model: type[BaseModel],
    params: Mapping[str, JsonValue],
    sources: Mapping[Loc, JobRecord],
) -> tuple[dict[str, JsonValue], list[FieldError]]:
    """`params` (resolved, defaults filled in) with each `default_from` field left out filled
    from the job its source field names, and the shape errors found. Left out: None, with the
    signals generated instead (`datagen`) at their default too. `sources`: the job each path
    field's value came from (the referenced job, or the job a plain path is an output of)."""
    out: dict[str, JsonValue] = dict(params)
    errors: list[FieldError] = []
    for name, field in model.model_fields.items():
        source_name = filled_from(field)
        if source_name is None:
            continue
        source = sources.get((source_name,))
        source_result = _result(source)
        output = _output_of(field)
        if out.get(name) is None and _at_default(model, out, GENERATED):
            value = (source_result or {}).get(output) if output else None
            if isinstance(value, str) and referenced_job(value) is None:
                out[name] = value
                continue  # the model's own data
        model_shape = shape_of(source_result) if source is not None else None
        if model_shape is None:
            continue
        data_loc: Loc
        if out.get(name) is None:
            generated = out.get(GENERATED)
            data_shape = shape_of(generated) if isinstance(generated, dict) else None
            data_loc = ("params", GENERATED)
        else:
            data_shape = shape_of(_result(sources.get((name,))))
            data_loc = ("params", name)
        problem = mismatch(model_shape, data_shape) if data_shape is not None else None
        if problem is not None:
            errors.append(FieldError(data_loc, problem, "signal_shape"))
    return out, errors


def _at_default(model: type[BaseModel], params: Mapping[str, JsonValue], name: str) -> bool:
    """Whether `params[name]` is that field's default (or the model has no such field)."""
    field = model.model_fields.get(name)
    if field is None:
        return True
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return params.get(name) == default.model_dump(mode="json")
    return bool(params.get(name) == default)


def _output_of(field: FieldInfo) -> str | None:
    target = ref_target(field)
    return target[0] if target is not None else None
