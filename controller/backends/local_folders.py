"""The local backend's store: what Kubernetes keeps in etcd, a folder per job keeps here.

    {jobs}/{job_id}/job.json          the TaskSpec
                    params.json       params too large for an environment variable
                    finished.json     the terminal condition, once decided
                    deleted           present once the job was deleted (cancelled)
                    pods/{index}-{attempt}/
                        pod.json (made at; the deadline its supervisor keeps)
                        shim.json started.json (a plain start) exit.json
                        output.log termination-log shim.log (a plain supervisor's own)
                        stop.json (a forked task's SIGKILL time, once cancelled)
    {open-jobs}/{job_id}                  listed while the job may start pods or still has
                                          some running (so start-up reads these folders only)

Reading and writing these files, and nothing else: no processes, no decisions. Each JSON
file is written whole (a temporary file renamed over it), so a reader never sees half; one
that cannot be written (a full disk) leaves nothing, and neither does a pod's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_plan import Pod
from kubetask.controller.states import Condition
from kubetask.models import RECEIVED, Resources


@dataclass(frozen=True)
class PodStop:
    """When a pod's supervisor stops its task by itself, as a kubelet does at a pod's active
    deadline, with or without a controller: SIGTERM `at`, SIGKILL `grace_s` later."""

    at: datetime
    grace_s: float


def write_json(path: Path, data: object) -> None:
    write_whole(path, json.dumps(data))


def write_whole(path: Path, text: str) -> None:
    """Whole or not at all (a pod reading it as it is replaced sees the old or the new);
    one that cannot be written (the disk is full) leaves no temporary file behind."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_json(path: Path) -> dict[str, JsonValue] | None:
    try:
        data = json.loads(read_bytes(path))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_bytes(path: Path) -> bytes:
    """A small file whole, in three system calls (`Path.read_text` makes eight: these
    files are read at every sync of a job)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def spec_to_json(spec: TaskSpec) -> dict[str, JsonValue]:
    data: dict[str, JsonValue] = {
        **{field.name: getattr(spec, field.name) for field in fields(spec)},
        "secret_env": {name: list(ref) for name, ref in spec.secret_env.items()},
        "resources": spec.resources.model_dump(),
        "env": dict(spec.env),
        "command": list(spec.command),
        "labels": dict(spec.labels),
        "start_by": spec.start_by.isoformat() if spec.start_by else None,
    }
    return data


def spec_from_json(data: dict[str, JsonValue]) -> TaskSpec:
    fields: dict[str, Any] = dict(data)
    # as it was accepted, maybe by an older version (rules added since are not applied)
    fields["resources"] = Resources.model_validate(fields["resources"], context=RECEIVED)
    fields["command"] = tuple(fields["command"])
    start_by = fields.get("start_by")  # (a job file from before it was kept has none)
    fields["start_by"] = datetime.fromisoformat(start_by) if isinstance(start_by, str) else None
    return TaskSpec(**fields)


def read_started(pod_dir: Path) -> dict[str, JsonValue] | None:
    """That the pod's task started, `pid` and `started_at`: its supervisor's started.json
    (a plain start), or the shim.json of a task a zygote forked (the fork is its start: a
    plain start's shim.json has no `started_at`)."""
    shim = read_json(pod_dir / "shim.json")
    if shim is not None and "started_at" in shim:
        return shim
    return read_json(pod_dir / "started.json")


def ran(pod_dir: Path) -> bool:
    """The pod's task started, or its exit is recorded (one that could not start says why
    in its log): a pod whose folder is all there is of it never ran."""
    return read_started(pod_dir) is not None or (pod_dir / "exit.json").exists()


def read_pod(pod_dir: Path, index: int, attempt: int, *, alive: bool) -> Pod:
    """One pod as its folder shows it; `alive`: its supervisor still runs."""
    created = read_json(pod_dir / "pod.json") or {}
    started = read_started(pod_dir)
    exited = read_json(pod_dir / "exit.json")
    return Pod(
        index=index,
        attempt=attempt,
        created_at=datetime.fromisoformat(str(created.get("created_at")))
        if created
        else datetime.fromtimestamp(pod_dir.stat().st_mtime, UTC),
        started_at=datetime.fromisoformat(str(started["started_at"])) if started else None,
        finished_at=datetime.fromisoformat(str(exited["finished_at"])) if exited else None,
        exit_code=int(str(exited["exit_code"])) if exited else None,
        alive=alive,
    )


class JobFolders:
    """The job folders under `jobs`, one method per thing read or written."""

    def __init__(self, jobs: Path, *, listed: Path | None = None) -> None:
        self.jobs = jobs
        self.listed = listed or jobs.with_name("open-jobs")  # the jobs not yet done with
        self._listed_seen = False  # the list exists (it is never removed once there)

    def job_dir(self, job_id: str) -> Path:
        return self.jobs / job_id

    def job_ids(self) -> list[str]:
        """Every job with a spec, oldest first (ids sort by age)."""
        if not self.jobs.is_dir():
            return []
        return sorted(d.name for d in self.jobs.iterdir() if (d / "job.json").exists())

    def exists(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / "job.json").exists()

    def deleted(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / "deleted").exists()

    def ended(self, job_id: str) -> bool:
        """Deleted, or its terminal condition written: it starts no more pods."""
        job_dir = self.job_dir(job_id)
        return (job_dir / "deleted").exists() or (job_dir / "finished.json").exists()

    def write_job(self, spec: TaskSpec) -> bool:
        """Write the job's spec (listed first: a crash leaves no unlisted job); False (and
        nothing written) when it exists already."""
        if self.exists(spec.job_id):
            return False
        self._ensure_listed()  # before the job, or a list built later would miss it
        os.close(os.open(self.listed / spec.job_id, os.O_WRONLY | os.O_CREAT, 0o644))
        job_dir = self.job_dir(spec.job_id)
        for folder in (job_dir, job_dir / "pods"):
            with contextlib.suppress(FileExistsError):  # a crash left it without its spec
                folder.mkdir(parents=True)
        write_json(job_dir / "job.json", spec_to_json(spec))
        return True

    def listed_ids(self) -> list[str]:
        """The listed jobs, oldest first; a store from before the list gets one, built from
        a scan of every folder, once."""
        self._ensure_listed()
        return sorted(entry.name for entry in os.scandir(self.listed))

    def _ensure_listed(self) -> None:
        if self._listed_seen or self.listed.is_dir():
            self._listed_seen = True
            return
        building = self.listed.with_name(f"{self.listed.name}.building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        for job_id in self.job_ids():
            if not self.ended(job_id):
                (building / job_id).touch()
        os.replace(building, self.listed)

    def unlist(self, job_id: str) -> None:
        """The job is done with: it ended and none of its pods runs."""
        with contextlib.suppress(FileNotFoundError):
            (self.listed / job_id).unlink()

    def remove(self, job_id: str) -> None:
        """The job's folder and all in it (its spec and params, its pods' logs) gone."""
        self.unlist(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def mark_deleted(self, job_id: str) -> None:
        (self.job_dir(job_id) / "deleted").touch()

    def finished(self, job_id: str) -> Condition | None:
        """The terminal condition (one written before conditions had a time has none)."""
        data = read_json(self.job_dir(job_id) / "finished.json")
        if not data:
            return None
        at = data.pop("at", None)
        when = datetime.fromisoformat(at) if isinstance(at, str) else None
        return Condition(**data, at=when)  # type: ignore[arg-type]

    def write_finished(self, job_id: str, condition: Condition) -> None:
        at = condition.at.isoformat() if condition.at else None
        write_json(self.job_dir(job_id) / "finished.json", {**asdict(condition), "at": at})

    def params_file(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "params.json"

    # -- pods --------------------------------------------------------------------------
    def pod_dirs(self, job_id: str) -> list[tuple[Path, tuple[int, int]]]:
        """Each pod folder with its (index, attempt), in that order."""
        pods_dir = self.job_dir(job_id) / "pods"
        try:
            names = os.listdir(pods_dir)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            index, _, attempt = name.partition("-")
            if index.isdigit() and attempt.isdigit():
                found.append((pods_dir / name, (int(index), int(attempt))))
        return sorted(found, key=lambda item: item[1])

    def latest_pod_dirs(self, job_id: str) -> dict[int, Path]:
        """Each completion index's last attempt that ran (`ran`), else its last attempt."""
        latest: dict[int, Path] = {}
        latest_ran: dict[int, Path] = {}
        for pod_dir, (index, _) in self.pod_dirs(job_id):  # by attempt: the last one wins
            latest[index] = pod_dir
            if ran(pod_dir):
                latest_ran[index] = pod_dir
        return {**latest, **latest_ran}

    def new_pod_dir(
        self, job_id: str, index: int, attempt: int, *, now: datetime, stop: PodStop | None = None
    ) -> Path:
        """The pod's folder, with its creation time and when its supervisor is to stop its
        task (the job's deadline); raises OSError (and leaves no folder, so the attempt is
        not used up) when it cannot be made whole."""
        pod_dir = self.job_dir(job_id) / "pods" / f"{index}-{attempt}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        made: dict[str, JsonValue] = {"created_at": now.isoformat()}
        if stop is not None:
            made |= {"stop_at": stop.at.timestamp(), "grace_s": stop.grace_s}
        try:
            write_json(pod_dir / "pod.json", made)
        except OSError:
            self.remove_pod_dir(pod_dir)
            raise
        return pod_dir

    def remove_pod_dir(self, pod_dir: Path) -> None:
        """A pod that was never started (its folder could not be made whole)."""
        shutil.rmtree(pod_dir, ignore_errors=True)

    def load(self, job_id: str, *, alive: Callable[[Path], bool]) -> tuple[TaskSpec, list[Pod]]:
        """The spec and the pods; `alive(pod_dir)`: whether that pod's supervisor runs."""
        return self.spec(job_id), self.pods(job_id, alive=alive)

    def spec(self, job_id: str) -> TaskSpec:
        """The job's spec (written once, never changed); raises when its file is damaged."""
        return spec_from_json(read_json(self.job_dir(job_id) / "job.json") or {})

    def pods(self, job_id: str, *, alive: Callable[[Path], bool]) -> list[Pod]:
        """The job's pods, in (index, attempt) order: what changes while a job goes on."""
        return [
            read_pod(pod_dir, index, attempt, alive=alive(pod_dir))
            for pod_dir, (index, attempt) in self.pod_dirs(job_id)
        ]

    def termination_messages(self, job_id: str) -> dict[int, str]:
        messages: dict[int, str] = {}
        for index, pod_dir in self.latest_pod_dirs(job_id).items():
            with contextlib.suppress(OSError):
                messages[index] = (pod_dir / "termination-log").read_text()
        return messages

    def logs(self, job_id: str, *, tail: int | None) -> str | None:
        """The last attempts' output, each index under a header when there are several."""
        if not self.exists(job_id):
            return None
        latest = self.latest_pod_dirs(job_id)
        if not latest:
            return None
        parts = []
        for index, pod_dir in sorted(latest.items()):
            with contextlib.suppress(OSError):
                text = (pod_dir / "output.log").read_text(errors="replace")
                parts.append(text if len(latest) == 1 else f"==> index {index} <==\n{text}")
        lines = "".join(parts).splitlines(keepends=True)
        return "".join(lines[-tail:] if tail else lines)
