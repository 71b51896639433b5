"""The local backend: every task is an OS process on this machine, started exactly as its
container would be (same command, same environment), under a small supervisor (shim.py).

What Kubernetes keeps in etcd, this backend keeps in a folder per job:

    {root}/jobs/{job_id}/job.json          the TaskSpec
                         finished.json     the terminal condition, once decided
                         deleted           present once the job was deleted (cancelled)
                         pods/{index}-{attempt}/
                             pod.json shim.json started.json exit.json
                             output.log termination-log

so the controller can stop at any moment: on start it adopts the supervisors still running
and reads the exits it missed. Decisions (retries, deadlines, what to start) are the pure
functions of local_plan.py; this module only does the I/O. A process exit is noticed
through a pidfd at once (a poll every second elsewhere and as a safety net).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from kubetask import env
from kubetask.controller.backends import local_plan
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_gpus import visible_gpus
from kubetask.controller.backends.local_plan import Pod
from kubetask.controller.backends.local_ttl import remove_expired
from kubetask.controller.errors import FieldError
from kubetask.controller.records import JobStatus
from kubetask.controller.redaction import redact_env
from kubetask.controller.states import Condition, Observation
from kubetask.models import DEFAULT_TENANT, BackendRef, JobRequest, Resources

log = logging.getLogger("kubetask.local")

POLL_INTERVAL_S = 1.0
SWEEP_INTERVAL_S = 600.0  # how often finished jobs' folders are checked against the TTL
SHIM = str(Path(__file__).with_name("shim.py"))
MAX_ENV_PARAMS = 32 * 1024  # one environment string may not pass 128 KiB on Linux
EXIT_CANNOT_START = 127
SYSTEM_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass
class _LivePod:
    job_id: str
    pid: int
    proc: subprocess.Popen[bytes] | None = None  # None for a supervisor adopted after restart
    pidfd: int | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, JsonValue] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int, pod_dir: Path) -> bool:
    """True if `pid` runs and (where /proc tells) is the supervisor of `pod_dir`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return str(pod_dir).encode() in cmdline.read_bytes()
    return True


def spec_to_json(spec: TaskSpec) -> dict[str, JsonValue]:
    data: dict[str, JsonValue] = {
        **asdict(spec),
        "resources": spec.resources.model_dump(),
        "env": dict(spec.env),
        "command": list(spec.command),
        "labels": dict(spec.labels),
    }
    return data


def spec_from_json(data: dict[str, JsonValue]) -> TaskSpec:
    fields: dict[str, Any] = dict(data)
    fields["resources"] = Resources.model_validate(fields["resources"])
    fields["command"] = tuple(fields["command"])
    return TaskSpec(**fields)


class LocalBackend:
    """Runs each task as a supervised local process; at most `slots` at once."""

    def __init__(
        self,
        *,
        root: Path,
        slots: int,
        retry_backoff_s: float = 1.0,
        finished_ttl_s: float | None = None,
        python: str = sys.executable,
        gpus: int | None = None,
    ) -> None:
        self._gpus = gpus  # None: as many as this machine shows (local_gpus.py)
        self._jobs = root / "jobs"
        self._finished_ttl_s = finished_ttl_s  # finished jobs' folders removed after this
        self._slots = slots
        self._retry_backoff_s = retry_backoff_s
        self._python = python
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self._open: set[str] = set()  # jobs that may still start pods
        self._live: dict[Path, _LivePod] = {}
        self._waiting: dict[str, str] = {}  # job -> why it waits for a slot
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._poller: asyncio.Task[None] | None = None
        self._next_sweep = 0.0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Adopt what runs, read the exits that happened while no controller listened."""
        self._jobs.mkdir(parents=True, exist_ok=True)
        self._remove_expired()
        for job_dir in sorted(self._jobs.iterdir()):
            if not (job_dir / "job.json").exists():
                continue
            try:
                self._adopt(job_dir)
            except Exception:  # a damaged folder: that job's syncs will say so, not start-up
                log.exception("adopting local job %s", job_dir.name)
            if not (job_dir / "deleted").exists() and not (job_dir / "finished.json").exists():
                self._open.add(job_dir.name)
            self._notify(job_dir.name)
        self._sync_all()
        self._poller = asyncio.create_task(self._poll_forever())

    def _adopt(self, job_dir: Path) -> None:
        """Watch the job's supervisors that still run."""
        for pod_dir, _ in self._pod_dirs(job_dir):
            shim = _read_json(pod_dir / "shim.json")
            if shim and not (pod_dir / "exit.json").exists():
                pid = int(str(shim["pid"]))
                if _pid_alive(pid, pod_dir):
                    self._watch(pod_dir, _LivePod(job_dir.name, pid))

    async def stop(self) -> None:
        """Stop watching; the tasks keep running and are adopted by the next start."""
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for pod_dir in list(self._live):
            self._unwatch(pod_dir)
        for timer in self._timers.values():
            timer.cancel()

    # -- the Backend interface ---------------------------------------------------------
    async def create(self, spec: TaskSpec) -> None:
        job_dir = self._jobs / spec.job_id
        if (job_dir / "job.json").exists():
            return
        (job_dir / "pods").mkdir(parents=True, exist_ok=True)
        _write_json(job_dir / "job.json", spec_to_json(spec))
        self._open.add(spec.job_id)
        self._notify(spec.job_id)
        self._sync_all()

    async def delete(self, job_id: str) -> None:
        job_dir = self._jobs / job_id
        if not (job_dir / "job.json").exists():
            return
        (job_dir / "deleted").touch()
        self._close_job(job_id)
        self._terminate_pods(job_id)
        self._notify(job_id)
        self._sync_all()

    async def observe(self, job_id: str) -> Observation | None:
        job_dir = self._jobs / job_id
        if not (job_dir / "job.json").exists() or (job_dir / "deleted").exists():
            return None
        self._sync(job_id)
        spec, pods = self._load(job_id)
        return local_plan.observe(
            spec,
            pods,
            condition=self._finished(job_id),
            waiting_for_slot=self._waiting.get(job_id),
        )

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        messages: dict[int, str] = {}
        for pod_dir in self._latest_pod_dirs(job_id).values():
            with contextlib.suppress(OSError):
                messages[int(pod_dir.name.split("-")[0])] = (
                    pod_dir / "termination-log"
                ).read_text()
        return messages

    async def logs(self, job_id: str, *, tail: int | None) -> str | None:
        if not (self._jobs / job_id / "job.json").exists():
            return None
        latest = self._latest_pod_dirs(job_id)
        parts = []
        for index, pod_dir in sorted(latest.items()):
            with contextlib.suppress(OSError):
                text = (pod_dir / "output.log").read_text(errors="replace")
                parts.append(text if len(latest) == 1 else f"==> index {index} <==\n{text}")
        lines = "".join(parts).splitlines(keepends=True)
        return "".join(lines[-tail:] if tail else lines)

    async def record_transition(self, job_id: str, status: JobStatus) -> None:
        """Nothing beyond the state events: the job's folder has no event log of its own."""

    def refusals(self, request: JobRequest) -> list[FieldError]:
        """A GPU this machine does not have: the task would run on the CPU instead. (cpu and
        memory are not enforced here: the README says why.)"""
        asked = request.resources.gpu
        have = visible_gpus() if self._gpus is None else self._gpus
        if asked <= have:
            return []
        shown = "no GPU" if have == 0 else f"{have} GPU{'s' if have > 1 else ''}"
        message = (
            f"the local backend runs tasks on this machine, which has {shown}: it cannot "
            f"give {asked}; ask for at most {have}, or use the kubernetes backend"
        )
        return [FieldError(("resources", "gpu"), message, "backend")]

    def ref(self, job_id: str, *, tenant: str = DEFAULT_TENANT) -> BackendRef:
        return BackendRef(backend="local", name=str(self._jobs / job_id))

    def render(self, spec: TaskSpec) -> dict[str, JsonValue]:
        shown: dict[str, JsonValue] = dict(redact_env(spec.env))  # URLs' passwords masked
        return {
            "backend": "local",
            "folder": str(self._jobs / spec.job_id),
            "command": [self._python, *spec.command[1:]],
            "spec": {**spec_to_json(spec), "env": shown},
        }

    # -- the job controller ------------------------------------------------------------
    def _sync_all(self) -> None:
        for job_id in sorted(self._open):  # ids sort by age: the oldest job gets a slot first
            try:
                self._sync(job_id)
            except Exception:  # one job's bad folder never stops the others (nor start-up):
                log.exception("local job %s", job_id)  # its own syncs raise it to the reconciler

    def _sync(self, job_id: str) -> None:
        """Decide the terminal condition or start what should run, then set a wake-up."""
        if job_id not in self._open:
            return
        spec, pods = self._load(job_id)
        now = _utcnow()
        condition = self._finished(job_id) or local_plan.terminal_condition(spec, pods, now)
        if condition is not None:
            _write_json(self._jobs / job_id / "finished.json", asdict(condition))
            self._close_job(job_id)
            self._terminate_pods(job_id)
            self._notify(job_id)
            return
        plan = local_plan.plan_pods(spec, pods, now=now, backoff_base_s=self._retry_backoff_s)
        self._waiting.pop(job_id, None)
        for index, attempt in plan.start:
            if len(self._live) >= self._slots:
                self._waiting[job_id] = f"waiting for a free slot ({self._slots} in use)"
                break
            self._spawn(spec, index, attempt)
        wake = min(
            (t for t in (plan.retry_at, local_plan.deadline(spec, pods)) if t is not None),
            default=None,
        )
        self._set_timer(job_id, wake, now)

    def _close_job(self, job_id: str) -> None:
        self._open.discard(job_id)
        self._waiting.pop(job_id, None)
        timer = self._timers.pop(job_id, None)
        if timer:
            timer.cancel()

    def _set_timer(self, job_id: str, wake: datetime | None, now: datetime) -> None:
        old = self._timers.pop(job_id, None)
        if old:
            old.cancel()
        if wake is not None:
            delay = max((wake - now).total_seconds(), 0.0) + 0.01
            self._timers[job_id] = asyncio.get_running_loop().call_later(
                delay, self._on_timer, job_id
            )

    def _on_timer(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        self._sync(job_id)
        self._notify(job_id)

    # -- pods --------------------------------------------------------------------------
    def _spawn(self, spec: TaskSpec, index: int, attempt: int) -> None:
        pod_dir = self._jobs / spec.job_id / "pods" / f"{index}-{attempt}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        _write_json(pod_dir / "pod.json", {"created_at": _utcnow().isoformat()})
        task_env = self._task_env(spec, pod_dir, index)
        command = [self._python if spec.command[0] == "python" else spec.command[0]]
        command += spec.command[1:]
        # -I -S: the supervisor needs only the standard library; skipping site-packages
        # halves its start-up.
        shim = [self._python, "-I", "-S", SHIM, str(pod_dir), str(spec.grace_s)]
        try:
            with (pod_dir / "shim.log").open("ab") as shim_log:
                proc = subprocess.Popen(
                    [*shim, "--", *command],
                    env=task_env,
                    cwd=pod_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=shim_log,
                    start_new_session=True,
                )
        except OSError as exc:  # the pod fails to start, as a container that cannot be created
            log.error("cannot start %s: %s", pod_dir, exc)
            (pod_dir / "output.log").write_text(f"cannot start the task: {exc}\n")
            _write_json(
                pod_dir / "exit.json",
                {"exit_code": EXIT_CANNOT_START, "finished_at": _utcnow().isoformat()},
            )
            self._notify(spec.job_id)
            return
        _write_json(pod_dir / "shim.json", {"pid": proc.pid})
        live = _LivePod(spec.job_id, proc.pid, proc)
        self._watch(pod_dir, live)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        asyncio.get_running_loop().add_reader(proc.stdout.fileno(), self._on_output, pod_dir)
        self._notify(spec.job_id)

    def _task_env(self, spec: TaskSpec, pod_dir: Path, index: int) -> dict[str, str]:
        """The container's environment (plus PATH and the like to find Python). Params too
        large for an environment variable go in a file, as a ConfigMap mount would."""
        task_env = {k: os.environ[k] for k in SYSTEM_ENV if k in os.environ}
        task_env.update(spec.env)
        task_env["HOME"] = str(pod_dir)
        task_env[env.TERMINATION_LOG] = str(pod_dir / "termination-log")
        if spec.completions > 1:
            task_env[env.COMPLETION_INDEX] = str(index)
        params = task_env.get(env.PARAMS, "")
        if len(params) > MAX_ENV_PARAMS:
            params_file = self._jobs / spec.job_id / "params.json"
            params_file.write_text(params)
            del task_env[env.PARAMS]
            task_env[env.PARAMS_FILE] = str(params_file)
        return task_env

    def _on_output(self, pod_dir: Path) -> None:
        """The supervisor said 'started' (or closed its stdout): the pod may be running."""
        live = self._live.get(pod_dir)
        if live is None or live.proc is None or live.proc.stdout is None:
            return
        data = b""
        with contextlib.suppress(BlockingIOError):
            data = live.proc.stdout.read() or b""
        if not data or data.endswith(b"\n"):
            asyncio.get_running_loop().remove_reader(live.proc.stdout.fileno())
            live.proc.stdout.close()
        self._notify(live.job_id)

    def _watch(self, pod_dir: Path, live: _LivePod) -> None:
        self._live[pod_dir] = live
        try:
            live.pidfd = os.pidfd_open(live.pid)
        except (AttributeError, OSError):
            return  # no pidfd here (or already gone): the poller notices the exit
        asyncio.get_running_loop().add_reader(live.pidfd, self._on_exit, pod_dir)

    def _unwatch(self, pod_dir: Path) -> _LivePod | None:
        live = self._live.pop(pod_dir, None)
        if live is None:
            return None
        loop = asyncio.get_running_loop()
        if live.pidfd is not None:
            loop.remove_reader(live.pidfd)
            os.close(live.pidfd)
        if live.proc is not None and live.proc.stdout is not None and not live.proc.stdout.closed:
            loop.remove_reader(live.proc.stdout.fileno())
            live.proc.stdout.close()
        return live

    def _on_exit(self, pod_dir: Path) -> None:
        live = self._unwatch(pod_dir)
        if live is None:
            return
        if live.proc is not None:
            live.proc.wait()  # reap our own child
        self._notify(live.job_id)
        self._sync_all()  # a slot is free

    def _remove_expired(self) -> None:
        if self._finished_ttl_s is not None:
            for job_id in remove_expired(self._jobs, now=time.time(), ttl_s=self._finished_ttl_s):
                log.info(
                    "job %s finished more than %.0f s ago: folder removed",
                    job_id,
                    self._finished_ttl_s,
                )
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL_S

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            if time.monotonic() >= self._next_sweep:
                self._remove_expired()
            for pod_dir, live in list(self._live.items()):
                gone = (
                    live.proc.poll() is not None if live.proc else not _pid_alive(live.pid, pod_dir)
                )
                if gone:
                    self._on_exit(pod_dir)

    def _terminate_pods(self, job_id: str) -> None:
        """SIGTERM each running supervisor; it gives the task its grace, then SIGKILL."""
        for live in self._live.values():
            if live.job_id == job_id:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(live.pid, signal.SIGTERM)

    def _notify(self, job_id: str) -> None:
        self.changes.put_nowait(job_id)

    # -- reading the folder ------------------------------------------------------------
    def _finished(self, job_id: str) -> Condition | None:
        data = _read_json(self._jobs / job_id / "finished.json")
        return Condition(**data) if data else None  # type: ignore[arg-type]

    def _pod_dirs(self, job_dir: Path) -> list[tuple[Path, tuple[int, int]]]:
        pods_dir = job_dir / "pods"
        if not pods_dir.exists():
            return []
        found = []
        for pod_dir in pods_dir.iterdir():
            index, _, attempt = pod_dir.name.partition("-")
            if index.isdigit() and attempt.isdigit():
                found.append((pod_dir, (int(index), int(attempt))))
        return sorted(found, key=lambda item: item[1])

    def _latest_pod_dirs(self, job_id: str) -> dict[int, Path]:
        latest: dict[int, Path] = {}
        for pod_dir, (index, _) in self._pod_dirs(self._jobs / job_id):
            latest[index] = pod_dir  # sorted by attempt: the last one wins
        return latest

    def _load(self, job_id: str) -> tuple[TaskSpec, list[Pod]]:
        job_dir = self._jobs / job_id
        spec = spec_from_json(_read_json(job_dir / "job.json") or {})
        pods = [
            self._read_pod(pod_dir, index, attempt)
            for pod_dir, (index, attempt) in self._pod_dirs(job_dir)
        ]
        return spec, pods

    def _read_pod(self, pod_dir: Path, index: int, attempt: int) -> Pod:
        created = _read_json(pod_dir / "pod.json") or {}
        started = _read_json(pod_dir / "started.json")
        exited = _read_json(pod_dir / "exit.json")
        return Pod(
            index=index,
            attempt=attempt,
            created_at=datetime.fromisoformat(str(created.get("created_at")))
            if created
            else datetime.fromtimestamp(pod_dir.stat().st_mtime, UTC),
            started_at=datetime.fromisoformat(str(started["started_at"])) if started else None,
            finished_at=datetime.fromisoformat(str(exited["finished_at"])) if exited else None,
            exit_code=int(str(exited["exit_code"])) if exited else None,
            alive=pod_dir in self._live,
        )
