"""A job's deadlines on the local backend hold while its controller is down, as on Kubernetes
(where the kubelet and the Job controller keep them, whatever kubetask's controller does):
the task's supervisor, a forked task's zygote or a plain start's shim, stops it at
`timeout_s` (SIGTERM, SIGKILL after the grace) by itself, and the restarted controller
records `DeadlineExceeded`, not a success; a queued job whose `start_timeout_s` passed
while it was down is never started (`StartTimeout`)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ApiServer, own_database

GRACE_S = 1.0


def until_exists(path: Path, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name} in {timeout_s} s"
        time.sleep(0.05)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("zygotes", [True, False], ids=["forked", "plain"])
def test_the_supervisor_keeps_timeout_s_while_the_controller_is_down(
    redis_url: str, tmp_path: Path, zygotes: bool
) -> None:
    api = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=tmp_path / "api",
        grace_s=GRACE_S,
        zygotes=zygotes,
    )
    api.start()
    try:
        job_id = api.submit("noop", {"steps": 100, "step_s": 0.2}, timeout_s=2)
        api.wait(job_id, {"running"})
        api.kill()  # SIGKILL: nothing of the controller runs until the restart
        pod_dir = api.data_dir / "local" / "jobs" / job_id / "pods" / "0-1"
        made = datetime.fromisoformat(json.loads((pod_dir / "pod.json").read_text())["created_at"])
        ended = until_exists(pod_dir / "exit.json", timeout_s=15)
        assert ended["exit_code"] == 143  # SIGTERMed at the deadline, not run to its end
        ran_s = (datetime.fromisoformat(ended["finished_at"]) - made).total_seconds()
        assert 2 <= ran_s < 2 + GRACE_S + 1.5  # a zygote looks every second
        api.start()
        job = api.wait(job_id, timeout_s=30)
        assert (job["state"], job["reason"]) == ("failed", "DeadlineExceeded")
    finally:
        api.close()


@pytest.mark.parametrize("zygotes", [True, False], ids=["forked", "plain"])
def test_a_queued_job_whose_start_deadline_passed_while_down_is_never_started(
    redis_url: str, tmp_path: Path, zygotes: bool
) -> None:
    api = ApiServer(
        redis_url=own_database(redis_url), data_dir=tmp_path / "api", slots=1, zygotes=zygotes
    )
    api.start()
    try:
        busy = api.submit("noop", {"steps": 10, "step_s": 0.2})
        api.wait(busy, {"running"})
        late = api.submit("noop", {"steps": 0}, start_timeout_s=2)
        spec = api.data_dir / "local" / "jobs" / late / "job.json"
        deadline = time.monotonic() + 10
        while not spec.exists():  # the backend holds it, queued for the slot (else the
            assert time.monotonic() < deadline  # restart's first sync times it out unmade)
            time.sleep(0.02)
        api.kill()
        time.sleep(4)  # the busy job ends, its slot is free, and `late`'s deadline passes
        api.start()
        job = api.wait(late, timeout_s=30)
        assert (job["state"], job["reason"]) == ("failed", "StartTimeout")
        assert job["started_at"] is None
        assert not (api.data_dir / "local" / "jobs" / late / "pods" / "0-1").exists()
        assert api.wait(busy)["state"] == "succeeded"
    finally:
        api.close()
