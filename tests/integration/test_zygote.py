"""The local backend's zygotes: a task forked from a warm process is a task process like a
plainly started one, through the API: its own session and group, its exit recorded by the
zygote (its parent), none of the zygote's sockets, no inherited thread, the same exit codes,
SIGTERM on cancel, adopted after the controller is killed while the zygote goes on
supervising it (what the task sees of its environment and its random streams:
tests/component/test_zygote_process.py). A zygote that dies is replaced, one that wedges is
killed, and pods start plainly meanwhile."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from kubetask.controller.redis_server import RedisServer
from tests.integration.test_lifecycle import alive, task_pid, wait_gone
from tests.servers import ApiServer, own_database

SLOW = {"steps": 100, "step_s": 0.1}


def pod(api: ApiServer, job_id: str, name: str = "0-1") -> Path:
    return api.data_dir / "local" / "jobs" / job_id / "pods" / name


def shim_of(api: ApiServer, job_id: str) -> dict[str, Any]:
    path = pod(api, job_id) / "shim.json"
    deadline = time.monotonic() + 10
    while True:
        if path.exists():
            shim: dict[str, Any] = json.loads(path.read_text())
            return shim
        assert time.monotonic() < deadline, "the pod has no supervisor"
        time.sleep(0.02)


def zygotes(api: ApiServer) -> list[int]:
    """The pids of the server's zygotes that are alive (they work in its zygotes folder),
    not their spares (forked copies, there too until they become a task)."""
    folder = (api.data_dir / "local" / "zygotes").resolve()
    parents: dict[int, int] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            here = (proc / "cwd").resolve() == folder
            if here and b"kubetask.controller.backends.zygote" in cmdline:
                parents[int(proc.name)] = proc_facts(int(proc.name))["ppid"]
        except OSError:
            continue
    return [pid for pid, parent in parents.items() if parent not in parents and alive(pid)]


def warm(api: ApiServer, timeout_s: float = 60) -> int:
    """Run noops until one is forked by a zygote; the zygote's pid."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job_id = api.submit("noop")
        assert api.wait(job_id)["state"] == "succeeded"
        if shim_of(api, job_id)["zygote"]:
            (pid,) = zygotes(api)
            return pid
        time.sleep(0.3)
    raise AssertionError("no zygote became ready")


def proc_facts(pid: int) -> dict[str, Any]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    fds = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            fds[int(fd.name)] = os.readlink(fd)
        except OSError:
            continue
    return {
        "ppid": int(fields[1]),
        "pgid": int(fields[2]),
        "sid": int(fields[3]),
        "fds": fds,
        "threads": len(os.listdir(f"/proc/{pid}/task")),
    }


def test_a_forked_task_is_a_task_process_like_a_plain_one(fresh_api: ApiServer) -> None:
    plain_job = fresh_api.submit("noop", SLOW)  # the first: no zygote is ready yet
    assert shim_of(fresh_api, plain_job)["zygote"] is False
    plain_pid = task_pid(fresh_api, plain_job)
    fresh_api.wait(plain_job, {"running"})
    zygote = warm(fresh_api)
    forked_job = fresh_api.submit("noop", SLOW)
    shim = shim_of(fresh_api, forked_job)
    assert shim["zygote"] is True
    forked_pid = task_pid(fresh_api, forked_job)
    fresh_api.wait(forked_job, {"running"})
    time.sleep(0.5)  # both tasks are past their start (Redis connected, stepping)
    plain, forked, parent = proc_facts(plain_pid), proc_facts(forked_pid), proc_facts(zygote)

    assert forked["ppid"] == zygote == shim["recorder"], "the zygote records its exit"
    assert forked["pgid"] == forked_pid == shim["pid"], "a process group of its own"
    assert forked["sid"] == forked_pid != parent["sid"], "and a session of its own"
    zygote_sockets = {t for t in parent["fds"].values() if t.startswith("socket:")}
    forked_sockets = {t for t in forked["fds"].values() if t.startswith("socket:")}
    assert not forked_sockets & zygote_sockets, "no socket of the zygote's"
    assert len(forked_sockets) == len({t for t in plain["fds"].values() if "socket:" in t})
    assert forked["threads"] <= plain["threads"], "no thread beyond what a plain task runs"
    for job_id in (plain_job, forked_job):
        assert fresh_api.client.delete(f"/v1/jobs/{job_id}").status_code == 202
    assert fresh_api.wait(forked_job)["state"] == "cancelled"
    wait_gone(forked_pid)  # SIGTERM reached its group


def test_forked_tasks_end_as_plain_ones_do(fresh_api: ApiServer) -> None:
    warm(fresh_api)
    ends = {}
    for fail in ("exit", "exception", None):
        params: dict[str, Any] = {"steps": 1} if fail is None else {"fail": fail}
        job_id = fresh_api.submit("noop", params)
        job = fresh_api.wait(job_id)
        assert shim_of(fresh_api, job_id)["zygote"] is True
        exit_code = json.loads((pod(fresh_api, job_id) / "exit.json").read_text())["exit_code"]
        ends[fail] = (job["state"], exit_code, (job.get("error") or {}).get("type"))
    assert ends == {
        "exit": ("failed", 3, "SystemExit"),
        "exception": ("failed", 1, "RuntimeError"),
        None: ("succeeded", 0, None),
    }


def test_a_forked_task_outlives_a_killed_controller_and_is_adopted(
    fresh_api: ApiServer,
) -> None:
    zygote = warm(fresh_api)
    job_id = fresh_api.submit("noop", {"steps": 30, "step_s": 0.1})
    assert shim_of(fresh_api, job_id)["zygote"] is True
    fresh_api.wait(job_id, {"running"})
    pid = task_pid(fresh_api, job_id)
    fresh_api.kill()
    time.sleep(0.5)
    assert alive(pid), "the task died with its controller"
    assert alive(zygote), "its zygote stopped supervising it"
    fresh_api.start()
    job = fresh_api.wait(job_id)
    assert job["state"] == "succeeded"
    assert job["attempts"] == 1, "the task was run again instead of adopted"
    wait_gone(zygote)  # hung up on, it exits after its last task


def test_a_dead_zygote_is_replaced_and_pods_start_plainly_meanwhile(
    fresh_api: ApiServer,
) -> None:
    zygote = warm(fresh_api)
    os.kill(zygote, signal.SIGKILL)
    wait_gone(zygote)
    job_id = fresh_api.submit("noop")
    assert fresh_api.wait(job_id)["state"] == "succeeded"
    assert shim_of(fresh_api, job_id)["zygote"] is False
    assert warm(fresh_api) != zygote


@pytest.mark.timeout(120)
def test_a_wedged_zygote_is_killed_and_the_pod_starts_plainly(fresh_api: ApiServer) -> None:
    zygote = warm(fresh_api)
    os.kill(zygote, signal.SIGSTOP)
    try:
        job_id = fresh_api.submit("noop")
        assert fresh_api.wait(job_id)["state"] == "succeeded"
        assert shim_of(fresh_api, job_id)["zygote"] is False
        wait_gone(zygote)
    finally:
        if alive(zygote):
            os.kill(zygote, signal.SIGKILL)


def test_zygotes_can_be_turned_off(redis_server: RedisServer, tmp_path: Path) -> None:
    api = ApiServer(
        redis_url=own_database(redis_server.url), data_dir=tmp_path / "api", zygotes=False
    ).start()
    try:
        for _ in range(3):
            job_id = api.submit("noop")
            assert api.wait(job_id)["state"] == "succeeded"
            assert shim_of(api, job_id)["zygote"] is False
            time.sleep(0.5)
        assert zygotes(api) == []
        assert not (api.data_dir / "local" / "zygotes").exists()
    finally:
        api.close()
