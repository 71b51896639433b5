"""The same API scenarios against both backends: the states, events, results and errors a
user sees do not depend on where the tasks run."""

from __future__ import annotations

import time

from tests.servers import ApiServer


def test_submit_progress_success(any_backend: ApiServer) -> None:
    api = any_backend
    job_id = api.submit("datagen", {"n_per_class": 3, "length": 128})
    events = api.events(job_id)
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states[0] == "queued"
    assert "running" in states
    assert states[-1] == "succeeded"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert any(e["type"] == "progress" for e in events)
    job = api.job(job_id)
    assert job["result"]["n_signals"] == 18
    assert (api.data_dir / "artifacts" / job["result"]["dataset"]).is_file()
    assert job["started_at"] is not None
    assert job["finished_at"] >= job["started_at"]


def test_failure_carries_the_tasks_error(any_backend: ApiServer) -> None:
    job = any_backend.wait(any_backend.submit("noop", {"fail": "memory"}))
    assert job["state"] == "failed"
    assert job["error"]["type"] == "MemoryError"
    assert "batch_size" in job["error"]["suggestion"]
    assert job["attempts"] == 1


def test_retry_until_success(any_backend: ApiServer) -> None:
    job_id = any_backend.submit("noop", {"fail": "exception", "fail_attempts": 1}, retries=2)
    job = any_backend.wait(job_id)
    assert job["state"] == "succeeded"
    assert job["attempts"] == 2
    assert job["result"]["attempt"] == 2


def test_invalid_params_exit_code_is_not_retried(any_backend: ApiServer) -> None:
    job = any_backend.wait(any_backend.submit("noop", {"fail": "exit", "exit_code": 2}, retries=3))
    assert job["state"] == "failed"
    assert job["attempts"] == 1


def test_cancel(any_backend: ApiServer) -> None:
    api = any_backend
    job_id = api.submit("noop", {"steps": 300, "step_s": 0.1})
    api.wait(job_id, {"running"})
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 202
    assert api.wait(job_id)["state"] == "cancelled"
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 409


def test_a_restarted_controller_loses_nothing(any_backend: ApiServer) -> None:
    api = any_backend
    job_id = api.submit("noop", {"steps": 15, "step_s": 0.1})
    api.wait(job_id, {"running"})
    api.kill()
    time.sleep(0.5)
    api.start()
    job = api.wait(job_id)
    assert job["state"] == "succeeded"
    assert job["attempts"] == 1
    assert [e["state"] for e in api.events(job_id) if e["type"] == "state"][-1] == "succeeded"
