"""The local backend's kubelet asks a zygote for a pod and goes on: the answer (the
task's pid) comes later, through the event loop. Meanwhile the pod counts as running
(its slot is taken), and a cancel that comes before the answer reaches the pod once it does.
A forked task's cancel is the controller's to carry out: SIGTERM, then SIGKILL after the
grace period if the task is still there (its zygote's, if the controller is gone by then).
A zygote that does not answer in time is killed and the pod starts plainly, even on an
event loop whose timers fire a little early (uvloop's)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubetask.controller.backends.local_folders import JobFolders
from kubetask.controller.backends.local_supervisor import Supervisor
from kubetask.controller.backends.local_zygotes import REPLY_TIMEOUT_S, Zygotes, key
from kubetask.controller.clock import utcnow
from tests.component.test_zygote_process import REPO, spec, task_env

TIMEOUT_S = 60.0


def watching(tmp_path: Path) -> tuple[JobFolders, asyncio.Queue[str], Supervisor]:
    """Job folders, a supervisor of their pods, and the ids of the jobs whose pods exit."""
    folders = JobFolders(tmp_path / "jobs")
    exits: asyncio.Queue[str] = asyncio.Queue()
    supervisor = Supervisor(
        folders=folders,
        python=sys.executable,
        on_change=lambda job_id: None,
        on_exit=exits.put_nowait,
    )
    return folders, exits, supervisor


async def cancel_before_the_answer(tmp_path: Path) -> None:
    folders, exits, supervisor = watching(tmp_path)
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
        assert exited["exit_code"] == 128 + 15, "SIGTERM reached the task once the pid came"
        shim = pod_dir / "shim.json"  # none if the task died before it could say who it is
        assert not shim.exists() or json.loads(shim.read_text())["zygote"] is True
        assert supervisor.running == 0
    finally:
        supervisor.close()


def test_a_pod_cancelled_before_its_zygote_answers_is_stopped_once_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the zygote (and so the probe) imports tests
    asyncio.run(cancel_before_the_answer(tmp_path))


async def stubborn_task_is_killed_after_its_grace(
    tmp_path: Path, *, controller_gone: bool = False
) -> None:
    folders, exits, supervisor = watching(tmp_path)
    try:
        attempt = 0
        async with asyncio.timeout(TIMEOUT_S):  # until a pod is forked by the warm zygote
            forked = False
            while not forked:
                attempt += 1
                quick = spec(str(tmp_path / f"facts-{attempt}.json"))
                supervisor.spawn(quick, 0, attempt, now=utcnow())
                await exits.get()
                pod_dir = folders.job_dir(quick.job_id) / "pods" / f"0-{attempt}"
                forked = json.loads((pod_dir / "shim.json").read_text())["zygote"]
                await asyncio.sleep(0.2)
        facts = tmp_path / "stubborn.json"
        stubborn = spec(str(facts), "0", "stubborn")
        supervisor.spawn(stubborn, 0, attempt + 1, now=utcnow())
        pod_dir = folders.job_dir(stubborn.job_id) / "pods" / f"0-{attempt + 1}"
        for _ in range(int(TIMEOUT_S / 0.05)):  # until it runs, SIGTERM ignored
            if facts.exists():
                break
            await asyncio.sleep(0.05)
        assert json.loads((pod_dir / "shim.json").read_text())["zygote"] is True
        supervisor.terminate(stubborn.job_id)
        if controller_gone:  # its SIGKILL timer with it: the zygote is told in the pod folder
            supervisor.close()
            for _ in range(int(TIMEOUT_S / 0.1)):  # no one to tell us: its exit's record
                if (pod_dir / "exit.json").exists():
                    break
                await asyncio.sleep(0.1)
        else:
            async with asyncio.timeout(TIMEOUT_S):
                assert await exits.get() == stubborn.job_id
        exited = json.loads((pod_dir / "exit.json").read_text())
        assert exited["exit_code"] == 128 + 9, "SIGKILL once the grace was over"
    finally:
        supervisor.close()


def test_a_forked_task_that_ignores_sigterm_is_killed_after_its_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    asyncio.run(stubborn_task_is_killed_after_its_grace(tmp_path))


def test_a_cancelled_forked_task_is_killed_by_its_zygote_when_the_controller_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain pod's supervisor carries out its own SIGKILL; a forked task's zygote does
    too, once the controller that asked for it stopped during the grace."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    asyncio.run(stubborn_task_is_killed_after_its_grace(tmp_path, controller_gone=True))


class EarlyTimers(asyncio.SelectorEventLoop):
    """An event loop whose timers fire 5 ms before their time by `time.monotonic()`, as
    uvloop's may (its clock counts whole milliseconds, read once per turn)."""

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return super().call_at(when - 0.005, callback, *args, context=context)


async def wedged_zygote_is_failed(tmp_path: Path) -> None:
    pool = Zygotes(tmp_path / "zygotes", python=sys.executable, system=task_env(tmp_path))
    probe = spec("0", "sleep")
    wedged = None
    try:
        for _ in range(int(TIMEOUT_S / 0.1)):  # until it is ready (the first look starts it)
            if pool.ready(probe):
                break
            await asyncio.sleep(0.1)
        wedged = pool.running[key(probe)]
        os.kill(wedged, signal.SIGSTOP)  # it answers nothing
        replies: asyncio.Queue[int | None] = asyncio.Queue()
        pod_dir = tmp_path / "pod"
        pod_dir.mkdir()
        with (pod_dir / "output.log").open("wb") as output:
            asked = pool.request(
                probe,
                pod_dir,
                task_env(pod_dir),
                stdout=output.fileno(),
                on_reply=replies.put_nowait,
            )
        assert asked
        async with asyncio.timeout(REPLY_TIMEOUT_S + 5):
            assert await replies.get() is None  # start it plainly
        assert pool.running == {}  # killed
    finally:
        pool.close()
        if wedged is not None:  # not killed: a failed run leaves no stopped process
            with contextlib.suppress(ProcessLookupError):
                os.kill(wedged, signal.SIGKILL)


def test_a_wedged_zygote_is_killed_even_when_its_timer_fires_early(tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=EarlyTimers) as runner:
        runner.run(wedged_zygote_is_failed(tmp_path))
