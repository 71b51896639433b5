"""A task run as its container runs it, `python -m kubetask.jobs <kind>` in a process of its
own, with the container contract's environment; for tests that drive a kind without the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetask import env
from kubetask.controller.backends.local_folders import read_started


@dataclass(frozen=True)
class TaskRun:
    exit_code: int
    outcome: dict[str, Any]
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        assert self.outcome.get("ok"), (self.outcome, self.stderr[-3000:])
        result: dict[str, Any] = self.outcome["result"]
        return result


def task_command(
    kind: str,
    params: dict[str, Any],
    *,
    job_id: str,
    root: Path,
    redis_url: str | None = None,
    index: int | None = None,
) -> tuple[list[str], dict[str, str], Path]:
    """The argv, environment and termination-log path of one task process."""
    log = root / "termination" / f"{job_id}-{index or 0}-{os.urandom(4).hex()}"
    log.parent.mkdir(parents=True, exist_ok=True)
    task_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETASK_")}
    task_env.update(
        {
            env.JOB_ID: job_id,
            env.KIND: kind,
            env.PARAMS: json.dumps(params),
            env.ARTIFACTS: str(root / "artifacts"),
            env.TERMINATION_LOG: str(log),
            "XDG_DATA_HOME": str(root / "xdg"),
        }
    )
    if redis_url:
        task_env[env.REDIS_URL] = redis_url
    if index is not None:
        task_env[env.COMPLETION_INDEX] = str(index)
    return [sys.executable, "-m", "kubetask.jobs", kind], task_env, log


def start_task(
    kind: str, params: dict[str, Any], **where: Any
) -> tuple[subprocess.Popen[str], Path]:
    argv, task_env, log = task_command(kind, params, **where)
    process = subprocess.Popen(
        argv, env=task_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    return process, log


def finish(process: subprocess.Popen[str], log: Path, timeout_s: float = 120) -> TaskRun:
    _, stderr = process.communicate(timeout=timeout_s)
    outcome = json.loads(log.read_text()) if log.exists() else {}
    return TaskRun(exit_code=process.returncode, outcome=outcome, stderr=stderr)


def run_task(kind: str, params: dict[str, Any], **where: Any) -> TaskRun:
    return finish(*start_task(kind, params, **where))


def api_task_pid(data_dir: Path, job_id: str, pod: str = "0-1", timeout_s: float = 20) -> int:
    """The pid of a task the API's local backend started (its pod folder records it)."""
    pod_dir = data_dir / "local" / "jobs" / job_id / "pods" / pod
    deadline = time.monotonic() + timeout_s
    while (started := read_started(pod_dir)) is None:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    return int(str(started["pid"]))
