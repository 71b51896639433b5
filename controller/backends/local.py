"""The local backend: every task is an OS process on this machine, started exactly as its
container would be (same command, same environment), under a supervisor: a small process
per pod (shim.py), or the warm zygote that forked it (zygote.py).

Three rooms, as in Kubernetes: the job folders are the store (local_folders.py), the
supervisor is the kubelet (local_supervisor.py), and this module is the Backend port plus
the Job controller's sync step. Decisions (retries, deadlines, what to start) are the pure
functions of local_plan.py.

`observe` only reads. Pods are started by the sync step alone, and an event costs what it
touches, not the number of open jobs: a create, a delete, a pod's exit or a job's timer syncs
that job, and a freed slot goes to the jobs waiting for one, oldest first, until the slots
are full (local_queue.py). A sync reads only the job's pods: its spec, written once, is kept
in memory. Every second the poller notices missed exits and syncs the jobs with pods running
or a timer due; every 30 s it syncs every open job, a few at a time, as the level-triggered
safety net. So the controller can stop at any moment: on start it adopts the supervisors
still running (of the listed jobs only, not of every folder), reads the exits it missed and
steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import JsonValue

from kubetask.controller.backends import local_plan
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_folders import (
    JobFolders,
    PodStop,
    spec_from_json,
    spec_to_json,
)
from kubetask.controller.backends.local_gpus import visible_gpus
from kubetask.controller.backends.local_queue import WaitQueue
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
RESYNC_INTERVAL_S = 30.0  # how often every open job is synced, whatever the events said
SPEC_KEPT_BYTES = 16 * 1024  # a spec with a larger environment is not kept in memory
RESYNC_BATCH = 100  # jobs synced between two yields to the event loop in that pass
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
        zygotes: bool = True,
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
            folders=self._folders,
            python=python,
            on_change=self._notify,
            on_exit=self._on_exit,
            zygotes=zygotes,
            clock=clock,
        )
        self._open: set[str] = set()  # jobs that may still start pods
        self._specs: dict[str, TaskSpec] = {}  # the open jobs' (small) specs, read once
        self._queue = WaitQueue()  # open jobs waiting for a slot, with why
        self._busy: set[str] = set()  # open jobs whose last sync saw pods running
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wakes: dict[str, datetime] = {}  # when each timer is due, by the clock
        self._poller: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._next_sweep = 0.0
        self._next_resync = 0.0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Adopt what runs, read the exits that happened while no controller listened.
        Only the listed jobs are read (those open, or ended with pods still running): the
        finished jobs' folders, however many, are not."""
        self._folders.jobs.mkdir(parents=True, exist_ok=True)
        self._start_sweep()
        for job_id in self._folders.listed_ids():
            if not self._folders.exists(job_id):  # its folder expired, or a crash in between
                self._folders.unlist(job_id)
                continue
            try:
                self._supervisor.adopt(job_id)
            except Exception:  # a damaged folder: that job's syncs will say so, not start-up
                log.exception("adopting local job %s", job_id)
            if not self._folders.ended(job_id):  # an ended one the store still has open
                self._open.add(job_id)  # is the reconciler's resync's, which reads only those
                self._notify(job_id)
            else:  # what of it still runs is stopped again (a grace the restart cut short
                self._supervisor.terminate(job_id)  # starts over)
                self._unlist_if_idle(job_id)
        self.step()
        self._next_resync = time.monotonic() + RESYNC_INTERVAL_S
        self._poller = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        """Stop watching; the tasks keep running and are adopted by the next start."""
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._sweeper:  # a thread: it cannot be cancelled, only waited for
            await self._sweeper
        self._supervisor.close()
        for timer in self._timers.values():
            timer.cancel()

    # -- the Backend interface ---------------------------------------------------------
    async def create(self, spec: TaskSpec) -> None:
        if not self._folders.write_job(spec):
            return
        self._open.add(spec.job_id)
        self._remember(spec_from_json(spec_to_json(spec)))  # as a load gives it
        self._notify(spec.job_id)
        self._settle(spec.job_id)

    async def delete(self, job_id: str) -> None:
        if not self._folders.exists(job_id):
            return
        self._folders.mark_deleted(job_id)
        self._close_job(job_id)
        self._supervisor.terminate(job_id)
        self._unlist_if_idle(job_id)
        self._notify(job_id)
        self._fill()

    async def observe(self, job_id: str) -> Observation | None:
        """The job as its folder shows it; reads only (`step` starts what should run)."""
        if not self._folders.exists(job_id) or self._folders.deleted(job_id):
            return None
        spec = self._specs.get(job_id) or self._folders.spec(job_id)
        return local_plan.observe(
            spec,
            self._folders.pods(job_id, alive=self._supervisor.watches),
            condition=self._folders.finished(job_id),
            waiting_for_slot=self._queue.reason(job_id),
        )

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        return self._folders.termination_messages(job_id)

    async def logs(self, job_id: str, *, tail: int | None) -> str | None:
        return self._folders.logs(job_id, tail=tail)

    async def purge(self, job_id: str) -> None:
        await self.delete(job_id)  # no longer open, nor listed
        self._folders.remove(job_id)

    async def stopped(self, job_id: str) -> bool:
        return not any(self._supervisor.watches(d) for d, _ in self._folders.pod_dirs(job_id))

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

    def ref(
        self, job_id: str, *, tenant: str = DEFAULT_TENANT, namespace: str | None = None
    ) -> BackendRef:
        return BackendRef(backend="local", name=str(self._folders.job_dir(job_id)))

    def watches(self, namespace: str) -> bool:
        return True  # it places no job by namespace

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
        """Sync every open job, oldest first (ids sort by age): write the terminal conditions
        decided, start what should run while slots are free, set each job's next wake-up."""
        for job_id in sorted(self._open):
            self._sync_logged(job_id)

    def _settle(self, *changed: str) -> None:
        """Sync the jobs that changed, each after the older jobs waiting for a slot had
        their turn (as a full step, oldest first, would), then fill the free slots."""
        for job_id in sorted(set(changed)):
            self._fill(before=job_id)
            self._sync_logged(job_id)
        self._fill()

    def _fill(self, *, before: str | None = None) -> None:
        """Free slots to the jobs waiting longest (older than `before`), until full."""
        while self._supervisor.running < self._slots:
            job_id = self._queue.oldest(before=before)
            if job_id is None:
                return
            self._sync_logged(job_id)
            if self._queue.reason(job_id) is not None:
                return  # it waits still: the slots are full

    def _sync_logged(self, job_id: str) -> None:
        try:
            self._sync(job_id)
        except Exception:  # one job's bad folder never stops the others (nor start-up):
            log.exception("local job %s", job_id)  # observe raises it to the reconciler
            self._queue.remove(job_id)  # nor holds the queue: the next full pass retries

    def _sync(self, job_id: str) -> None:
        """Decide the terminal condition or start what should run, then set a wake-up (in a
        second, when a pod's folder could not be made)."""
        if job_id not in self._open:
            return
        spec = self._spec(job_id)
        pods = self._folders.pods(job_id, alive=self._supervisor.watches)
        now = self._clock()
        condition = local_plan.terminal_condition(spec, pods, now)
        if condition is not None:
            self._folders.write_finished(job_id, condition)
            self._close_job(job_id)
            self._supervisor.terminate(job_id)
            self._unlist_if_idle(job_id)
            self._notify(job_id)
            return
        plan = local_plan.plan_pods(spec, pods, now=now, backoff_base_s=self._retry_backoff_s)
        waiting = self._queue.remove(job_id)
        started = False
        retry_at = plan.retry_at
        for index, attempt in plan.start:
            if self._supervisor.running >= self._slots:
                self._queue.add(job_id, f"waiting for a free slot ({self._slots} in use)")
                break
            end = local_plan.deadline(spec, pods, now=now)
            stop = PodStop(end, spec.grace_s) if end is not None else None
            try:
                self._supervisor.spawn(spec, index, attempt, now=self._clock(), stop=stop)
            except OSError as exc:  # its folder could not be made (a full disk): none is left
                log.warning("cannot make pod %d-%d of job %s: %s", index, attempt, job_id, exc)
                retry_at = now + timedelta(seconds=POLL_INTERVAL_S)
                break
            started = True
        if self._queue.reason(job_id) != waiting:
            self._notify(job_id)  # observe tells of the wait (or its end) from now on
        if started or any(p.active for p in pods):
            self._busy.add(job_id)
        else:
            self._busy.discard(job_id)
        wake = min(
            (t for t in (retry_at, local_plan.deadline(spec, pods)) if t is not None),
            default=None,
        )
        self._set_timer(job_id, wake, now)

    def _spec(self, job_id: str) -> TaskSpec:
        spec = self._specs.get(job_id)
        if spec is None:
            spec = self._folders.spec(job_id)
            self._remember(spec)
        return spec

    def _remember(self, spec: TaskSpec) -> None:
        """Keep the spec unless its params are large (those are read again at each sync:
        10,000 jobs queued with a megabyte of params each would not fit in memory)."""
        if sum(len(key) + len(value) for key, value in spec.env.items()) <= SPEC_KEPT_BYTES:
            self._specs[spec.job_id] = spec

    def _close_job(self, job_id: str) -> None:
        self._open.discard(job_id)
        self._specs.pop(job_id, None)
        self._queue.remove(job_id)
        self._busy.discard(job_id)
        self._wakes.pop(job_id, None)
        timer = self._timers.pop(job_id, None)
        if timer:
            timer.cancel()

    def _unlist_if_idle(self, job_id: str) -> None:
        """An ended job leaves the list once none of its pods runs (start-up adopts those)."""
        if not any(self._supervisor.watches(d) for d, _ in self._folders.pod_dirs(job_id)):
            self._folders.unlist(job_id)

    def _set_timer(self, job_id: str, wake: datetime | None, now: datetime) -> None:
        old = self._timers.pop(job_id, None)
        if old:
            old.cancel()
        self._wakes.pop(job_id, None)
        if wake is not None:
            delay = max((wake - now).total_seconds(), 0.0) + 0.01
            self._wakes[job_id] = wake
            self._timers[job_id] = asyncio.get_running_loop().call_later(
                delay, self._on_timer, job_id
            )

    def _on_timer(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        self._wakes.pop(job_id, None)
        self._settle(job_id)
        self._notify(job_id)

    def _on_exit(self, job_id: str) -> None:
        self._notify(job_id)
        if job_id not in self._open:
            self._unlist_if_idle(job_id)
        self._settle(job_id)  # a slot is free

    def _start_sweep(self) -> None:
        """Remove the folders past the TTL, in a thread (it reads every folder's markers)."""
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL_S
        if self._finished_ttl_s is not None and (self._sweeper is None or self._sweeper.done()):
            self._sweeper = asyncio.create_task(self._remove_expired(self._finished_ttl_s))

    async def _remove_expired(self, ttl_s: float) -> None:
        jobs = self._folders.jobs
        try:
            removed = await asyncio.to_thread(remove_expired, jobs, now=time.time(), ttl_s=ttl_s)
        except Exception:  # the next sweep tries again
            log.exception("removing expired local job folders")
            return
        for job_id in removed:
            log.info("job %s finished more than %.0f s ago: folder removed", job_id, ttl_s)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            if time.monotonic() >= self._next_sweep:
                self._start_sweep()
            self._supervisor.check_exits()  # each exit it finds syncs its job
            now = self._clock()
            due = [job_id for job_id, wake in self._wakes.items() if wake <= now]
            self._settle(*self._busy, *due)  # what an event missed is started here
            if time.monotonic() >= self._next_resync:
                await self._resync()

    async def _resync(self) -> None:
        """Sync every open job, level-triggered, yielding to the event loop between
        batches so no request waits behind the whole pass."""
        for count, job_id in enumerate(sorted(self._open), start=1):
            self._sync_logged(job_id)
            if count % RESYNC_BATCH == 0:
                await asyncio.sleep(0)
        self._next_resync = time.monotonic() + RESYNC_INTERVAL_S

    def _notify(self, job_id: str) -> None:
        self.changes.put_nowait(job_id)
