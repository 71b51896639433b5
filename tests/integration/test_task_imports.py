"""A no-op task imports only what it uses: `python -m kubetask.jobs noop` against a real
Redis, then a look at what the process imported. (What it builds, and that it publishes
without redis-py: tests/integration/test_task_start.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.integration.task_process import task_command

# What a no-op task on a folder store has no use for: the asyncio Redis client, the artifact
# store and staging (only with KUBETASK_ARTIFACTS_URL), the ML libraries, the kinds' runners
# but its own, and other kinds' params modules.
NOT_IN_A_NOOP_TASK = (
    "redis",
    "redis.asyncio",
    "asyncio",
    "kubetask.storage",
    "kubetask.storage.s3",
    "kubetask.jobs.staging",
    "torch",
    "numpy",
    "optuna",
    "sdv",
    "kubetask.jobs.kinds.train",
    "kubetask.jobs.kinds.datagen",
)

# `python -m kubetask.jobs` as runpy runs it, then what the process imported.
PROBE = """
import json, runpy, sys
out, kind = sys.argv[1:]
sys.argv = ["kubetask.jobs", kind]
try:
    runpy.run_module("kubetask.jobs", run_name="__main__")
except SystemExit as exc:
    code = exc.code
with open(out, "w") as file:
    json.dump({"code": code, "modules": sorted(sys.modules)}, file)
"""


def test_a_noop_task_imports_neither_the_store_nor_other_kinds(
    redis_url: str, tmp_path: Path
) -> None:
    argv, task_env, log = task_command(
        "noop", {"steps": 0}, job_id=uuid.uuid4().hex[:16], root=tmp_path, redis_url=redis_url
    )
    probe = tmp_path / "probe.json"
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(probe), argv[-1]],
        env=task_env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(log.read_text())["ok"] is True
    seen = json.loads(probe.read_text())
    assert seen["code"] == 0
    assert sorted(set(NOT_IN_A_NOOP_TASK) & set(seen["modules"])) == []
    assert "kubetask.jobs.kinds.noop" in seen["modules"]  # the probe saw a real run
