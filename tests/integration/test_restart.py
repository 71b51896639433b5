"""Restarts: the controller killed mid-run, and the Redis server restarted."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

from kubetask.controller.redis_server import RedisServer, free_port
from tests.integration.test_lifecycle import alive, task_pid
from tests.servers import ApiServer


def test_killed_controller_adopts_running_tasks_after_restart(fresh_api: ApiServer) -> None:
    job_id = fresh_api.submit("noop", {"steps": 20, "step_s": 0.1})
    fresh_api.wait(job_id, {"running"})
    pid = task_pid(fresh_api, job_id)
    fresh_api.kill()
    time.sleep(0.3)
    assert alive(pid), "the task died with its controller"
    fresh_api.start()
    job = fresh_api.wait(job_id)
    assert job["state"] == "succeeded"
    assert job["attempts"] == 1, "the task was run again instead of adopted"
    assert job["result"]["attempt"] == 1
    states = [e["state"] for e in fresh_api.events(job_id) if e["type"] == "state"]
    assert states[-1] == "succeeded"


def test_a_task_that_ends_while_no_controller_runs_is_recorded(fresh_api: ApiServer) -> None:
    ok = fresh_api.submit("noop", {"steps": 5, "step_s": 0.1})
    bad = fresh_api.submit("noop", {"steps": 5, "step_s": 0.1, "fail": "exception"})
    fresh_api.wait(ok, {"running"})
    fresh_api.wait(bad, {"running"})
    fresh_api.kill()
    time.sleep(1.5)  # both tasks finish with nobody watching
    fresh_api.start()
    assert fresh_api.wait(ok)["state"] == "succeeded"
    failed = fresh_api.wait(bad)
    assert failed["state"] == "failed"
    assert failed["error"]["type"] == "RuntimeError"


def test_cancel_is_kept_across_a_restart(fresh_api: ApiServer) -> None:
    job_id = fresh_api.submit("noop", {"steps": 300, "step_s": 0.1})
    fresh_api.wait(job_id, {"running"})
    pid = task_pid(fresh_api, job_id)
    assert fresh_api.client.delete(f"/v1/jobs/{job_id}").status_code == 202
    fresh_api.restart()
    assert fresh_api.wait(job_id)["state"] == "cancelled"
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_job_records_survive_a_redis_restart(own_redis: RedisServer, tmp_path: Path) -> None:
    api = ApiServer(redis_url=own_redis.url, data_dir=tmp_path / "api").start()
    try:
        job_id = api.submit("noop", {"steps": 3})
        before = api.wait(job_id)
        own_redis.stop()
        own_redis.start()
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(Exception):
                if api.client.get(f"/v1/jobs/{job_id}").status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert api.job(job_id)["state"] == before["state"] == "succeeded"
        assert api.job(job_id)["result"] == before["result"]
        assert [e["seq"] for e in api.events(job_id)][-1] >= 3
    finally:
        api.close()


def test_a_task_carries_on_while_redis_is_down(own_redis: RedisServer, tmp_path: Path) -> None:
    api = ApiServer(redis_url=own_redis.url, data_dir=tmp_path / "api").start()
    try:
        job_id = api.submit("noop", {"steps": 30, "step_s": 0.1})
        api.wait(job_id, {"running"})
        own_redis.stop()
        time.sleep(1.0)
        own_redis.start()
        job = api.wait(job_id, timeout_s=60)
        assert job["state"] == "succeeded"
        assert job["result"]["steps"] == 30
    finally:
        api.close()


def test_the_task_runtime_never_fails_because_redis_is_unreachable(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    env = {
        "PATH": "/usr/bin:/bin",
        "KUBETASK_JOB_ID": "0000000000000000",
        "KUBETASK_PARAMS": '{"steps": 3}',
        "KUBETASK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "KUBETASK_ARTIFACTS": str(tmp_path / "artifacts"),
        "KUBETASK_TERMINATION_LOG": str(log),
    }
    done = subprocess.run(
        [sys.executable, "-m", "kubetask.jobs", "noop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"ok":true' in log.read_text()
    assert "redis unavailable" in done.stderr
