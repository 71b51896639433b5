"""The local backend on a full disk: a pod whose folder cannot be made whole leaves nothing
behind and uses up no attempt (it is made again once there is room), no file is left half
written, and a job's log is that of the latest pod that ran, not of one that never
started."""

from __future__ import annotations

import asyncio
import errno
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from kubetask import env
from kubetask.controller.backends import shim
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local import LocalBackend
from kubetask.controller.backends.local_folders import JobFolders, write_json
from kubetask.controller.backends.local_supervisor import MAX_ENV_PARAMS, Supervisor
from kubetask.controller.clock import utcnow
from tests.unit.test_local_step import JOB_ID, spec


def fill_disk_for(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Writing a file of one of `names` fails as on a full disk: the file is made (an empty
    one takes no block), its content does not fit."""
    write_text = Path.write_text

    def full(path: Path, data: str, *args: object, **kwargs: object) -> int:
        if path.name not in names:
            return write_text(path, data, *args, **kwargs)  # type: ignore[arg-type]
        path.touch()
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(Path, "write_text", full)


def pod_names(folders: JobFolders) -> list[str]:
    return [pod_dir.name for pod_dir, _ in folders.pod_dirs(JOB_ID)]


def test_a_file_that_cannot_be_written_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_disk_for(monkeypatch, "finished.tmp")
    with pytest.raises(OSError, match="No space left"):
        write_json(tmp_path / "finished.json", {"type": "Complete"})
    assert list(tmp_path.iterdir()) == []


def test_a_pod_folder_that_cannot_be_made_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = JobFolders(tmp_path / "jobs")
    folders.write_job(spec())
    fill_disk_for(monkeypatch, "pod.tmp")
    with pytest.raises(OSError, match="No space left"):
        folders.new_pod_dir(JOB_ID, 0, 1, now=utcnow())
    assert pod_names(folders) == []


async def finished(backend: LocalBackend, *, within_s: float) -> None:
    """The job ended (its pods' processes reaped), within `within_s`."""
    for _ in range(int(within_s / 0.01)):
        observation = await backend.observe(JOB_ID)
        if observation is not None and observation.conditions:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the job did not end within {within_s} s")


async def start_on_a_full_disk(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A job created while no pod folder can be made, then stepped once there is room: its
    pods' folders then."""
    backend = LocalBackend(root=root, slots=1, zygotes=False)
    folders = JobFolders(root / "jobs")
    try:
        with monkeypatch.context() as full:
            fill_disk_for(full, "pod.tmp")
            await backend.create(spec())  # its sync cannot make the pod (and says so)
            backend.step()  # nor can a second try
        backend.step()  # room again
        await finished(backend, within_s=10)
        return pod_names(folders)
    finally:
        await backend.stop()


def test_a_pod_that_cannot_be_made_uses_up_no_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert asyncio.run(start_on_a_full_disk(tmp_path, monkeypatch)) == ["0-1"]


async def made_once_there_is_room(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A running backend's job created while no pod folder can be made: its pods' folders
    once there is room, with nothing but the backend's own timers to try again."""
    backend = LocalBackend(root=root, slots=1, zygotes=False)
    folders = JobFolders(root / "jobs")
    await backend.start()
    try:
        with monkeypatch.context() as full:
            fill_disk_for(full, "pod.tmp")
            await backend.create(spec())
        await finished(backend, within_s=10)  # well within the safety net's 30 s resync
        return pod_names(folders)
    finally:
        await backend.stop()


def test_a_pod_that_could_not_be_made_is_tried_again_shortly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert asyncio.run(made_once_there_is_room(tmp_path, monkeypatch)) == ["0-1"]


async def spawn(folders: JobFolders, task: TaskSpec) -> Supervisor:
    """A plain supervisor (no zygote) that was asked to start the task's first pod."""
    supervisor = Supervisor(
        folders=folders,
        python=sys.executable,
        on_change=lambda job_id: None,
        on_exit=lambda job_id: None,
        zygotes=False,
    )
    supervisor.spawn(task, 0, 1, now=utcnow())
    return supervisor


def test_a_pod_whose_large_params_cannot_be_written_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = JobFolders(tmp_path / "jobs")
    task = spec(env={env.JOB_ID: JOB_ID, env.PARAMS: "x" * (MAX_ENV_PARAMS + 1)})
    folders.write_job(task)
    folders.params_file(JOB_ID).write_text("the last pod's")  # a retry replaces it
    fill_disk_for(monkeypatch, "params.tmp")
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(spawn(folders, task))
    assert pod_names(folders) == []
    assert folders.params_file(JOB_ID).read_text() == "the last pod's"  # whole, not cut


def test_a_plain_supervisor_that_cannot_be_recorded_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its shim.json cannot be written: no controller could find it again (it is stopped,
    so its task never runs unwatched); its failure to start is recorded where it can be,
    and a pod that cannot even record that leaves no folder."""
    folders = JobFolders(tmp_path / "jobs")
    marker = tmp_path / "ran"
    task = spec(command=("python", "-c", f"open({str(marker)!r}, 'w')"))
    folders.write_job(task)
    with monkeypatch.context() as full:
        fill_disk_for(full, "shim.tmp")
        supervisor = asyncio.run(spawn(folders, task))
    assert supervisor.running == 0
    pod_dir = folders.job_dir(JOB_ID) / "pods" / "0-1"
    assert json.loads((pod_dir / "exit.json").read_text())["exit_code"] == 127
    deadline = time.monotonic() + 3.0  # a supervisor left running starts its task by then
    while time.monotonic() < deadline:
        assert not marker.exists(), "a task ran that no one watches"
        time.sleep(0.05)
    assert not (pod_dir / "started.json").exists()
    fill_disk_for(monkeypatch, "shim.tmp", "exit.tmp")
    task = spec(command=("python", "-c", "pass"), job_id="0000000000000002")
    folders.write_job(task)
    asyncio.run(spawn(folders, task))
    assert folders.pod_dirs(task.job_id) == []


def test_the_log_is_the_latest_pod_that_ran(tmp_path: Path) -> None:
    """A pod that never started (its folder all there is of it) is not the latest pod: the
    log and the termination message are its predecessor's."""
    folders = JobFolders(tmp_path / "jobs")
    folders.write_job(spec())
    ran = folders.new_pod_dir(JOB_ID, 0, 1, now=utcnow())
    write_json(ran / "started.json", {"pid": 1, "started_at": utcnow().isoformat()})
    (ran / "output.log").write_text("noop task succeeded\n")
    (ran / "termination-log").write_text('{"ok": true}')
    folders.new_pod_dir(JOB_ID, 0, 2, now=utcnow())  # never started
    assert folders.logs(JOB_ID, tail=None) == "noop task succeeded\n"
    assert folders.termination_messages(JOB_ID) == {0: '{"ok": true}'}
    not_started = folders.new_pod_dir(JOB_ID, 0, 3, now=utcnow())
    (not_started / "output.log").write_text("cannot start the task: no python\n")
    write_json(not_started / "exit.json", {"exit_code": 127, "finished_at": "x"})
    assert folders.logs(JOB_ID, tail=None) == "cannot start the task: no python\n", (
        "one that could not start says why"
    )


def test_a_plain_supervisor_records_an_exit_once_there_is_room(tmp_path: Path) -> None:
    """The exit of a task that ran to its end, not writable yet (here: its temporary file
    is in the way): written again until it is, the supervisor alive meanwhile (the
    controller sees the pod running, and starts nothing again); given up when the pod's
    folder is gone."""
    pod_dir = tmp_path / "pod"
    (pod_dir / "exit.tmp").mkdir(parents=True)  # writing it fails as a full disk would
    status = 7 << 8  # exit code 7, as os.waitpid gives it
    writer = threading.Thread(
        target=shim.record_exit, args=(pod_dir, 2**22, status), kwargs={"retry_s": 0.01}
    )
    writer.start()
    time.sleep(0.2)
    assert writer.is_alive()
    assert not (pod_dir / "exit.json").exists()
    (pod_dir / "exit.tmp").rmdir()  # room again
    writer.join(5)
    assert not writer.is_alive()
    assert json.loads((pod_dir / "exit.json").read_text())["exit_code"] == 7

    gone = tmp_path / "purged"
    shim.record_exit(gone, 2**22, status, retry_s=0.01)  # returns: nothing to record in
