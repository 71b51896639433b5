"""The local backend's rooms: observe only reads (pods start in the sync step), the folder
layout round-trips a spec, and the task's environment is the container's."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local import LocalBackend
from kubetask.controller.backends.local_folders import JobFolders, spec_from_json, spec_to_json
from kubetask.controller.backends.local_supervisor import MAX_ENV_PARAMS, cpu_share, task_env
from kubetask.controller.states import Condition, Observation
from kubetask.models import Resources

JOB_ID = "0000000000000001"


def spec(**changes: object) -> TaskSpec:
    fields: dict[str, object] = {
        "job_id": JOB_ID,
        "kind": "noop",
        "image": "",
        "command": ("python", "-c", "pass"),
        "env": {env.JOB_ID: JOB_ID},
        "retries": 0,
        "timeout_s": None,
    }
    fields.update(changes)
    return TaskSpec(**fields)  # type: ignore[arg-type]


async def _retry_due(root: Path) -> tuple[list[str], list[Observation | None], list[str]]:
    """A job whose first pod failed, its retry due once the clock passes the backoff; the
    pod folders before and after it is observed twice, and after the backend's step."""
    now = [datetime.now(UTC)]
    backend = LocalBackend(  # 2 slots: the failed pod's supervisor may not have exited yet
        root=root, slots=2, retry_backoff_s=3600, clock=lambda: now[0]
    )
    folders = JobFolders(root / "jobs")

    def pods() -> list[str]:
        return [p.name for p, _ in folders.pod_dirs(JOB_ID)]

    try:
        await backend.create(spec(command=("python", "-c", "raise SystemExit(1)"), retries=1))
        for _ in range(1000):
            observation = await backend.observe(JOB_ID)
            if observation is not None and observation.failed:
                break
            await asyncio.sleep(0.01)
        failed = pods()
        now[0] += timedelta(hours=2)  # the backoff has passed; no timer fired yet
        seen = [await backend.observe(JOB_ID), await backend.observe(JOB_ID)]
        observed = pods()
        backend.step()
        stepped = pods()
        for _ in range(1000):  # the retry fails too: the job ends, its processes reaped
            observation = await backend.observe(JOB_ID)
            if observation is not None and observation.conditions:
                break
            await asyncio.sleep(0.01)
        return failed, seen, [*observed, "|", *stepped]
    finally:
        await backend.stop()


def test_observe_starts_nothing_the_step_does(tmp_path: Path) -> None:
    failed, seen, pods = asyncio.run(_retry_due(tmp_path))
    assert failed == ["0-1"]
    first, second = seen
    assert first == second
    assert first is not None
    assert first.failed == 1
    assert first.active == 0
    assert not first.conditions  # a retry is left
    assert pods == ["0-1", "|", "0-1", "0-2"]  # observed twice: nothing; stepped: the retry


def test_a_spec_round_trips_through_its_folder(tmp_path: Path) -> None:
    folders = JobFolders(tmp_path / "jobs")
    original = spec(resources=Resources(cpu="2", gpu=1), labels={"team": "a"}, completions=3)
    assert folders.write_job(original)
    assert not folders.write_job(spec(retries=5))  # exists: nothing overwritten
    loaded, pods = folders.load(JOB_ID, alive=lambda _: False)
    assert loaded == original == spec_from_json(spec_to_json(original))
    assert pods == []
    assert folders.job_ids() == [JOB_ID]
    assert not folders.ended(JOB_ID)
    folders.mark_deleted(JOB_ID)
    assert folders.ended(JOB_ID)
    assert folders.deleted(JOB_ID)


def test_the_task_gets_the_containers_environment_and_large_params_apart(
    tmp_path: Path,
) -> None:
    system = {"PATH": "/bin", "HOME": "/root", "SECRET": "x"}
    small, none = task_env(spec(completions=2), tmp_path, 1, system=system)
    assert none is None
    assert small == {
        "PATH": "/bin",
        env.JOB_ID: JOB_ID,
        "HOME": str(tmp_path),
        env.TERMINATION_LOG: str(tmp_path / "termination-log"),
        env.COMPLETION_INDEX: "1",
        "OMP_NUM_THREADS": str(cpu_share(1)),  # the machine's CPUs, one worker at a time
    }
    params = "x" * (MAX_ENV_PARAMS + 1)
    large, apart = task_env(spec(env={env.PARAMS: params}), tmp_path, 0, system=system)
    assert apart == params
    assert env.PARAMS not in large
    assert env.COMPLETION_INDEX not in large


def test_start_tells_of_the_open_jobs_only(tmp_path: Path) -> None:
    """A restart reads the finished jobs' records no more: only jobs that may still run are
    announced (one that ended while no controller listened is the reconciler's resync's,
    from the store's set of unfinished jobs)."""
    folders = JobFolders(tmp_path / "jobs")
    ended, deleted, running = "0000000000000001", "0000000000000002", "0000000000000003"
    for job_id in (ended, deleted, running):
        folders.write_job(spec(job_id=job_id, env={env.JOB_ID: job_id}))
    folders.write_finished(ended, Condition("Complete", reason="Completed", message="done"))
    folders.mark_deleted(deleted)

    async def announced() -> set[str]:
        backend = LocalBackend(root=tmp_path, slots=0)  # starts nothing: it only tells
        await backend.start()
        try:
            found = set()
            while not backend.changes.empty():
                found.add(backend.changes.get_nowait())
            return found
        finally:
            await backend.stop()

    assert asyncio.run(announced()) == {running}


def test_a_terminal_condition_keeps_its_time_in_the_jobs_folder(tmp_path: Path) -> None:
    """The local Job controller dates the condition it writes (finished.json), as the
    Kubernetes one does; a file written before conditions had a time reads without one."""
    folders = JobFolders(tmp_path / "jobs")
    dated, older = "0000000000000001", "0000000000000002"
    for job_id in (dated, older):
        folders.write_job(spec(job_id=job_id, env={env.JOB_ID: job_id}))
    at = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    folders.write_finished(dated, Condition("Complete", reason="Completed", message="ok", at=at))
    old = {"type": "Failed", "status": True, "reason": "BackoffLimitExceeded", "message": "x"}
    (folders.job_dir(older) / "finished.json").write_text(json.dumps(old))
    assert folders.finished(dated) == Condition("Complete", reason="Completed", message="ok", at=at)
    assert folders.finished(older) == Condition(
        "Failed", reason="BackoffLimitExceeded", message="x"
    )


def test_a_job_file_an_older_version_wrote_is_read_as_it_was_accepted() -> None:
    """A running job adopted after an upgrade: its resources as accepted then (a GPU model
    without a GPU, refused since), not a failure to read its folder."""
    written = spec_to_json(spec())
    written["resources"] = {"gpu": 0, "gpu_type": "a100"}
    assert spec_from_json(written).resources.gpu_type == "a100"
