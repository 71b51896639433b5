"""Chaining over the REST API: `job:<id>` in params is resolved at submit time (and in dry
runs), and a reference that cannot be used is a 422 problem naming the field, at once."""

from __future__ import annotations

from typing import Any

from tests.servers import ApiServer

PROBLEM = "application/problem+json"


def problem_for(api: ApiServer, body: dict[str, Any]) -> dict[str, str]:
    response = api.client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    return {e["field"]: e["msg"] for e in response.json()["errors"]}


def test_references_to_unusable_jobs_are_422_on_the_field(api: ApiServer) -> None:
    datagen = api.wait(api.submit("datagen", {"n_per_class": 2, "length": 64}))
    assert datagen["state"] == "succeeded"
    slow = api.submit("noop", {"steps": 1000, "step_s": 0.05})

    wrong_kind = problem_for(api, {"kind": "evaluate", "params": {"model": f"job:{datagen['id']}"}})
    assert wrong_kind == {
        "params.model": f"job {datagen['id']} is a datagen job; expected a train job"
    }
    missing = problem_for(
        api, {"kind": "export", "params": {"model": "job:0000000000000000", "dataset": "x"}}
    )
    assert "no job '0000000000000000'" in missing["params.model"]
    model_and_data = problem_for(
        api,
        {"kind": "test", "params": {"model": f"job:{slow}", "dataset": f"job:{slow}"}},
    )
    assert set(model_and_data) == {"params.model", "params.dataset"}
    assert "is a noop job" in model_and_data["params.dataset"]

    cancelled = api.client.delete(f"/v1/jobs/{slow}")
    assert cancelled.status_code == 202
    assert api.wait(slow)["state"] == "cancelled"


def test_a_reference_to_a_job_not_yet_succeeded_is_422_saying_its_state(api: ApiServer) -> None:
    running = api.submit("datagen", {"n_per_class": 100_000, "length": 4096})
    errors = problem_for(api, {"kind": "features", "params": {"dataset": f"job:{running}"}})
    message = errors["params.dataset"]
    assert message.startswith(f"job {running} is ")
    assert "not succeeded" in message
    assert api.client.delete(f"/v1/jobs/{running}").status_code == 202
    assert api.wait(running)["state"] == "cancelled"
    errors = problem_for(api, {"kind": "features", "params": {"dataset": f"job:{running}"}})
    assert errors["params.dataset"].startswith(f"job {running} is cancelled, not succeeded")


def test_a_usable_reference_is_resolved_in_the_stored_request_and_dry_runs(
    api: ApiServer,
) -> None:
    datagen = api.wait(api.submit("datagen", {"n_per_class": 2, "length": 64}))
    path = datagen["result"]["dataset"]
    body = {"kind": "features", "params": {"dataset": f"job:{datagen['id']}"}}
    dry = api.client.post("/v1/jobs", params={"dry_run": "true"}, json=body)
    assert dry.status_code == 200
    assert dry.json()["request"]["params"]["dataset"] == path
    response = api.client.post("/v1/jobs", json=body)
    assert response.status_code == 201
    assert response.json()["request"]["params"]["dataset"] == path
