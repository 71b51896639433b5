"""What the server refuses at submit rather than run unlike what was asked, against the real
API process (local backend): a GPU this machine does not have, and workers for a kind that
cannot share its work. 422 with the field and why; nothing is created."""

from __future__ import annotations

import uuid
from typing import Any

from kubetask.controller.backends.local_gpus import count_gpus
from tests.servers import ApiServer

PROBLEM = "application/problem+json"


def _refused(api: ApiServer, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    label = uuid.uuid4().hex
    response = api.client.post(
        "/v1/jobs",
        json={**body, "labels": {"refusal": label}},
        params={"dry_run": "true"} if dry_run else None,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    listed = api.client.get("/v1/jobs", params={"label": f"refusal={label}"}).json()
    assert listed["items"] == []  # nothing created
    problem: dict[str, Any] = response.json()
    return problem


def test_a_gpu_this_machine_lacks_is_422_naming_resources_gpu(api: ApiServer) -> None:
    asked = count_gpus() + 1  # this machine: none, so 1 (a GPU machine: one more than it has)
    problem = _refused(api, {"kind": "train", "resources": {"gpu": asked}})
    [error] = problem["errors"]
    assert error["field"] == "resources.gpu"
    assert "local backend" in error["msg"]
    assert f"cannot give {asked}" in error["msg"]


def test_a_dry_run_asking_for_a_missing_gpu_is_refused_too(api: ApiServer) -> None:
    _refused(api, {"kind": "noop", "resources": {"gpu": count_gpus() + 1}}, dry_run=True)


def test_no_gpu_asked_runs_as_before(api: ApiServer) -> None:
    job = api.wait(api.submit("noop", {"steps": 1}, resources={"gpu": 0}))
    assert job["state"] == "succeeded"


def test_workers_for_a_kind_that_cannot_split_its_work_are_422(api: ApiServer) -> None:
    problem = _refused(api, {"kind": "datagen", "parallelism": 3, "completions": 3})
    [error] = problem["errors"]
    assert error["field"] == "completions"
    assert "datagen cannot share its work" in problem["detail"]
    assert "explain-batch, hpo, nas" in problem["detail"]  # what to use instead


def test_completions_alone_for_a_kind_that_cannot_split_are_422(api: ApiServer) -> None:
    problem = _refused(api, {"kind": "train", "completions": 2})
    assert [e["field"] for e in problem["errors"]] == ["completions"]


def test_a_kind_that_splits_its_work_takes_workers(api: ApiServer) -> None:
    body = {"kind": "hpo", "parallelism": 2, "completions": 2}
    response = api.client.post("/v1/jobs", json=body, params={"dry_run": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["request"]["completions"] == 2
