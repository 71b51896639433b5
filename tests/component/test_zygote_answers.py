"""The local backend's kubelet asks a zygote for a pod and goes on: the answer (the
supervisor's pid) comes later, through the event loop. Meanwhile the pod counts as running
(its slot is taken), and a cancel that comes before the answer reaches the pod once it does."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from kubetask.controller.backends.local_folders import JobFolders
from kubetask.controller.backends.local_supervisor import Supervisor
from kubetask.controller.clock import utcnow
from tests.component.test_zygote_process import REPO, spec

TIMEOUT_S = 60.0


async def cancel_before_the_answer(tmp_path: Path) -> None:
    folders = JobFolders(tmp_path / "jobs")
    exits: asyncio.Queue[str] = asyncio.Queue()
    supervisor = Supervisor(
        folders=folders,
        python=sys.executable,
        on_change=lambda job_id: None,
        on_exit=exits.put_nowait,
    )
    try:
        attempt = 1
        async with asyncio.timeout(TIMEOUT_S):  # until a pod is forked by the warm zygote
            while True:
                sleeper = spec(str(tmp_path / f"facts-{attempt}.json"), "0", "sleep")
                supervisor.spawn(sleeper, 0, attempt, now=utcnow())
                pod_dir = folders.job_dir(sleeper.job_id) / "pods" / f"0-{attempt}"
                if supervisor.running and not (pod_dir / "shim.json").exists():
                    break  # asked, not yet answered: the zygote is ready
                supervisor.terminate(sleeper.job_id)
                await exits.get()
                attempt += 1
                await asyncio.sleep(0.2)
        assert supervisor.watches(pod_dir)
        assert supervisor.running == 1, "its slot is taken"
        supervisor.terminate(sleeper.job_id)  # before the zygote's answer was read
        async with asyncio.timeout(TIMEOUT_S):
            assert await exits.get() == sleeper.job_id
        exited = json.loads((pod_dir / "exit.json").read_text())
        shim = json.loads((pod_dir / "shim.json").read_text())
        assert shim["zygote"] is True
        assert exited["exit_code"] == 128 + 15, "SIGTERM reached the task once the pid came"
        assert supervisor.running == 0
    finally:
        supervisor.close()


def test_a_pod_cancelled_before_its_zygote_answers_is_stopped_once_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the zygote (and so the probe) imports tests
    asyncio.run(cancel_before_the_answer(tmp_path))
