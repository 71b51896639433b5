"""The reconcile loop, level-triggered as Kubernetes controllers are: a change only enqueues
a job id; `sync` re-reads the record and the backend, derives the state with the one pure
function, and writes the status (and one state event) only when it changed.

One job is synced by one worker at a time; a change that arrives meanwhile syncs it again.
Unfinished jobs are all re-synced on start and every `resync_s`, so nothing depends on an
event having been seen; those syncs queue behind every change (controller/workqueue.py).
A job not yet running is synced again as its start deadline (`start_timeout_s`) passes,
when no event need come.
A job whose sync failed is not synced again (whatever wakes it) before its back-off has
passed: exponential per job (`RetryPolicy`), with jitter so that jobs failed together do
not retry together, and never shorter than a `Retry-After` the backend was told; the first
sync that gets through resets it. A create the backend refuses for good (CreateRejected) is
no failure of the sync: the job fails with the refusal's words.

With several replicas only the leader reconciles (`lead()`, run while it holds the Lease:
controller/leader.py); the others drop their backends' change notices and announce the jobs
they accept to the leader (controller/wakeups.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from kubetask.controller.backends.base import Backend, BackendError, CreateRejected, TaskSpec
from kubetask.controller.bus import EventBus
from kubetask.controller.clock import Clock, utcnow
from kubetask.controller.outcomes import in_plain_words, parse_outcome, summarize
from kubetask.controller.records import JobRecord, JobStatus, next_status
from kubetask.controller.states import (
    Derived,
    JobFacts,
    Observation,
    derive_state,
    failure_due,
)
from kubetask.controller.store import Maintained, Store, store_unavailable
from kubetask.controller.wakeups import WakeUps
from kubetask.controller.workqueue import WorkQueue
from kubetask.kinds import Merge
from kubetask.models import JobState, Outcome

log = logging.getLogger("kubetask.reconciler")

Jitter = Callable[[], float]  # uniform in [0, 1)
TransitionHook = Callable[[JobRecord, JobStatus], Awaitable[None]]
GIVE_UP_AFTER = 5  # unexpected errors in a row syncing one job: it is failed, the rest go on
# (the store away is no such error: its syncs wait and retry, however long it is away)
DEADLINE_SLACK_S = 0.05  # a start deadline's sync comes this long after it: it has passed
# Jobs synced side by side: a sync that creates waits for the API server (and the store) for
# most of its time, so a burst of submissions is created about this many at a time (the
# kubernetes backend's API threads); the API server's 429s still pause each job they refuse
WORKERS = 16
# ... but the local backend's syncs are this process's own work (its folders, its processes)
# more than waits: side by side they only interleave, and hold up the API's requests (in a
# burst of 200 jobs, submissions were accepted twice as fast with 2 as with 16, and the jobs
# ended as soon)
LOCAL_WORKERS = 2


@dataclass(frozen=True)
class RetryPolicy:
    """How long a job whose sync failed waits before the next: `base_s` doubling per
    failure in a row up to `max_s`, times a jitter factor in [0.5, 1.5), never over `max_s`
    (so jobs at the cap retry spread over its second half)."""

    base_s: float = 1.0
    max_s: float = 60.0

    def delay_s(self, failures: int, *, jitter: float, retry_after_s: float | None) -> float:
        """The wait after the `failures`-th failure in a row (1 for the first); a
        `Retry-After` the backend was told wins when it is longer."""
        # capped: 2.0 ** 1024 overflows (a record broken for hours would crash the workers)
        doublings = min(max(failures - 1, 0), 64)
        backoff = min(self.base_s * 2.0**doublings, self.max_s) * (0.5 + jitter)
        return max(min(backoff, self.max_s), retry_after_s or 0.0)


def ran_at(observation: Observation | None, *, created: datetime, now: datetime) -> datetime | None:
    """When the job's first task began running, as its backend says: a container's start,
    else, for a pod that already finished, the Job's own start; within [the job's creation,
    now] (clocks apart). None while no task has run."""
    if observation is None:
        return None
    began = observation.task_started_at
    if began is None and (observation.succeeded or observation.failed):
        began = observation.start_time or now
    return None if began is None else min(max(began, created), now)


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        backend: Backend,
        spec_for: Callable[[JobRecord], TaskSpec],
        clock: Clock = utcnow,
        workers: int = WORKERS,
        resync_s: float = 30.0,
        on_transition: TransitionHook | None = None,
        wakeups: WakeUps | None = None,
        retry: RetryPolicy = RetryPolicy(),
        jitter: Jitter = random.random,
        merges: Mapping[str, Merge] | None = None,
        on_end: Callable[[str], object] | None = None,
        before_stop: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`on_end`: told each job id as its end is recorded (it must not wait: the log
        archiver only queues it). `before_stop`: awaited before kubetask deletes a job's
        backend object, and while the backend stops the pods of a failure it decided (the
        log archiver reads their logs, which go with them)."""
        self._store = store
        self._bus = bus
        self._backend = backend
        self._spec_for = spec_for
        self._clock = clock
        self._workers = workers
        self._resync_s = resync_s
        self._on_transition = on_transition
        self._wakeups = wakeups
        self._retry = retry
        self._jitter = jitter
        self._merges = merges or {}  # kind -> how its split jobs' parts make one result
        self._on_end = on_end
        self._before_stop = before_stop
        self._failures: dict[str, int] = {}  # job id -> syncs failed in a row
        self._errors: dict[str, tuple[str, int]] = {}  # job id -> (unexpected error, in a row)
        self._queue = WorkQueue()
        self._busy: set[str] = set()
        self._again: set[str] = set()  # to sync again after the sync in progress
        # ... for a change the backend told of: unless that sync has yet to observe the job
        self._again_observed: set[str] = set()
        self._not_before: dict[str, float] = {}  # job id -> loop time (Retry-After)
        self._deferred: set[str] = set()
        self._start_deadlines: dict[str, asyncio.TimerHandle] = {}  # job id -> its wake-up
        self._resync_soon = asyncio.Event()
        self._leading = False
        self.ready = asyncio.Event()

    def enqueue(self, job_id: str) -> None:
        """Sync this job soon (it was submitted or cancelled here): at once when this
        replica reconciles, else by telling the leader."""
        if self._leading:
            self._wake(job_id)
        elif self._wakeups is not None:
            self._wakeups.announce(job_id)

    def _wake(
        self, job_id: str, *, observable: bool = False, resync: bool = False, paced: bool = False
    ) -> None:
        """Sync the job soon; `observable`: the backend told of a change, which a sync in
        progress sees if it has not observed the job yet (its observe comes after);
        `resync`: no change, a look at every job (after every change queued), `paced`: the
        periodic one (a few at a time: controller/workqueue.py)."""
        if not self._leading:
            return
        wait = self._not_before.get(job_id, 0.0) - asyncio.get_running_loop().time()
        if wait > 0:
            if job_id not in self._deferred:
                self._deferred.add(job_id)
                asyncio.get_running_loop().call_later(wait, self._undefer, job_id)
            return
        self._not_before.pop(job_id, None)
        if job_id in self._busy:
            if not paced:  # the periodic look: the sync in progress is one
                (self._again_observed if observable else self._again).add(job_id)
        else:
            self._queue.put(job_id, urgent=not resync, paced=paced)

    def _undefer(self, job_id: str) -> None:
        self._deferred.discard(job_id)
        self._wake(job_id)

    async def run(self) -> None:
        """The only replica: follow the backend and reconcile, forever."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.follow_backend())
            group.create_task(self.lead())

    async def lead(self) -> None:
        """Reconcile until cancelled (the leader's work); every unfinished job first."""
        self._queue = WorkQueue()
        self._again.clear()
        self._again_observed.clear()
        self._leading = True
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._workers):
                    group.create_task(self._work())
                group.create_task(self._resync_forever())
                if isinstance(self._store, Maintained):
                    group.create_task(self._tend(self._store))
                if self._wakeups is not None:
                    group.create_task(self._wakeups.listen(self._wake, self._resync_soon.set))
        finally:
            self._leading = False
            for handle in self._start_deadlines.values():
                handle.cancel()
            self._start_deadlines.clear()

    async def _resync_forever(self) -> None:
        """Look at every unfinished job: at once when leading starts or when changes may
        have been missed (`_resync_soon`), a few at a time every `resync_s`."""
        paced = False
        while True:
            self._resync_soon.clear()
            try:
                for job_id in await self._store.unfinished():
                    self._wake(job_id, resync=True, paced=paced)
                self.ready.set()
                now = asyncio.get_running_loop().time()
                self._not_before = {k: t for k, t in self._not_before.items() if t > now}
            except Exception:
                log.exception("resync failed; trying again")
                await asyncio.sleep(1.0)
                continue
            try:
                await asyncio.wait_for(self._resync_soon.wait(), self._resync_s)
                paced = False
            except TimeoutError:
                paced = True

    async def _tend(self, store: Maintained) -> None:
        """The leader's upkeep of the store: its indexes built once (a store written by an
        older version), then expired records taken out at each resync period."""
        built = False
        while True:
            if not built:
                try:
                    await store.build_indexes()
                    built = True
                except Exception:  # expiry goes on meanwhile: it needs no old record's index
                    log.exception("building the store's indexes failed; trying again")
            try:
                await store.expire_due()
            except Exception:
                log.exception("expiring finished records failed; trying again")
            await asyncio.sleep(self._resync_s)

    async def follow_backend(self) -> None:
        """Sync each job the backend says changed (dropped unless leading: the next leader
        resyncs everything when it starts)."""
        while True:
            self._wake(await self._backend.changes.get(), observable=True)

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            self._busy.add(job_id)
            try:
                await self.sync(job_id)
                self._failures.pop(job_id, None)
                self._errors.pop(job_id, None)
            except BackendError as exc:
                delay = self._retry_later(job_id, exc.retry_after_s)
                log.warning("sync of %s: %s; retrying in %.1fs", job_id, exc, delay)
            except Exception as exc:
                self._sync_failed(job_id, exc)
            finally:
                self._busy.discard(job_id)
                self._queue.done(job_id)
            if job_id in self._again or job_id in self._again_observed:
                self._again.discard(job_id)
                self._again_observed.discard(job_id)
                self._wake(job_id)

    def _sync_failed(self, job_id: str, exc: Exception) -> None:
        """Sync it again after its back-off. The store unable to serve (away, out of memory,
        its disk failing) is every job's fault alike, never counted against this one; any
        other error (a bug, a record nothing can handle) is, toward giving up on it."""
        delay = self._retry_later(job_id)
        if store_unavailable(exc):
            log.warning(
                "sync of %s: the job store cannot serve (%s: %s); retrying in %.1fs",
                *(job_id, type(exc).__name__, exc, delay),
            )
            return
        error = f"{type(exc).__name__}: {exc}"
        last, times = self._errors.get(job_id, ("", 0))
        self._errors[job_id] = (error, times + 1 if error == last else 1)
        log.error("sync of %s failed; retrying in %.1fs", job_id, delay, exc_info=exc)

    def _retry_later(self, job_id: str, retry_after_s: float | None = None) -> float:
        """Sync it again after its back-off (or `retry_after_s`, if longer), and not
        before; the delay chosen."""
        failures = self._failures[job_id] = self._failures.get(job_id, 0) + 1
        delay_s = self._retry.delay_s(failures, jitter=self._jitter(), retry_after_s=retry_after_s)
        self._not_before[job_id] = asyncio.get_running_loop().time() + delay_s
        self._again.discard(job_id)
        self._again_observed.discard(job_id)
        self._wake(job_id)
        return delay_s

    def _unhandled(self, job_id: str) -> str | None:
        """Why this job cannot be handled, once its syncs failed unexpectedly
        `GIVE_UP_AFTER` times in a row (the same way: not a passing fault)."""
        error, times = self._errors.get(job_id, ("", 0))
        return error if times >= GIVE_UP_AFTER else None

    async def _stop_unhandled(self, job_id: str) -> None:
        """Stop what runs for a job given up on, as far as the backend still can."""
        try:
            await self._stopping(job_id)
            await self._backend.delete(job_id)
        except Exception:
            log.exception("stopping %s, which kubetask gave up on", job_id)

    async def _stop_as_derived(self, job_id: str, derived: Derived, *, stop: bool) -> None:
        """Delete the backend's object when `derived` asks (a cancel, a start timeout) and
        there is one (`stop`); either way, before pods go, `before_stop`."""
        if derived.stop and stop:
            await self._stopping(job_id)
            await self._backend.delete(job_id)
        elif derived.stopping:
            await self._stopping(job_id)

    async def _stopping(self, job_id: str) -> None:
        if self._before_stop is not None:
            await self._before_stop(job_id)

    def _wake_at_start_deadline(
        self, job_id: str, deadline: datetime | None, now: datetime
    ) -> None:
        """Sync the job again as its start deadline passes: nothing else may happen then (a
        job waiting in a queue, or for a node, changes no more), and the resync may be long
        in coming. None: no deadline (any more), no wake-up."""
        if deadline is None:
            handle = self._start_deadlines.pop(job_id, None)
            if handle is not None:
                handle.cancel()
        elif job_id not in self._start_deadlines and deadline > now:  # it never moves; past,
            delay_s = (deadline - now).total_seconds() + DEADLINE_SLACK_S  # this sync sees it
            self._start_deadlines[job_id] = asyncio.get_running_loop().call_later(
                delay_s, self._start_deadline_reached, job_id
            )

    def _start_deadline_reached(self, job_id: str) -> None:
        self._start_deadlines.pop(job_id, None)
        self._wake(job_id)

    async def sync(self, job_id: str) -> None:
        record = await self._store.get(job_id)
        now = self._clock()
        if record is None or record.status.state.terminal:
            self._wake_at_start_deadline(job_id, None, now)
            return
        self._wake_at_start_deadline(job_id, record.start_deadline(), now)
        unhandled = self._unhandled(job_id)
        if unhandled is not None:
            await self._stop_unhandled(job_id)
        deadline_passed = unhandled is None and record.start_deadline_passed(now)
        rejected = None
        created = False  # here, now: the record is marked submitted with the status below
        if (
            unhandled is None
            and not record.submitted
            and not record.cancel_requested
            and not deadline_passed
        ):
            record, rejected = await self._create(record)
            created = rejected is None
        skip = rejected is not None or unhandled is not None
        observation = None if skip else await self._observe(job_id)
        outcomes: dict[int, Outcome] | None = {} if skip else None
        if observation is None and record.submitted and not skip:  # gone: what did its tasks say?
            outcomes = await self._outcomes(record)
        # it ran if the record says so, or the backend does (the controller was away then)
        ran = record.status.started_at is not None or (
            ran_at(observation, created=record.created_at, now=now) is not None
        )
        derived = derive_state(
            JobFacts(
                observation=observation,
                submitted=record.submitted,
                cancel_requested=record.cancel_requested,
                start_deadline_passed=deadline_passed and not ran,
                tasks_succeeded=outcomes is not None and all_succeeded(outcomes, record),
                create_rejected=rejected,
                ran=ran,
                unhandled=unhandled,
                out_of_sight=record.namespace
                if record.namespace is not None and not self._backend.watches(record.namespace)
                else None,
                failing=None
                if observation is None
                else failure_due(
                    observation,
                    retries=record.request.retries,
                    timeout_s=record.request.timeout_s,
                    now=now,
                ),
                state=record.status.state,
            )
        )
        derived = in_plain_words(
            derived,
            attempts=max(observation.attempts if observation else 0, record.status.attempts),
            exit_code=observation.last_exit_code if observation else None,
            timeout_s=record.request.timeout_s,
            start_timeout_s=record.request.start_timeout_s,
            workers=record.request.completions,
        )
        await self._stop_as_derived(job_id, derived, stop=observation is not None)
        result = error = None
        if derived.state in (JobState.SUCCEEDED, JobState.FAILED):
            outcomes = outcomes if outcomes is not None else await self._outcomes(record)
            result, error = summarize(
                derived,
                outcomes,
                completions=record.request.completions,
                merge=self._merges.get(record.request.kind),
                exit_code=observation.last_exit_code if observation else None,
            )
        # after the observation: a time the backend recorded before it is not ahead of ours
        # (`now` is from before the create, which may start the task)
        seen = self._clock()
        status = next_status(
            record.status,
            derived,
            attempts=observation.attempts if observation else 0,
            now=seen,
            result=result,
            error=error,
            ran_at=ran_at(observation, created=record.created_at, now=seen),
        )
        if status is None:
            if created:
                await self._store.mark_submitted(record)
            return
        if not await self._store.save_status(record, status, at=seen):  # with its state event
            if created:  # the write refused carried the mark
                await self._store.mark_submitted(record)
            self.enqueue(job_id)  # cancelled meanwhile: derive again
            return
        if status.state.terminal or status.started_at is not None:
            self._wake_at_start_deadline(job_id, None, seen)  # it ran, or it is over
        if status.state.terminal and self._on_end is not None:
            self._on_end(job_id)
        await self._after_transition(record, status)

    async def _after_transition(self, record: JobRecord, status: JobStatus) -> None:
        """Trace a new state or reason on the backend's job (a Kubernetes Event: not for a
        changed message alone), then tell whoever listens; neither ever blocks the state."""
        job_id = record.id
        try:
            if (status.state, status.reason) != (record.status.state, record.status.reason):
                await self._backend.record_transition(job_id, status)
            if self._on_transition is not None:
                await self._on_transition(record, status)
        except Exception as exc:
            log.warning("after the transition of %s to %s", job_id, status.state, exc_info=True)
            if isinstance(exc, BackendError) and exc.retry_after_s:  # the API asked for a pause
                loop_time = asyncio.get_running_loop().time()
                self._not_before[job_id] = loop_time + exc.retry_after_s

    async def _observe(self, job_id: str) -> Observation | None:
        """The job as the backend shows it now, which includes each change it told of so far:
        those need no sync after this one."""
        self._again_observed.discard(job_id)
        return await self._backend.observe(job_id)

    async def _create(self, record: JobRecord) -> tuple[JobRecord, str | None]:
        """Create the job's backend job: (the record, submitted: the sync writes the mark,
        with the status it derives or alone), or (the record, why the backend refused it for
        good). Creating is idempotent: after a crash before the mark, it finds the job."""
        if record.refused is not None:  # accepted by an older version, refused by this one
            return record, f"this version refuses its request: {record.refused}"
        try:
            await self._backend.create(self._spec_for(record))
        except CreateRejected as exc:  # never created: nothing to observe, nothing ran
            return record, str(exc)
        placed = self._backend.ref(record.id, tenant=record.tenant).namespace
        return record.model_copy(update={"submitted": True, "namespace": placed}), None

    async def _outcomes(self, record: JobRecord) -> dict[int, Outcome]:
        """What each completion index's last task left: its termination message (the JSON
        it also stored in Redis), else what Redis holds (its pod, and its message, gone).
        Not Redis first: an index's key there is an earlier attempt's when the last one
        could not store its own (Redis away as it ended)."""
        completions = record.request.completions
        messages = await self._backend.termination_messages(record.id)
        found: dict[int, Outcome] = {}
        for index in range(completions):
            outcome = parse_outcome(messages.get(index))
            if outcome is not None:
                found[index] = outcome
        if len(found) < completions:
            stored = await self._bus.outcomes(record.id, completions)
            found = {**stored, **found}
        return found


def all_succeeded(outcomes: dict[int, Outcome], record: JobRecord) -> bool:
    """Every completion index of the job left a successful outcome."""
    completions = record.request.completions
    return all(i in outcomes and outcomes[i].ok for i in range(completions))
