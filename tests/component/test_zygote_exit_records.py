"""A forked task's exit that its zygote cannot write (the disk is full) is written once it
can: meanwhile the pod's pipe stays open, so the controller sees the pod still running,
not lost (a lost pod is started again, and this task ran to its end)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kubetask.controller.backends.local_zygotes import Zygotes
from kubetask.controller.backends.zygote import STOP_CHECK_S
from tests.component.test_zygote_process import spec, task_env

TIMEOUT_S = 60.0


def wait_for(condition: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, condition
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def closed(pipe: int, *, within_s: float) -> bool:
    """The pipe's writer closed it within `within_s` (its zygote says the exit is recorded)."""
    readable, _, _ = select.select([pipe], [], [], within_s)
    return bool(readable) and os.read(pipe, 4096) == b""


def test_an_exit_that_cannot_be_written_yet_is_written_once_it_can(tmp_path: Path) -> None:
    pool = Zygotes(tmp_path / "zygotes", python=sys.executable, system=task_env(tmp_path))
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    blocker = pod_dir / "exit.tmp"
    blocker.mkdir()  # the record cannot be written there, as on a full disk
    try:
        wait_for("a ready zygote", lambda: pool.ready(spec()))
        read, write = os.pipe()
        task = spec(str(pod_dir / "facts.json"), "7")
        pid = pool.start_pod(task, pod_dir, task_env(pod_dir), stdout=write)
        os.close(write)
        assert pid is not None
        with os.fdopen(read, "rb", buffering=0) as said:
            assert said.readline() == b"started\n"
            wait_for("the task ran to its end", lambda: gone(pid))
            assert not closed(said.fileno(), within_s=3 * STOP_CHECK_S), "shown as running"
            assert not (pod_dir / "exit.json").exists()
            blocker.rmdir()  # space again
            assert closed(said.fileno(), within_s=TIMEOUT_S), "told once it is recorded"
        exited = json.loads((pod_dir / "exit.json").read_text())
        assert exited["exit_code"] == 7, "the code the task ended with"
    finally:
        with contextlib.suppress(FileNotFoundError):
            blocker.rmdir()  # so the zygote ends once its task's exit is recorded
        pool.close()
