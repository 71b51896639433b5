"""A task forked by a zygote (controller/backends/zygote.py) sees what a plainly started
one sees: the job's environment exactly (Python's and C's), its folder, its argv, a session
(and process group) of its own, no thread and no socket of the zygote's, and random streams
of its own. Its exit code is recorded the same way, by the zygote, its parent."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_folders import read_started
from kubetask.controller.backends.local_supervisor import SHIM
from kubetask.controller.backends.local_zygotes import Zygotes

REPO = Path(__file__).resolve().parents[2]
PROBE = "tests.component.zygote_probe"


def spec(*args: str, kind: str = "noop") -> TaskSpec:
    """A probe pod; `kind` picks the zygote's role (what it preloads)."""
    return TaskSpec(
        job_id="00000000zygote00",
        kind=kind,
        image=f"probe-{kind}",
        command=("python", "-m", PROBE, *args),
        env={},
        retries=0,
        timeout_s=None,
        grace_s=2.0,
    )


def task_env(pod_dir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),
        "HOME": str(pod_dir),
        "PROBE_VALUE": f"seen in {pod_dir.name}",
        "KUBETASK_JOB_ID": "00000000zygote00",
    }


@pytest.fixture(params=["noop", "train", "gan-train"], ids=["light", "trainer-role", "gan-role"])
def role(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def zygotes(tmp_path: Path, role: str) -> Iterator[Zygotes]:
    pool = Zygotes(tmp_path / "zygotes", python=sys.executable, system=task_env(tmp_path))
    deadline = time.monotonic() + 60
    while not pool.ready(spec(kind=role)):
        assert time.monotonic() < deadline, (tmp_path / "zygotes" / "zygotes.log").read_text()
        time.sleep(0.1)
    yield pool
    pool.close()


def exit_code(pod_dir: Path) -> int:
    deadline = time.monotonic() + 30
    while not (pod_dir / "exit.json").exists():
        assert time.monotonic() < deadline, (pod_dir / "output.log").read_text()
        time.sleep(0.02)
    code: int = json.loads((pod_dir / "exit.json").read_text())["exit_code"]
    return code


def forked(
    pool: Zygotes, pod_dir: Path, *args: str, kind: str = "noop"
) -> tuple[int, dict[str, Any]]:
    pod_dir.mkdir()
    read, write = os.pipe()
    pid = pool.start_pod(
        spec(str(pod_dir / "facts.json"), *args, kind=kind),
        pod_dir,
        task_env(pod_dir),
        stdout=write,
    )
    os.close(write)
    assert pid is not None
    with os.fdopen(read, "rb") as said:
        assert said.read() == b"started\n"
    started = read_started(pod_dir)  # recorded by the zygote before it said so
    assert started is not None
    assert started["pid"] == pid
    return exit_code(pod_dir), json.loads((pod_dir / "facts.json").read_text())


def plain(pod_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    pod_dir.mkdir()
    command = [sys.executable, "-m", PROBE, str(pod_dir / "facts.json"), *args]
    subprocess.run(
        [sys.executable, "-I", "-S", SHIM, str(pod_dir), "2", "--", *command],
        env=task_env(pod_dir),
        cwd=pod_dir,
        check=True,
        capture_output=True,
    )
    return exit_code(pod_dir), json.loads((pod_dir / "facts.json").read_text())


def test_a_forked_task_sees_what_a_plain_one_sees(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    _, mine = forked(zygotes, tmp_path / "forked", kind=role)
    _, other = plain(tmp_path / "plain")
    supervisor = json.loads((tmp_path / "forked" / "shim.json").read_text())
    assert supervisor["zygote"] is True
    job_env = task_env(tmp_path / "forked")
    assert {k: mine["environ"].pop(k) for k in job_env} == job_env
    assert {k: other["environ"].pop(k) for k in task_env(tmp_path / "plain")}
    assert mine["environ"] == other["environ"], "nothing but what a new interpreter adds"
    assert mine["c_getenv"] == "seen in forked", "C libraries see it too"
    assert mine["cwd"] == str(tmp_path / "forked")
    assert mine["argv"] == [str(tmp_path / "forked" / "facts.json")]
    (zygote,) = zygotes.running.values()
    assert mine["ppid"] == zygote == supervisor["recorder"], "its zygote records its exit"
    assert mine["sid"] == mine["pgid"] == mine["pid"] == supervisor["pid"], "its own session"
    assert mine["blocked_signals"] == other["blocked_signals"] == [], "no signal held back"
    assert (mine["threads"], mine["python_threads"]) == (1, 1), "no thread inherited"
    sockets = [t for t in mine["fds"].values() if t.startswith("socket:")]
    assert not sockets, "none of the zygote's sockets"
    assert set(mine["fds"]) <= set(other["fds"]), "no descriptor a plain task lacks"


def test_siblings_get_random_streams_of_their_own(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    _, first = forked(zygotes, tmp_path / "first", kind=role)
    _, second = forked(zygotes, tmp_path / "second", kind=role)
    for stream in ("random", "numpy", "torch"):
        assert first[stream] != second[stream], stream


def test_exit_codes_are_recorded_as_for_a_plain_start(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    assert forked(zygotes, tmp_path / "forked", "7", kind=role)[0] == 7
    assert plain(tmp_path / "plain", "7")[0] == 7
    assert forked(zygotes, tmp_path / "ok", kind=role)[0] == 0


@pytest.mark.parametrize("role", ["noop"])
def test_a_command_a_zygote_cannot_become_starts_plainly(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    other = TaskSpec(
        job_id="00000000zygote00",
        kind=role,
        image=f"probe-{role}",
        command=("/bin/true",),
        env={},
        retries=0,
        timeout_s=None,
    )
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    assert zygotes.start_pod(other, pod_dir, {}, stdout=1) is None


def test_an_images_light_kinds_fork_from_a_zygote_without_torch(tmp_path: Path) -> None:
    """noop and train run on one image; noop is light (`KindSpec.light`): its tasks come
    from a zygote of their own that never imported torch (forks and exits of a torch-sized
    process cost ~10 ms more), train's from the image's own, which did."""
    pool = Zygotes(tmp_path / "zygotes", python=sys.executable, system=task_env(tmp_path))
    light, heavy = (
        dataclasses.replace(spec(kind=kind), image="trainer") for kind in ("noop", "train")
    )
    try:
        deadline = time.monotonic() + 60
        while not (pool.ready(light) and pool.ready(heavy)):
            assert time.monotonic() < deadline, (tmp_path / "zygotes" / "zygotes.log").read_text()
            time.sleep(0.1)
        pids = pool.running
        assert set(pids) == {"trainer", "trainer (light)"}
        maps = {key: Path(f"/proc/{pid}/maps").read_text() for key, pid in pids.items()}
        assert "libtorch" in maps["trainer"]
        assert "libtorch" not in maps["trainer (light)"]
    finally:
        pool.close()


@pytest.mark.parametrize("role", ["train", "gan-train"])
def test_a_ready_zygote_holds_its_memory_in_huge_pages(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    """Where the kernel can (transparent huge pages not `never`, MADV_COLLAPSE: Linux 6.1+),
    most of a torch or SDV zygote's anonymous memory is in 2 MiB pages, which makes each
    fork cheap; where it cannot, the zygote still serves and its log says why."""
    (pid,) = zygotes.running.values()
    said = (tmp_path / "zygotes" / "zygotes.log").read_text()
    memory = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    )
    anonymous, huge = (int(memory[key].split()[0]) for key in ("Anonymous", "AnonHugePages"))
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    release = tuple(int(part) for part in os.uname().release.split(".")[:2])
    if thp.exists() and "[never]" not in thp.read_text() and release >= (6, 1):
        assert huge > anonymous // 2, said
        assert "huge pages: 0 MiB" not in said
    else:
        assert "huge pages: 0 MiB (refused:" in said


@pytest.mark.parametrize("role", ["noop"])
def test_a_zygote_hung_up_on_forks_nothing_it_was_asked_before(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    """The controller stops with requests still queued (it will not hear the answers, and
    the next controller starts those pods itself): the zygote forks none of them, and with
    no task to supervise it exits."""
    (pid,) = zygotes.running.values()
    os.kill(pid, signal.SIGSTOP)
    # stopped before the requests come (a SIGSTOP is delivered asynchronously: a zygote
    # still busy, e.g. forking its spare, could otherwise read the first request on its way)
    until(lambda: stopped(pid), "the zygote did not stop")
    pods = [tmp_path / "first", tmp_path / "second"]
    try:
        for pod_dir in pods:
            pod_dir.mkdir()
            read, write = os.pipe()
            assert zygotes.request(
                spec(str(pod_dir / "facts.json"), kind=role),
                pod_dir,
                task_env(pod_dir),
                stdout=write,
                on_reply=lambda pid: None,
            )
            os.close(write)
            os.close(read)
        zygotes.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists():  # reaped once it exits
        assert time.monotonic() < deadline, "the zygote did not exit"
        time.sleep(0.05)
    assert [p for p in pods if (p / "shim.json").exists()] == []


def children(pid: int) -> set[int]:
    """The processes `pid` forked that are still there."""
    found: set[int] = set()
    for thread in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (thread / "children").read_text().split()}
    return found


def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize("role", ["noop"])
def test_the_spare_a_zygote_keeps_ready_becomes_the_next_task(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    """Between requests the zygote keeps one child forked and ready (the fork off the
    request's path): the next pod's task is that child, and another spare takes its place."""
    (zygote,) = zygotes.running.values()
    until(lambda: len(children(zygote)) == 1, "no spare")
    (spare,) = children(zygote)
    pod_dir = tmp_path / "pod"
    code, facts = forked(zygotes, pod_dir, kind=role)
    assert (code, facts["pid"]) == (0, spare)
    until(lambda: len(children(zygote)) == 1, "no spare after the task")
    assert children(zygote) != {spare}


@pytest.mark.parametrize("role", ["noop"])
def test_a_spare_killed_while_it_waits_is_replaced_and_the_pod_still_forks(
    zygotes: Zygotes, role: str, tmp_path: Path
) -> None:
    (zygote,) = zygotes.running.values()
    until(lambda: len(children(zygote)) == 1, "no spare")
    (spare,) = children(zygote)
    os.kill(spare, signal.SIGKILL)
    until(lambda: spare not in children(zygote), "the killed spare was not reaped")
    code, facts = forked(zygotes, tmp_path / "pod", kind=role)
    assert code == 0
    assert facts["pid"] != spare
    assert read_started(tmp_path / "pod") is not None


@pytest.mark.parametrize("role", ["noop"])
def test_a_zygote_lets_its_spare_go_when_the_controller_hangs_up(
    zygotes: Zygotes, role: str
) -> None:
    (zygote,) = zygotes.running.values()
    until(lambda: len(children(zygote)) == 1, "no spare")
    (spare,) = children(zygote)
    zygotes.close()
    until(lambda: gone(spare), "the spare outlived its zygote's work")


def stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] == "T"


def gone(pid: int) -> bool:
    """Exited (reaped, or a zombie left to whoever adopted it)."""
    try:
        return ") Z" in Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
