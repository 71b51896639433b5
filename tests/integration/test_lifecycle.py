"""Cancel, failures, retries, deadlines, slots and logs, with real task processes."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from kubetask.controller.backends.local_folders import read_started
from tests.servers import ApiServer

SLOW = {"steps": 300, "step_s": 0.1}


def pod_dir(api: ApiServer, job_id: str, pod: str = "0-1") -> Path:
    return api.data_dir / "local" / "jobs" / job_id / "pods" / pod


def task_pid(api: ApiServer, job_id: str, pod: str = "0-1") -> int:
    deadline = time.monotonic() + 10
    while (started := read_started(pod_dir(api, job_id, pod))) is None:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    return int(str(started["pid"]))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


def wait_gone(pid: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.05)


def test_cancel_stops_the_task_and_ends_cancelled(api: ApiServer) -> None:
    job_id = api.submit("noop", SLOW)
    api.wait(job_id, {"running"})
    pid = task_pid(api, job_id)
    response = api.client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    job = api.wait(job_id)
    assert job["state"] == "cancelled"
    assert job["finished_at"] is not None
    wait_gone(pid)
    again = api.client.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409
    assert again.json()["state"] == "cancelled"
    states = [e["state"] for e in api.events(job_id) if e["type"] == "state"]
    assert states[-1] == "cancelled"


def test_cancel_of_a_finished_job_is_409(api: ApiServer) -> None:
    job_id = api.submit("noop")
    assert api.wait(job_id)["state"] == "succeeded"
    response = api.client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 409
    assert api.job(job_id)["state"] == "succeeded"


def test_a_raising_task_fails_with_error_traceback_and_logs(api: ApiServer) -> None:
    job_id = api.submit("noop", {"fail": "exception", "fail_message": "boom at step 0"})
    job = api.wait(job_id)
    assert job["state"] == "failed"
    error = job["error"]
    assert error["type"] == "RuntimeError"
    assert error["message"] == "boom at step 0"
    assert any("noop.py" in frame for frame in error["traceback"])
    assert error["exit_code"] == 1
    logs = api.client.get(f"/v1/jobs/{job_id}/logs").text
    assert "boom at step 0" in logs
    tail = api.client.get(f"/v1/jobs/{job_id}/logs", params={"tail": 1}).text
    assert len(tail.splitlines()) == 1


def test_out_of_memory_failure_suggests_a_smaller_batch(api: ApiServer) -> None:
    job = api.wait(api.submit("noop", {"fail": "memory"}))
    assert job["state"] == "failed"
    assert job["error"]["type"] == "MemoryError"
    assert "batch_size" in job["error"]["suggestion"]


def test_retries_rerun_a_failed_task_until_it_succeeds(api: ApiServer) -> None:
    job_id = api.submit("noop", {"fail": "exception", "fail_attempts": 2}, retries=3)
    job = api.wait(job_id)
    assert job["state"] == "succeeded"
    assert job["attempts"] == 3
    assert job["result"]["attempt"] == 3


def test_retries_run_out(api: ApiServer) -> None:
    job = api.wait(api.submit("noop", {"fail": "exception"}, retries=1))
    assert job["state"] == "failed"
    assert job["attempts"] == 2
    assert job["error"]["type"] == "RuntimeError"


def test_exit_code_2_is_never_retried(api: ApiServer) -> None:
    job = api.wait(api.submit("noop", {"fail": "exit", "exit_code": 2}, retries=3))
    assert job["state"] == "failed"
    assert job["attempts"] == 1
    assert job["reason"] == "PodFailurePolicy"


def test_a_killed_task_without_outcome_still_fails_clearly(api: ApiServer) -> None:
    job_id = api.submit("noop", SLOW)
    api.wait(job_id, {"running"})
    os.kill(task_pid(api, job_id), 9)
    job = api.wait(job_id)
    assert job["state"] == "failed"
    assert job["reason"] == "BackoffLimitExceeded"
    assert "137" in job["error"]["message"]


def test_timeout_fails_the_job_and_stops_the_task(api: ApiServer) -> None:
    job_id = api.submit("noop", SLOW, timeout_s=1)
    pid = task_pid(api, job_id)
    job = api.wait(job_id)
    assert job["state"] == "failed"
    assert job["reason"] == "DeadlineExceeded"
    assert "timeout_s" in job["error"]["suggestion"]
    wait_gone(pid)


def test_jobs_beyond_the_slots_wait_queued_then_run(fresh_api: ApiServer) -> None:
    fresh_api.restart_with(slots=1)
    first = fresh_api.submit("noop", {"steps": 10, "step_s": 0.1})
    second = fresh_api.submit("noop")
    fresh_api.wait(first, {"running"})
    deadline = time.monotonic() + 10  # once the controller has synced it: waiting for a slot
    while "slot" not in (waiting := fresh_api.job(second))["message"]:
        assert waiting["state"] == "queued", waiting
        assert time.monotonic() < deadline, waiting
        time.sleep(0.05)
    assert waiting["state"] == "queued"
    done = fresh_api.wait(second)
    assert done["state"] == "succeeded", done
    # the slot was the first task's until its exit: the second task started after it, and
    # the job views say so (a job ends when the backend's condition says it did, not when the
    # controller's sync came to see it: the second may be seen before the first's end is)
    first_exit = json.loads((pod_dir(fresh_api, first) / "exit.json").read_text())
    second_start = read_started(pod_dir(fresh_api, second))
    assert second_start is not None
    assert str(second_start["started_at"]) >= str(first_exit["finished_at"])
    assert fresh_api.job(second)["started_at"] >= fresh_api.job(first)["finished_at"]


def test_a_jobs_start_is_its_tasks_recorded_start(api: ApiServer) -> None:
    """Not the time the controller's sync saw it running."""
    job_id = api.submit("noop", {"steps": 2, "step_s": 0.05})
    job = api.wait(job_id)
    assert job["state"] == "succeeded", job
    began = read_started(pod_dir(api, job_id))
    assert began is not None
    assert datetime.fromisoformat(job["started_at"]) == datetime.fromisoformat(
        str(began["started_at"])
    )


def test_large_params_reach_the_task_through_a_file(api: ApiServer) -> None:
    payload = "p" * 200_000  # over what one environment variable may hold
    job = api.wait(api.submit("noop", {"payload": payload}))
    assert job["state"] == "succeeded", job
    assert job["result"]["payload_chars"] == 200_000


def test_killing_the_supervisor_leaves_no_orphan_task(api: ApiServer) -> None:
    """The supervisor: the pod's shim, or the zygote that forked the task."""
    job_id = api.submit("noop", SLOW)
    pid = task_pid(api, job_id)
    shim = json.loads(
        (api.data_dir / "local" / "jobs" / job_id / "pods" / "0-1" / "shim.json").read_text()
    )
    os.kill(shim["recorder"] if shim["zygote"] else shim["pid"], 9)
    wait_gone(pid)
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 202
