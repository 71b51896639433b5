"""Chaining: `job:<id>` params resolved to the named job's output, or refused on the field."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pydantic import Field, JsonValue

from controller.chaining import find_references, resolve_references
from controller.errors import InvalidRequest
from controller.records import JobRecord, JobStatus
from jobs.params import Params
from jobs.params.catalog import EvaluateParams
from jobs.params.refs import output_ref
from kubetask.models import JobRequest, JobState

TRAIN_ID = "0abcdefgh1234567"
DATAGEN_ID = "0abcdefgh7654321"
RUNNING_ID = "0abcdefghrunning"
FAILED_ID = "0abcdefghfailed0"
NO_OUTPUT_ID = "0abcdefghnooutpt"


def record(
    job_id: str, kind: str, state: JobState, result: dict[str, JsonValue] | None = None
) -> JobRecord:
    return JobRecord(
        id=job_id,
        request=JobRequest(kind=kind),
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        status=JobStatus(state=state, result=result),
    )


RECORDS = {
    r.id: r
    for r in (
        record(TRAIN_ID, "train", JobState.SUCCEEDED, {"model": f"{TRAIN_ID}/model.pt"}),
        record(DATAGEN_ID, "datagen", JobState.SUCCEEDED, {"dataset": f"{DATAGEN_ID}/d.npz"}),
        record(RUNNING_ID, "train", JobState.RUNNING),
        record(FAILED_ID, "train", JobState.FAILED),
        record(NO_OUTPUT_ID, "train", JobState.SUCCEEDED, {"result_file": "x/result-0.json"}),
    )
}


class Nested(Params):
    model: str = output_ref(output="model", kinds=("train",), description="m.", default="")


class Many(Params):
    models: list[str] = output_ref(
        output="model", kinds=("train",), description="Several.", default=[]
    )
    inner: Nested = Field(default_factory=Nested)
    plain: str = "job:not-a-ref-field"


def resolve(model: type[Params], params: dict[str, JsonValue]) -> dict[str, JsonValue]:
    looked_up: list[str] = []

    async def lookup(job_id: str) -> JobRecord | None:
        looked_up.append(job_id)
        return RECORDS.get(job_id)

    resolved = asyncio.run(resolve_references(model, params, lookup=lookup))
    assert len(looked_up) == len(set(looked_up)), "each job is read once"
    return resolved


def refused(model: type[Params], params: dict[str, JsonValue]) -> dict[str, tuple[str, str]]:
    with pytest.raises(InvalidRequest) as info:
        resolve(model, params)
    return {".".join(map(str, e.loc)): (e.type, e.msg) for e in info.value.errors}


def evaluate_params(**fields: JsonValue) -> dict[str, JsonValue]:
    return EvaluateParams.model_validate(fields).model_dump(mode="json")


def test_job_refs_become_the_referenced_jobs_outputs() -> None:
    params = evaluate_params(model=f"job:{TRAIN_ID}", dataset=f"job:{DATAGEN_ID}")
    resolved = resolve(EvaluateParams, params)
    assert resolved["model"] == f"{TRAIN_ID}/model.pt"
    assert resolved["dataset"] == f"{DATAGEN_ID}/d.npz"
    assert resolved["batch_size"] == params["batch_size"]  # the rest untouched


def test_plain_artifact_paths_are_left_alone_without_any_lookup() -> None:
    params = evaluate_params(model="abc/model.pt")

    async def lookup(job_id: str) -> JobRecord | None:
        raise AssertionError("no lookup expected")

    assert asyncio.run(resolve_references(EvaluateParams, params, lookup=lookup)) == params


def test_refs_in_lists_and_nested_params_are_resolved_and_other_fields_are_not() -> None:
    params: dict[str, JsonValue] = {
        "models": ["a/model.pt", f"job:{TRAIN_ID}"],
        "inner": {"model": f"job:{TRAIN_ID}"},
        "plain": "job:not-a-ref-field",
    }
    assert [r.loc for r in find_references(Many, params)] == [("models", 1), ("inner", "model")]
    resolved = resolve(Many, params)
    assert resolved == {
        "models": ["a/model.pt", f"{TRAIN_ID}/model.pt"],
        "inner": {"model": f"{TRAIN_ID}/model.pt"},
        "plain": "job:not-a-ref-field",
    }
    assert params["models"] == ["a/model.pt", f"job:{TRAIN_ID}"]  # the input is not changed


def test_every_unusable_reference_is_refused_on_its_own_field() -> None:
    errors = refused(
        Many,
        {
            "models": [
                "job:0000000000000000",
                f"job:{RUNNING_ID}",
                f"job:{FAILED_ID}",
                f"job:{DATAGEN_ID}",
                f"job:{NO_OUTPUT_ID}",
                "job:not-an-id",
            ]
        },
    )
    assert errors["params.models.0"][0] == "job_ref_not_found"
    assert errors["params.models.1"] == (
        "job_ref_state",
        f"job {RUNNING_ID} is running, not succeeded: only a succeeded job's output can be used",
    )
    assert "is failed, not succeeded" in errors["params.models.2"][1]
    assert errors["params.models.3"] == (
        "job_ref_kind",
        f"job {DATAGEN_ID} is a datagen job; expected a train job",
    )
    assert errors["params.models.4"][0] == "job_ref_output"
    assert "'model'" in errors["params.models.4"][1]
    assert errors["params.models.5"][0] == "job_ref_not_found"


def test_a_dataset_ref_accepts_either_dataset_kind_but_not_a_model() -> None:
    errors = refused(EvaluateParams, evaluate_params(model="m.pt", dataset=f"job:{TRAIN_ID}"))
    assert errors == {
        "params.dataset": (
            "job_ref_kind",
            f"job {TRAIN_ID} is a train job; expected a datagen or mat-import job",
        )
    }
