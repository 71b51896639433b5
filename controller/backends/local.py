"""The local backend: every task is an OS process on this machine, started exactly as its
container would be (same command, same environment), under a small supervisor (shim.py).

Three rooms, as in Kubernetes: the job folders are the store (local_folders.py), the
supervisor is the kubelet (local_supervisor.py), and this module is the Backend port plus
the Job controller's sync step. Decisions (retries, deadlines, what to start) are the pure
functions of local_plan.py.

`observe` only reads. Pods are started by `step` alone: after a create or a delete, when a
pod exits (a slot is free), when a job's timer fires (a backoff or a deadline), and every
second from the poller as a safety net. So the controller can stop at any moment: on start
it adopts the supervisors still running, reads the exits it missed and steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from datetime import datetime
from pathlib import Path

from pydantic import JsonValue

from kubetask.controller.backends import local_plan
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_folders import JobFolders, spec_from_json, spec_to_json
from kubetask.controller.backends.local_gpus import visible_gpus
from kubetask.controller.backends.local_supervisor import Supervisor
from kubetask.controller.backends.local_ttl import remove_expired
from kubetask.controller.clock import Clock, utcnow
from kubetask.controller.errors import FieldError
from kubetask.controller.records import JobStatus
from kubetask.controller.redaction import redact_env
from kubetask.controller.states import Observation
from kubetask.models import DEFAULT_TENANT, BackendRef, JobRequest

__all__ = ["LocalBackend", "spec_from_json", "spec_to_json"]

log = logging.getLogger("kubetask.local")

POLL_INTERVAL_S = 1.0
SWEEP_INTERVAL_S = 600.0  # how often finished jobs' folders are checked against the TTL


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
        clock: Clock = utcnow,
    ) -> None:
        self._clock = clock
        self._gpus = gpus  # None: as many as this machine shows (local_gpus.py)
        self._folders = JobFolders(root / "jobs")
        self._finished_ttl_s = finished_ttl_s  # finished jobs' folders removed after this
        self._slots = slots
        self._retry_backoff_s = retry_backoff_s
        self._python = python
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self._supervisor = Supervisor(
            folders=self._folders, python=python, on_change=self._notify, on_exit=self._on_exit
        )
        self._open: set[str] = set()  # jobs that may still start pods
        self._waiting: dict[str, str] = {}  # job -> why it waits for a slot
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._poller: asyncio.Task[None] | None = None
        self._next_sweep = 0.0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Adopt what runs, read the exits that happened while no controller listened."""
        self._folders.jobs.mkdir(parents=True, exist_ok=True)
        self._remove_expired()
        for job_id in self._folders.job_ids():
            try:
                self._supervisor.adopt(job_id)
            except Exception:  # a damaged folder: that job's syncs will say so, not start-up
                log.exception("adopting local job %s", job_id)
            if not self._folders.ended(job_id):  # an ended one the store still has open
                self._open.add(job_id)  # is the reconciler's resync's, which reads only those
                self._notify(job_id)
        self.step()
        self._poller = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        """Stop watching; the tasks keep running and are adopted by the next start."""
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._supervisor.close()
        for timer in self._timers.values():
            timer.cancel()

    # -- the Backend interface ---------------------------------------------------------
    async def create(self, spec: TaskSpec) -> None:
        if not self._folders.write_job(spec):
            return
        self._open.add(spec.job_id)
        self._notify(spec.job_id)
        self.step()

    async def delete(self, job_id: str) -> None:
        if not self._folders.exists(job_id):
            return
        self._folders.mark_deleted(job_id)
        self._close_job(job_id)
        self._supervisor.terminate(job_id)
        self._notify(job_id)
        self.step()

    async def observe(self, job_id: str) -> Observation | None:
        """The job as its folder shows it; reads only (`step` starts what should run)."""
        if not self._folders.exists(job_id) or self._folders.deleted(job_id):
            return None
        spec, pods = self._folders.load(job_id, alive=self._supervisor.watches)
        return local_plan.observe(
            spec,
            pods,
            condition=self._folders.finished(job_id),
            waiting_for_slot=self._waiting.get(job_id),
        )

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        return self._folders.termination_messages(job_id)

    async def logs(self, job_id: str, *, tail: int | None) -> str | None:
        return self._folders.logs(job_id, tail=tail)

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
        return BackendRef(backend="local", name=str(self._folders.job_dir(job_id)))

    def render(self, spec: TaskSpec) -> dict[str, JsonValue]:
        shown: dict[str, JsonValue] = dict(redact_env(spec.env))  # URLs' passwords masked
        return {
            "backend": "local",
            "folder": str(self._folders.job_dir(spec.job_id)),
            "command": [self._python, *spec.command[1:]],
            "spec": {**spec_to_json(spec), "env": shown},
        }

    # -- the job controller ------------------------------------------------------------
    def step(self) -> None:
        """Sync every open job: write the terminal conditions decided, start what should
        run while slots are free, set each job's next wake-up."""
        for job_id in sorted(self._open):  # ids sort by age: the oldest job gets a slot first
            try:
                self._sync(job_id)
            except Exception:  # one job's bad folder never stops the others (nor start-up):
                log.exception("local job %s", job_id)  # observe raises it to the reconciler

    def _sync(self, job_id: str) -> None:
        """Decide the terminal condition or start what should run, then set a wake-up."""
        if job_id not in self._open:
            return
        spec, pods = self._folders.load(job_id, alive=self._supervisor.watches)
        now = self._clock()
        condition = self._folders.finished(job_id) or local_plan.terminal_condition(spec, pods, now)
        if condition is not None:
            self._folders.write_finished(job_id, condition)
            self._close_job(job_id)
            self._supervisor.terminate(job_id)
            self._notify(job_id)
            return
        plan = local_plan.plan_pods(spec, pods, now=now, backoff_base_s=self._retry_backoff_s)
        waiting = self._waiting.pop(job_id, None)
        for index, attempt in plan.start:
            if self._supervisor.running >= self._slots:
                self._waiting[job_id] = f"waiting for a free slot ({self._slots} in use)"
                break
            self._supervisor.spawn(spec, index, attempt, now=self._clock())
        if self._waiting.get(job_id) != waiting:
            self._notify(job_id)  # observe tells of the wait (or its end) from now on
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

    def _on_exit(self, job_id: str) -> None:
        self._notify(job_id)
        self.step()  # a slot is free

    def _remove_expired(self) -> None:
        if self._finished_ttl_s is not None:
            jobs = self._folders.jobs
            for job_id in remove_expired(jobs, now=time.time(), ttl_s=self._finished_ttl_s):
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
            self._supervisor.check_exits()
            self.step()  # level-triggered: whatever an event missed is started here

    def _notify(self, job_id: str) -> None:
        self.changes.put_nowait(job_id)
