"""The analysis kinds' data, decided at submit (controller/shapes.py through chaining): left
out, it is the dataset the model's `train` job trained on; named, it must have signals the
model takes (length, sample rate, classes), else a 422 on the field naming both shapes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pydantic import JsonValue

from kubetask.controller.chaining import resolve_references
from kubetask.controller.errors import InvalidRequest
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.shapes import SignalShape, mismatch
from kubetask.jobs.params import DatagenParams, TrainParams
from kubetask.jobs.params.catalog import EvaluateParams, ExportParams, ModelOnData, RobustnessParams
from kubetask.jobs.params.explain import ExplainBatchParams, ExplainParams
from kubetask.models import JobRequest, JobState

TENANT = "default"
TRAIN_ID = "0abcdefgh1234567"
OLD_TRAIN_ID = "0abcdefgh0ld0000"  # a train result from before it recorded its data's shape
LONG_ID = "0abcdefgh7654321"  # datagen: datagen's defaults, 1024 samples at 12 kHz
SHORT_ID = "0abcdefgh5h0rt00"  # datagen: 256 samples at 2 kHz
FEW_ID = "0abcdefghfew0000"  # datagen: two classes only
ODD_ID = "0abcdefgh0dd0000"  # mat-import with a class the model does not know

CLASSES: list[JsonValue] = [
    "normal",
    "imbalance",
    "misalignment",
    "looseness",
    "bearing_outer",
    "bearing_inner",
]


def record(job_id: str, kind: str, result: dict[str, JsonValue]) -> JobRecord:
    return JobRecord(
        id=job_id,
        request=JobRequest(kind=kind),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        status=JobStatus(state=JobState.SUCCEEDED, result=result),
        tenant=TENANT,
    )


def data(job_id: str, length: int, rate: float, classes: list[JsonValue]) -> JobRecord:
    shape: dict[str, JsonValue] = {"length": length, "sample_rate": rate, "classes": classes}
    return record(job_id, "datagen", {"dataset": f"{job_id}/dataset.npz", **shape})


RECORDS = {
    r.id: r
    for r in (
        record(
            TRAIN_ID,
            "train",
            {
                "model": f"{TRAIN_ID}/model.pt",
                "dataset": f"{LONG_ID}/dataset.npz",
                "length": 1024,
                "sample_rate": 12000.0,
                "classes": CLASSES,
                "features": "spectrum",
            },
        ),
        record(OLD_TRAIN_ID, "train", {"model": f"{OLD_TRAIN_ID}/model.pt", "dataset": None}),
        data(LONG_ID, 1024, 12000.0, CLASSES),
        data(SHORT_ID, 256, 2000.0, CLASSES),
        data(FEW_ID, 1024, 12000.0, ["normal", "looseness"]),
        data(ODD_ID, 1024, 12000.0, ["normal", "cracked"]),
    )
}

ANALYSIS: list[type[ModelOnData]] = [
    EvaluateParams,
    ExplainParams,
    ExplainBatchParams,
    ExportParams,
    RobustnessParams,
]


def resolve(kind: type[ModelOnData], /, **fields: JsonValue) -> dict[str, JsonValue]:
    async def lookup(job_id: str) -> JobRecord | None:
        return RECORDS.get(job_id)

    params = kind.model_validate(fields).model_dump(mode="json")
    return asyncio.run(resolve_references(kind, params, tenant=TENANT, lookup=lookup))


def refused(kind: type[ModelOnData], /, **fields: JsonValue) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as info:
        resolve(kind, **fields)
    assert {e.type for e in info.value.errors} == {"signal_shape"}
    return {".".join(map(str, e.loc)): e.msg for e in info.value.errors}


@pytest.mark.parametrize("kind", ANALYSIS)
def test_left_out_the_dataset_is_the_one_the_model_was_trained_on(
    kind: type[ModelOnData],
) -> None:
    resolved = resolve(kind, model=f"job:{TRAIN_ID}")
    assert resolved["model"] == f"{TRAIN_ID}/model.pt"
    assert resolved["dataset"] == f"{LONG_ID}/dataset.npz"


def test_named_data_is_kept_and_generated_data_asked_for_is_generated() -> None:
    named = resolve(EvaluateParams, model=f"job:{TRAIN_ID}", dataset=f"job:{FEW_ID}")
    assert named["dataset"] == f"{FEW_ID}/dataset.npz"  # fewer classes: the model knows them
    held_out: dict[str, JsonValue] = {"length": 1024, "seed": 9}
    generated = resolve(EvaluateParams, model=f"job:{TRAIN_ID}", datagen=held_out)
    assert generated["dataset"] is None
    assert generated["datagen"]["seed"] == 9  # type: ignore[index,call-overload]


def test_a_model_whose_job_names_no_data_generates_as_before() -> None:
    resolved = resolve(EvaluateParams, model=f"job:{OLD_TRAIN_ID}")
    assert resolved["dataset"] is None
    resolved = resolve(EvaluateParams, model=f"{TRAIN_ID}/model.pt")  # a plain path: as named
    assert resolved["dataset"] == f"{LONG_ID}/dataset.npz"


@pytest.mark.parametrize("kind", ANALYSIS)
def test_data_the_model_cannot_take_is_422_naming_the_field_and_both_shapes(
    kind: type[ModelOnData],
) -> None:
    errors = refused(kind, model=f"job:{TRAIN_ID}", dataset=f"job:{SHORT_ID}")
    assert errors == {
        "params.dataset": "signals of length 256 at 2000 Hz; the model takes length 1024 at "
        "12000 Hz"
    }


def test_generated_data_and_plain_paths_of_known_jobs_are_judged_too() -> None:
    short: dict[str, JsonValue] = {"length": 256, "sample_rate": 2000.0}
    assert refused(EvaluateParams, model=f"job:{TRAIN_ID}", datagen=short) == {
        "params.datagen": "signals of length 256 at 2000 Hz; the model takes length 1024 at "
        "12000 Hz"
    }
    errors = refused(EvaluateParams, model=f"job:{TRAIN_ID}", dataset=f"{SHORT_ID}/dataset.npz")
    assert list(errors) == ["params.dataset"]
    errors = refused(ExportParams, model=f"job:{TRAIN_ID}", dataset=f"job:{ODD_ID}")
    assert errors["params.dataset"].startswith(
        "signals of classes the model does not know: ['cracked']"
    )


def test_unknown_shapes_are_left_to_the_task() -> None:
    resolve(EvaluateParams, model=f"job:{OLD_TRAIN_ID}", dataset=f"job:{SHORT_ID}")
    resolve(EvaluateParams, model=f"job:{TRAIN_ID}", dataset="uploads/default/mine.npz")


def test_a_spectrum_model_takes_the_lengths_of_as_many_bins() -> None:
    model = SignalShape(length=1024, sample_rate=None, classes=None, features="spectrum")
    assert mismatch(model, SignalShape(1025, 12000.0, None)) is None
    assert mismatch(model, SignalShape(1026, 12000.0, None)) is not None
    raw = SignalShape(length=1024, sample_rate=12000.0, classes=None)
    assert mismatch(raw, SignalShape(1025, 12000.0, None)) is not None


def test_train_and_the_analysis_kinds_generate_signals_shaped_as_datagen_does() -> None:
    shape = {"length", "sample_rate", "classes", "rotation_hz", "noise"}
    datagen = DatagenParams().model_dump(include=shape)
    assert TrainParams().datagen.model_dump(include=shape) == datagen
    for kind in ANALYSIS:
        assert kind(model="m/model.pt").datagen.model_dump(include=shape) == datagen
