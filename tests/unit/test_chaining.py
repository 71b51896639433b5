"""Chaining: `job:<id>` params resolved to the named job's output, or refused on the field;
plain artifact paths checked to be the tenant's (its jobs' folders, its uploads)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pydantic import Field, JsonValue

from kubetask.controller.chaining import find_references, resolve_references
from kubetask.controller.errors import InvalidRequest
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.jobs.params import Params
from kubetask.jobs.params.catalog import EvaluateParams, MatImportParams
from kubetask.models import JobRequest, JobState
from kubetask.params.refs import output_ref

TRAIN_ID = "0abcdefgh1234567"
DATAGEN_ID = "0abcdefgh7654321"
RUNNING_ID = "0abcdefghrunning"
FAILED_ID = "0abcdefghfailed0"
NO_OUTPUT_ID = "0abcdefghnooutpt"
THEIRS_ID = "0abcdefghtheirs0"  # team-b's
MISSING_ID = "0000000000000000"
ORPHAN_ID = "0abcdefghorphan0"  # a train job whose dataset's job was purged
TENANT = "team-a"


def record(
    job_id: str,
    kind: str,
    state: JobState,
    result: dict[str, JsonValue] | None = None,
    tenant: str = TENANT,
) -> JobRecord:
    return JobRecord(
        id=job_id,
        request=JobRequest(kind=kind),
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        status=JobStatus(state=state, result=result),
        tenant=tenant,
    )


RECORDS = {
    r.id: r
    for r in (
        record(
            TRAIN_ID,
            "train",
            JobState.SUCCEEDED,
            {"model": f"{TRAIN_ID}/model.pt", "last_model": f"{TRAIN_ID}/last.pt"},
        ),
        record(DATAGEN_ID, "datagen", JobState.SUCCEEDED, {"dataset": f"{DATAGEN_ID}/d.npz"}),
        record(RUNNING_ID, "train", JobState.RUNNING),
        record(FAILED_ID, "train", JobState.FAILED),
        record(NO_OUTPUT_ID, "train", JobState.SUCCEEDED, {"result_file": "x/result-0.json"}),
        record(
            ORPHAN_ID,
            "train",
            JobState.SUCCEEDED,
            {"model": f"{ORPHAN_ID}/model.pt", "dataset": f"{MISSING_ID}/dataset.npz"},
        ),
        record(
            THEIRS_ID, "train", JobState.SUCCEEDED, {"model": f"{THEIRS_ID}/model.pt"}, "team-b"
        ),
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

    async def lookup(job_id: str) -> JobRecord | None:  # as the service's: the tenant's only
        looked_up.append(job_id)
        found = RECORDS.get(job_id)
        return found if found is not None and found.visible_to(TENANT) else None

    resolved = asyncio.run(resolve_references(model, params, tenant=TENANT, lookup=lookup))
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


def test_plain_paths_in_the_tenants_own_areas_are_left_alone() -> None:
    params = evaluate_params(model=f"{TRAIN_ID}/model.pt", dataset=f"uploads/{TENANT}/d.npz")
    looked_up: list[str] = []

    async def lookup(job_id: str) -> JobRecord | None:
        looked_up.append(job_id)
        return RECORDS[job_id]

    resolved = asyncio.run(resolve_references(EvaluateParams, params, tenant=TENANT, lookup=lookup))
    assert resolved == params
    assert looked_up == [TRAIN_ID]  # the job's tenant is checked; the uploads need no lookup
    plain = evaluate_params(model=f"{RUNNING_ID}/checkpoint.pt", dataset=f"{TRAIN_ID}/d.npz")
    assert resolve(EvaluateParams, plain) == plain  # any file of any own job, in any state


def test_a_plain_path_to_another_tenants_job_is_refused_as_a_missing_job_is() -> None:
    errors = refused(
        Many,
        {
            "models": [f"{THEIRS_ID}/model.pt", f"job:{THEIRS_ID}"],
            "inner": {"model": f"{MISSING_ID}/model.pt"},
        },
    )
    expected = ("job_ref_not_found", f"no job {THEIRS_ID!r} (it may have expired)")
    assert errors["params.models.0"] == errors["params.models.1"] == expected
    assert errors["params.inner.model"] == (
        "job_ref_not_found",
        f"no job {MISSING_ID!r} (it may have expired)",
    )


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("uploads/team-b/d.npz", f"outside your tenant's uploads area 'uploads/{TENANT}/'"),
        ("uploads/d.npz", "outside your tenant's uploads area"),
        ("uploads", "outside your tenant's uploads area"),
        ("gan/press-7/seed.csv", "must start with the id of one of your tenant's jobs"),
        ("nowhere/dataset.npz", f"or with your tenant's uploads area 'uploads/{TENANT}/'"),
        ("/etc/passwd", "must be a path relative to the artifact store"),
        (f"{TRAIN_ID}/../{THEIRS_ID}/model.pt", "without a leading '/' or '..'"),
    ],
)
def test_a_plain_path_outside_the_tenants_areas_is_refused_on_its_field(
    path: str, says: str
) -> None:
    errors = refused(Nested, {"model": path})  # unvalidated params: checked here as well
    kind, message = errors["params.model"]
    assert kind == "artifact_path"
    assert says in message


def test_a_glob_names_its_area_in_full() -> None:
    for pattern in (f"uploads/{TENANT}/**/*.mat", f"{TRAIN_ID}/examples/*.mat"):
        params = MatImportParams(files=pattern).model_dump(mode="json")
        assert resolve(MatImportParams, params)["files"] == pattern
    for pattern in ("*/examples/*.mat", "uploads/*/x.mat", "**/*.mat", "uploads/team-?/*.mat"):
        errors = refused(MatImportParams, {"files": pattern})
        assert errors["params.files"][0] == "artifact_path", pattern
        assert "without wildcards" in errors["params.files"][1]


def test_a_result_naming_a_path_outside_the_store_is_no_output() -> None:
    escaping = record(TRAIN_ID, "train", JobState.SUCCEEDED, {"model": "/etc/passwd"})

    async def lookup(job_id: str) -> JobRecord | None:
        return escaping

    with pytest.raises(InvalidRequest) as info:
        asyncio.run(
            resolve_references(
                EvaluateParams, {"model": f"job:{TRAIN_ID}"}, tenant=TENANT, lookup=lookup
            )
        )
    assert [e.type for e in info.value.errors] == ["job_ref_output"]


def test_refs_in_lists_and_nested_params_are_resolved_and_other_fields_are_not() -> None:
    params: dict[str, JsonValue] = {
        "models": [f"{DATAGEN_ID}/model.pt", f"job:{TRAIN_ID}"],
        "inner": {"model": f"job:{TRAIN_ID}"},
        "plain": "job:not-a-ref-field",
    }
    assert [r.loc for r in find_references(Many, params)] == [("models", 1), ("inner", "model")]
    resolved = resolve(Many, params)
    assert resolved == {
        "models": [f"{DATAGEN_ID}/model.pt", f"{TRAIN_ID}/model.pt"],
        "inner": {"model": f"{TRAIN_ID}/model.pt"},
        "plain": "job:not-a-ref-field",
    }
    assert params["models"] == [
        f"{DATAGEN_ID}/model.pt",
        f"job:{TRAIN_ID}",
    ]  # the input is not changed


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
    errors = refused(
        EvaluateParams, evaluate_params(model=f"{TRAIN_ID}/m.pt", dataset=f"job:{TRAIN_ID}")
    )
    assert errors == {
        "params.dataset": (
            "job_ref_kind",
            f"job {TRAIN_ID} is a train job; expected a datagen or mat-import job",
        )
    }


class Unpickled(Params):
    """A field whose file the task unpickles: only what a train job wrote."""

    model: str = output_ref(
        output="model", kinds=("train",), description="m.", default="", outputs_only=True
    )


def test_a_file_the_task_unpickles_is_only_what_a_job_of_its_kind_wrote() -> None:
    """Unpickling runs code: an uploaded pickle would run in the task, with its credentials
    and every tenant's files in reach. `job:<id>` and the path its result lists as the
    field's output are taken; an upload (by path or `upload:`), another file of that job
    (one its result lists as another output too), another kind's: refused."""
    assert resolve(Unpickled, {"model": f"job:{TRAIN_ID}"}) == {"model": f"{TRAIN_ID}/model.pt"}
    assert resolve(Unpickled, {"model": f"{TRAIN_ID}/model.pt"}) == {
        "model": f"{TRAIN_ID}/model.pt"
    }
    for value in (
        f"uploads/{TENANT}/evil.pkl",
        "upload:evil.pkl",
        f"{TRAIN_ID}/checkpoint.pt",
        f"{TRAIN_ID}/last.pt",
        f"{DATAGEN_ID}/d.npz",
    ):
        assert refused(Unpickled, {"model": value}) == {
            "params.model": (
                "job_output_only",
                "only a train job's output ('job:<id>', or the path of its 'model' its result "
                "lists): this file is unpickled, which runs code, so no upload or other file "
                "is taken",
            )
        }, value


def test_a_path_spelled_otherwise_is_taken_as_the_store_names_it() -> None:
    """`id//file` and `id/./file` are `id/file`: the checks that apply to a job's output
    apply to them (a model's file is that job's output), and the task is given the plain
    spelling (it finds a model's own data held out by comparing paths)."""
    for spelled in (f"{TRAIN_ID}//model.pt", f"{TRAIN_ID}/./model.pt"):
        assert resolve(Unpickled, {"model": spelled}) == {"model": f"{TRAIN_ID}/model.pt"}
    params = evaluate_params(model=f"{TRAIN_ID}/model.pt", dataset=f"{DATAGEN_ID}/./d.npz")
    assert resolve(EvaluateParams, params)["dataset"] == f"{DATAGEN_ID}/d.npz"


def test_a_models_own_data_filled_in_from_a_job_that_is_gone_is_refused() -> None:
    """Left out, `dataset` is what the model was trained on; when the job that wrote it was
    purged the submit is 422 naming the field (it failed at run time, retried, with a
    suggestion to leave out the field the user had left out)."""
    errors = refused(EvaluateParams, evaluate_params(model=f"job:{ORPHAN_ID}"))
    assert errors == {
        "params.dataset": (
            "job_ref_not_found",
            f"left out, it would be '{MISSING_ID}/dataset.npz', what the model was trained "
            f"on, but job '{MISSING_ID}' that wrote it no longer exists (purged or expired): "
            "pass `dataset`",
        )
    }
    filled = resolve(EvaluateParams, evaluate_params(model=f"job:{TRAIN_ID}"))
    assert filled["dataset"] is None  # its own data was generated: nothing to look for
