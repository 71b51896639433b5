"""Reconciler.sync, the heart, against in-memory fakes of its ports (store, bus, backend)
and a clock the test sets: no Redis, no processes. Each sync writes a status and
publishes one state event only when the state changed; a terminal one is final."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
import redis.exceptions
from pydantic import JsonValue

from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.bus import EventBus
from kubetask.controller.reconciler import GIVE_UP_AFTER, Reconciler, RetryPolicy
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.states import Condition, Observation, PodFacts
from kubetask.controller.store import NO_CAPS, CancelOutcome, JobQuery, TenantCaps
from kubetask.models import DEFAULT_TENANT, BackendRef, JobRequest, JobState, Outcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JOB = "0000000000000001"
OTHER = "0000000000000002"

PENDING = Observation(active=1, pods=(PodFacts("Pending", waiting_reason="ContainerCreating"),))
RUNNING = Observation(active=1, start_time=T0, pods=(PodFacts("Running"),))
COMPLETE = Observation(
    conditions=(Condition("Complete", reason="Completed", message="all tasks succeeded"),),
    succeeded=1,
    start_time=T0,
)
FAILED = Observation(
    conditions=(Condition("Failed", reason="BackoffLimitExceeded"),), failed=1, start_time=T0
)


class BrokenRecord(Exception):
    """What reading a record nothing can parse raises."""


class FakeStore:
    """Job records in a dict; `save_status` refuses a status derived before a cancel, as
    the real store's script does, and notes the state event it writes with a status."""

    def __init__(self, *records: JobRecord) -> None:
        self.records = {r.id: r for r in records}
        self.broken: set[str] = set()
        self.away = 0  # the next reads that find Redis away
        self.saved: list[tuple[str, JobStatus]] = []
        self.marks = 0  # marks written alone (`mark_submitted`), not with a status
        self.states: list[tuple[str, JobState, str | None]] = []  # the state events

    async def create(
        self,
        record: JobRecord,
        *,
        idempotency_key: str | None,
        fingerprint: str,
        caps: TenantCaps = NO_CAPS,
    ) -> tuple[JobRecord, bool]:
        self.records.setdefault(record.id, record)
        return self.records[record.id], True

    async def get(self, job_id: str) -> JobRecord | None:
        if job_id in self.broken:
            raise BrokenRecord(f"record {job_id} cannot be read")
        if self.away:
            self.away -= 1
            raise redis.exceptions.ConnectionError("Error 111 connecting: Connection refused.")
        return self.records.get(job_id)

    async def find(
        self, query: JobQuery, *, cursor: str | None, limit: int
    ) -> tuple[list[JobRecord], str | None]:
        return [r for r in self.records.values() if query.matches(r)][:limit], None

    async def save_status(self, record: JobRecord, status: JobStatus, *, at: datetime) -> bool:
        stored = self.records[record.id]
        if stored.cancel_requested != record.cancel_requested:
            return False
        submitted = stored.submitted or record.submitted  # the mark goes with the status
        namespace = record.namespace or stored.namespace
        self.records[record.id] = stored.model_copy(
            update={"status": status, "submitted": submitted, "namespace": namespace}
        )
        self.saved.append((record.id, status))
        self.states.append((record.id, status.state, status.reason))
        return True

    async def mark_submitted(self, record: JobRecord) -> None:
        self.marks += 1
        self.records[record.id] = self.records[record.id].model_copy(
            update={"submitted": True, "namespace": record.namespace}
        )

    async def request_cancel(self, job_id: str) -> CancelOutcome | JobState:
        record = self.records.get(job_id)
        if record is None:
            return CancelOutcome.MISSING
        if record.status.state.terminal:
            return record.status.state
        self.records[job_id] = record.model_copy(update={"cancel_requested": True})
        return CancelOutcome.ACCEPTED

    async def unfinished(self) -> list[str]:
        return sorted(i for i, r in self.records.items() if not r.status.state.terminal)


@dataclass
class FakeBus:
    """The outcomes tasks left."""

    left: dict[str, dict[int, Outcome]] = field(default_factory=dict)

    async def outcomes(self, job_id: str, completions: int) -> dict[int, Outcome]:
        return dict(self.left.get(job_id, {}))


class FakeBackend:
    """Each job's observation as the test sets it (None: no such job); records what the
    reconciler asked. `failing[job]`: what observe raises for that job."""

    def __init__(self) -> None:
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self.jobs: dict[str, Observation] = {}
        self.failing: dict[str, Exception] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.observed: list[str] = []
        self.traced: list[tuple[JobState, str | None, str | None]] = []  # Events written
        self.messages: dict[str, dict[int, str]] = {}  # each index's last termination message
        self.placing: str | None = None  # the namespace new jobs go to
        self.unwatched: set[str] = set()  # namespaces no longer watched

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def create(self, spec: TaskSpec) -> None:
        self.created.append(spec.job_id)
        self.jobs.setdefault(spec.job_id, Observation())

    async def delete(self, job_id: str) -> None:
        self.deleted.append(job_id)

    async def observe(self, job_id: str) -> Observation | None:
        self.observed.append(job_id)
        if job_id in self.failing:
            raise self.failing[job_id]
        return self.jobs.get(job_id)

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        return self.messages.get(job_id, {})

    async def logs(self, job_id: str, *, tail: int | None) -> str | None:
        return None

    async def stopped(self, job_id: str) -> bool:
        return True

    async def purge(self, job_id: str) -> None:
        self.deleted.append(job_id)

    async def record_transition(self, job_id: str, status: JobStatus) -> None:
        self.traced.append((status.state, status.reason, status.message))

    def ref(
        self, job_id: str, *, tenant: str = DEFAULT_TENANT, namespace: str | None = None
    ) -> BackendRef:
        return BackendRef(backend="kubernetes", name=job_id, namespace=namespace or self.placing)

    def watches(self, namespace: str) -> bool:
        return namespace not in self.unwatched

    def render(self, spec: TaskSpec) -> dict[str, JsonValue]:
        return {}


@dataclass
class World:
    store: FakeStore
    bus: FakeBus
    backend: FakeBackend
    now: list[datetime]
    reconciler: Reconciler

    def sync(self, job_id: str = JOB, times: int = 1) -> None:
        async def run() -> None:
            for _ in range(times):
                await self.reconciler.sync(job_id)

        asyncio.run(run())

    def record(self, job_id: str = JOB) -> JobRecord:
        return self.store.records[job_id]

    def published(self, job_id: str = JOB) -> list[JobState]:
        return [state for job, state, _ in self.store.states if job == job_id]


def record(
    job_id: str = JOB,
    *,
    submitted: bool = False,
    cancel_requested: bool = False,
    start_timeout_s: int | None = None,
) -> JobRecord:
    return JobRecord(
        id=job_id,
        request=JobRequest(kind="noop", start_timeout_s=start_timeout_s),
        created_at=T0,
        submitted=submitted,
        cancel_requested=cancel_requested,
    )


def world(*records: JobRecord, backend: FakeBackend | None = None, resync_s: float = 30.0) -> World:
    store, bus = FakeStore(*(records or (record(),))), FakeBus()
    backend = backend or FakeBackend()
    now = [T0 + timedelta(seconds=1)]
    reconciler = Reconciler(
        store=store,
        bus=cast(EventBus, bus),  # the bus is a class, not a port: FakeBus has what sync uses
        backend=backend,
        spec_for=lambda r: TaskSpec(
            job_id=r.id, kind="noop", image="", command=(), env={}, retries=0, timeout_s=None
        ),
        clock=lambda: now[0],
        resync_s=resync_s,
        retry=RetryPolicy(base_s=0.001, max_s=0.001),  # a failed sync is retried soon
        jitter=lambda: 0.0,
    )
    return World(store, bus, backend, now, reconciler)


def test_a_queued_job_is_created_once_however_often_it_is_synced() -> None:
    w = world()
    w.sync(times=2)
    assert w.backend.created == [JOB]
    assert w.record().submitted
    assert (w.record().status.state, w.record().status.reason) == (JobState.QUEUED, "Created")
    assert w.store.states == [(JOB, JobState.QUEUED, "Created")]  # one event, not one per sync


def test_the_sync_that_creates_a_job_marks_it_in_the_write_of_its_status() -> None:
    w = world()
    w.sync()
    assert w.record().submitted
    assert w.store.marks == 0  # one write to the store: the status carried the mark


def test_a_job_created_without_a_new_status_is_marked_all_the_same() -> None:
    first = world()
    first.sync()
    same = first.record().status  # what a sync that creates the job derives
    w = world(record().model_copy(update={"status": same}))
    w.sync()
    assert w.store.saved == []  # nothing new to say
    assert (w.record().submitted, w.store.marks) == (True, 1)
    w.sync()
    assert w.backend.created == [JOB]  # so the next sync does not create it again


def test_a_job_remembers_its_namespace_and_fails_in_words_of_its_own_once_unwatched() -> None:
    """A tenant moved to another namespace: its unfinished job's Job runs on in the old one,
    unseen. It ends `NamespaceNotWatched` naming that namespace, not `JobDeleted`, and the
    view keeps pointing there."""
    backend = FakeBackend()
    backend.placing = "team-a"
    w = world(backend=backend)
    w.sync()
    assert w.record().namespace == "team-a"
    backend.placing = "team-b"  # the tenant's mapping changed: new jobs would go there
    backend.unwatched = {"team-a"}
    del backend.jobs[JOB]  # not seen in any namespace still watched
    w.sync()
    status = w.record().status
    assert (status.state, status.reason) == (JobState.FAILED, "NamespaceNotWatched")
    assert "namespace team-a" in (status.message or "")
    ref = backend.ref(JOB, namespace=w.record().namespace)
    assert ref.namespace == "team-a"


def test_a_job_gone_from_a_namespace_still_watched_was_deleted() -> None:
    backend = FakeBackend()
    backend.placing = "team-a"
    w = world(backend=backend)
    w.sync()
    del backend.jobs[JOB]
    w.sync()
    assert w.record().status.reason == "JobDeleted"


def test_a_job_created_as_a_cancel_came_in_is_marked_though_its_status_was_refused() -> None:
    class CancelDuringSync(FakeBackend):
        async def observe(self, job_id: str) -> Observation | None:
            await w.store.request_cancel(job_id)
            return await super().observe(job_id)

    w = world(backend=CancelDuringSync())
    w.sync()
    assert w.store.saved == []
    assert w.backend.created == [JOB]
    assert w.record().submitted


def test_pending_then_running_are_each_published_once() -> None:
    w = world(record(submitted=True))
    w.backend.jobs[JOB] = PENDING
    w.sync(times=2)
    w.now[0] += timedelta(seconds=5)
    w.backend.jobs[JOB] = RUNNING
    w.sync(times=2)
    assert w.published() == [JobState.PENDING, JobState.RUNNING]
    assert [s.state for _, s in w.store.saved] == [JobState.PENDING, JobState.RUNNING]
    assert w.record().status.started_at == w.now[0]  # the clock given, not the wall's
    assert w.backend.created == []  # submitted already


def test_the_terminal_outcome_is_written_once_and_never_overwritten() -> None:
    w = world(record(submitted=True))
    w.bus.left[JOB] = {0: Outcome(ok=True, result={"accuracy": 0.9})}
    w.backend.jobs[JOB] = COMPLETE
    w.sync(times=2)
    w.backend.jobs[JOB] = FAILED  # whatever the backend says later
    w.sync()
    (status,) = [s for _, s in w.store.saved]
    assert (status.state, status.result) == (JobState.SUCCEEDED, {"accuracy": 0.9})
    assert status.finished_at == w.now[0]
    assert w.record().status == status
    assert w.published() == [JobState.SUCCEEDED]
    assert w.backend.deleted == []  # a finished Job is left to its TTL


def test_the_last_attempts_termination_message_wins_over_an_earlier_attempts_in_redis() -> None:
    """Attempt 1 failed and stored its outcome; attempt 2 succeeded while Redis was away, so
    only its termination message says so: its result is the job's, not `{}`."""
    w = world(record(submitted=True), record(OTHER, submitted=True))
    failed = Outcome.model_validate(
        {"ok": False, "error": {"type": "RuntimeError", "message": "x"}}
    )
    for job in (JOB, OTHER):
        w.bus.left[job] = {0: failed}
        w.backend.jobs[job] = COMPLETE
    w.backend.messages[JOB] = {0: Outcome(ok=True, result={"rows": 3}).model_dump_json()}
    w.sync(JOB)
    assert (w.record().status.state, w.record().status.result) == (
        JobState.SUCCEEDED,
        {"rows": 3},
    )
    w.backend.messages[OTHER] = {0: "not an outcome: the pod's log tail"}
    w.bus.left[OTHER] = {0: Outcome(ok=True, result={"rows": 4})}  # its pod's message lost
    w.sync(OTHER)
    assert w.record(OTHER).status.result == {"rows": 4}


def test_a_job_is_dated_from_its_backends_completion_not_from_the_sync() -> None:
    ended = T0 + timedelta(milliseconds=400)
    w = world(record(submitted=True))
    w.bus.left[JOB] = {0: Outcome(ok=True, result={})}
    complete = Condition("Complete", reason="Completed", message="done", at=ended)
    w.backend.jobs[JOB] = replace(COMPLETE, conditions=(complete,))
    w.sync()
    assert w.record().status.state is JobState.SUCCEEDED
    assert w.record().status.finished_at == ended  # the sync's clock says T0 + 1 s


@pytest.mark.parametrize(
    ("began", "started_at"),
    [
        (T0 + timedelta(milliseconds=300), T0 + timedelta(milliseconds=300)),
        (T0 - timedelta(seconds=9), T0),  # a node's clock behind: not before its creation
        (T0 + timedelta(seconds=9), T0 + timedelta(seconds=1)),  # ahead: not after now
    ],
    ids=["as-said", "before-creation", "after-now"],
)
def test_a_job_starts_when_its_first_task_began_not_when_a_sync_saw_it(
    began: datetime, started_at: datetime
) -> None:
    w = world(record(submitted=True))
    w.backend.jobs[JOB] = replace(RUNNING, task_started_at=began)
    w.sync()
    assert w.record().status.state is JobState.RUNNING
    assert w.record().status.started_at == started_at  # the sync's clock says T0 + 1 s


class StartsAsItCreates(FakeBackend):
    """Starts the task as it creates the job, as the local backend does: after the sync
    read its clock, before it observes."""

    clock: list[datetime]

    async def create(self, spec: TaskSpec) -> None:
        await super().create(spec)
        self.clock[0] += timedelta(milliseconds=3)
        self.jobs[spec.job_id] = replace(RUNNING, task_started_at=self.clock[0])


def test_a_task_started_by_the_sync_itself_is_dated_when_it_started() -> None:
    w = world(backend=StartsAsItCreates())
    backend = cast(StartsAsItCreates, w.backend)
    backend.clock = w.now
    w.sync()
    assert w.record().status.state is JobState.RUNNING
    assert w.record().status.started_at == w.now[0]  # not the clock's reading before create


def test_a_job_seen_only_once_it_ended_starts_when_its_task_began() -> None:
    began = T0 + timedelta(milliseconds=200)
    w = world(record(submitted=True))
    w.bus.left[JOB] = {0: Outcome(ok=True, result={})}
    w.backend.jobs[JOB] = replace(COMPLETE, task_started_at=began)
    w.sync()
    assert w.record().status.started_at == began  # not the Job's start_time, T0


def test_a_changed_message_alone_is_saved_but_traces_no_event() -> None:
    """An Event on the backend's job for each new state or reason: the scheduler's words
    changing while the pod waits is no transition of the job."""
    w = world(record(submitted=True))
    for nodes in (3, 4):
        unschedulable = PodFacts(
            "Pending",
            unscheduled_reason="Unschedulable",
            unscheduled_message=f"0/{nodes} nodes are available: Insufficient nvidia.com/gpu.",
        )
        w.backend.jobs[JOB] = Observation(active=1, pods=(unschedulable,))
        w.sync()
    w.backend.jobs[JOB] = RUNNING
    w.sync()
    three, four = (f"0/{n} nodes are available: Insufficient nvidia.com/gpu." for n in (3, 4))
    assert [(s.state, s.message) for _, s in w.store.saved] == [
        (JobState.PENDING, three),
        (JobState.PENDING, four),
        (JobState.RUNNING, None),
    ]
    assert w.backend.traced == [
        (JobState.PENDING, "Unschedulable", three),
        (JobState.RUNNING, None, None),
    ]


def test_the_job_controller_marking_a_suspended_job_suspended_changes_nothing() -> None:
    """Its generic words ("Job suspended") would only replace kubetask's own: no write, no
    state event, no Event."""
    w = world(record(submitted=True))
    w.backend.jobs[JOB] = Observation(suspended=True)
    w.sync()
    marked = Condition("Suspended", reason="JobSuspended", message="Job suspended")
    w.backend.jobs[JOB] = Observation(suspended=True, conditions=(marked,))
    w.sync()
    assert [(s.state, s.reason, s.message) for _, s in w.store.saved] == [
        (JobState.QUEUED, "Suspended", "waiting for admission by the queue")
    ]
    assert len(w.backend.traced) == 1


def test_a_requested_cancel_deletes_the_backend_job() -> None:
    w = world(record(submitted=True, cancel_requested=True))
    w.backend.jobs[JOB] = RUNNING
    w.sync()
    assert w.backend.deleted == [JOB]
    assert (w.record().status.state, w.record().status.reason) == (
        JobState.CANCELLED,
        "Cancelled",
    )
    assert w.published() == [JobState.CANCELLED]


def test_a_job_cancelled_before_it_was_created_is_never_created() -> None:
    w = world(record(cancel_requested=True))
    w.sync()
    assert w.backend.created == []
    assert w.record().status.state is JobState.CANCELLED


def test_a_status_derived_before_a_cancel_is_not_written() -> None:
    class CancelDuringSync(FakeBackend):
        async def observe(self, job_id: str) -> Observation | None:
            await w.store.request_cancel(job_id)  # the API accepted a cancel meanwhile
            return COMPLETE

    w = world(record(submitted=True), backend=CancelDuringSync())
    w.sync()
    assert w.store.saved == []
    assert w.store.states == []


@pytest.mark.parametrize(
    ("after_s", "state", "reason"),
    [(59, JobState.PENDING, "ContainerCreating"), (61, JobState.FAILED, "StartTimeout")],
)
def test_a_job_not_started_by_its_start_deadline_fails_and_is_stopped(
    after_s: int, state: JobState, reason: str
) -> None:
    w = world(record(submitted=True, start_timeout_s=60))
    w.backend.jobs[JOB] = PENDING
    w.now[0] = T0 + timedelta(seconds=after_s)
    w.sync()
    status = w.record().status
    assert (status.state, status.reason) == (state, reason)
    assert w.backend.deleted == ([JOB] if state is JobState.FAILED else [])
    if state is JobState.FAILED:
        assert (
            status.message == "failed: it did not start running within its start_timeout_s (60 s)"
        )
        assert status.error is not None
        assert status.error.type == "StartTimeout"


def test_a_running_job_is_not_failed_by_the_start_deadline() -> None:
    w = world(record(submitted=True, start_timeout_s=60))
    w.backend.jobs[JOB] = RUNNING
    w.now[0] = T0 + timedelta(seconds=600)
    w.sync()
    assert w.record().status.state is JobState.RUNNING
    assert w.backend.deleted == []


def test_a_job_that_ran_while_the_controller_was_away_is_not_failed_by_the_start_deadline() -> None:
    """Its task ran and failed, and the Job waits to try again: the record never saw it
    running, but the backend's word is that it ran."""
    w = world(record(submitted=True, start_timeout_s=60))
    w.backend.jobs[JOB] = Observation(
        failed=1, start_time=T0, pods=(PodFacts("Failed"),), last_exit_code=3
    )
    w.now[0] = T0 + timedelta(seconds=600)
    w.sync()
    assert w.record().status.reason != "StartTimeout"
    assert not w.record().status.state.terminal  # its other attempts still run
    assert w.backend.deleted == []


def test_a_start_deadline_wakes_the_reconciler_itself() -> None:
    """A job waiting for a queue or a node changes no more, and the resync is 30 s away: as
    its start deadline passes, it is failed all the same."""
    w = world(record(submitted=True, start_timeout_s=1))
    w.backend.jobs[JOB] = PENDING
    w.now[0] = T0 + timedelta(seconds=0.9)

    def failed() -> bool:
        if JOB in w.backend.observed:  # the start's look at it came before the deadline
            w.now[0] = T0 + timedelta(seconds=2)
        return w.record().status.state.terminal

    asyncio.run(_lead_until(w, failed, within_s=2))
    status = w.record().status
    assert (status.state, status.reason) == (JobState.FAILED, "StartTimeout")
    assert w.backend.observed == [JOB, JOB]  # the start's sync, then the deadline's
    assert w.backend.deleted == [JOB]


async def _lead_until(w: World, done: Callable[[], bool], within_s: float = 0.5) -> None:
    """Run the reconciler's workers (its retries included) until `done()` holds."""
    task = asyncio.create_task(w.reconciler.lead())
    try:
        for _ in range(int(within_s * 1000)):
            if done():
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"not done within {within_s} s")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_after_the_same_error_five_times_the_job_is_given_up_and_stopped() -> None:
    w = world(record(submitted=True))
    w.backend.failing[JOB] = OverflowError("date value out of range")
    asyncio.run(_lead_until(w, lambda: w.record().status.state.terminal))
    assert w.backend.observed == [JOB] * GIVE_UP_AFTER  # then no more observing
    status = w.record().status
    assert (status.state, status.reason) == (JobState.FAILED, "ControllerError")
    assert status.message == (
        "failed: kubetask could not handle this job: OverflowError: date value out of range; "
        "the server's log says more"
    )
    assert w.backend.deleted == [JOB]  # what ran for it is stopped
    assert w.published() == [JobState.FAILED]


def test_a_job_never_created_before_its_start_deadline_fails_start_timeout() -> None:
    """The API server refused every create until the deadline (or we were away): the job
    fails StartTimeout, rather than wait queued forever while the deadline's wake-up, re-armed
    at each sync, came again at once (hundreds of syncs a second)."""
    w = world(record(start_timeout_s=4))
    w.now[0] = T0 + timedelta(seconds=10)  # past it, never created
    w.sync()
    status = w.record().status
    assert (status.state, status.reason) == (JobState.FAILED, "StartTimeout")
    assert w.backend.created == []


def test_the_store_away_for_long_never_gives_a_job_up() -> None:
    """Redis restarting for a minute: every sync fails the same way, far more than five
    times; the job is not failed for it, and ends as its task did once Redis is back."""
    w = world(record(submitted=True))
    w.store.away = 4 * GIVE_UP_AFTER
    w.backend.jobs[JOB] = COMPLETE
    w.bus.left[JOB] = {0: Outcome(ok=True, result={"rows": 3})}
    asyncio.run(_lead_until(w, lambda: w.record().status.state.terminal, within_s=2))
    assert w.store.away == 0
    status = w.record().status
    assert (status.state, status.result) == (JobState.SUCCEEDED, {"rows": 3})
    assert w.backend.deleted == []


def test_a_bad_record_does_not_stop_the_sync_of_the_others() -> None:
    w = world(record(JOB), record(OTHER, submitted=True))
    w.store.broken.add(JOB)
    w.backend.jobs[OTHER] = RUNNING
    asyncio.run(_lead_until(w, lambda: w.record(OTHER).status.state is JobState.RUNNING))
    assert w.published(OTHER) == [JobState.RUNNING]
    assert w.store.states == [(OTHER, JobState.RUNNING, None)]
    assert w.backend.created == []  # the bad one: nothing done with it


def test_a_record_broken_for_hours_keeps_its_capped_wait() -> None:
    """Over a thousand failed syncs in a row (a day at the cap): the wait stays the cap; the
    doubling no longer overflows and takes the reconciler's workers down with it."""
    for failures in (1025, 1026, 100_000):
        assert RetryPolicy().delay_s(failures, jitter=0.5, retry_after_s=None) == 60.0


class SlowCreates(FakeBackend):
    """A backend whose creates each take a while (an API server's round trip): counts how
    many are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0

    async def create(self, spec: TaskSpec) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.02)
        self.in_flight -= 1
        await super().create(spec)


def test_a_burst_of_submissions_is_created_sixteen_at_a_time() -> None:
    ids = [f"{i:016x}" for i in range(40)]
    w = world(*(record(i) for i in ids), backend=SlowCreates())
    backend = cast(SlowCreates, w.backend)
    asyncio.run(_lead_until(w, lambda: all(w.record(i).submitted for i in ids)))
    assert sorted(backend.created) == ids  # each once
    assert backend.most_in_flight == 16


class CountedObserves(FakeBackend):
    """Each observe takes a while; counts how many are in flight at once, and in which
    look at every job (`looks`: observes so far // the jobs)."""

    def __init__(self, jobs: int) -> None:
        super().__init__()
        self.jobs_count = jobs
        self.in_flight = 0
        self.most_in_flight: dict[int, int] = {}

    async def observe(self, job_id: str) -> Observation | None:
        look = len(self.observed) // self.jobs_count
        self.in_flight += 1
        self.most_in_flight[look] = max(self.most_in_flight.get(look, 0), self.in_flight)
        await asyncio.sleep(0.005)
        self.in_flight -= 1
        return await super().observe(job_id)


def test_the_periodic_resync_looks_at_two_jobs_at_a_time_the_start_at_sixteen() -> None:
    """The look when leading starts may have a backlog's Jobs to create; the periodic one
    seldom has anything to wait for, and sixteen side by side would hold the event loop."""
    ids = [f"{i:016x}" for i in range(1, 41)]
    w = world(
        *(record(i, submitted=True) for i in ids),
        backend=CountedObserves(len(ids)),
        resync_s=0.05,
    )
    backend = cast(CountedObserves, w.backend)
    for job_id in ids:
        backend.jobs[job_id] = RUNNING
    asyncio.run(_lead_until(w, lambda: len(backend.observed) >= 3 * len(ids), within_s=5))
    assert backend.most_in_flight[0] == 16  # the start's look
    assert backend.most_in_flight[1] == 2  # the periodic ones
    assert backend.most_in_flight[2] == 2


class SlowObserves(FakeBackend):
    """Each observe takes a while; notes how many were done when a job was created."""

    def __init__(self) -> None:
        super().__init__()
        self.observed_before: dict[str, int] = {}
        self.observing = asyncio.Event()
        self.created_one = asyncio.Event()

    async def observe(self, job_id: str) -> Observation | None:
        self.observing.set()
        await asyncio.sleep(0.002)
        return await super().observe(job_id)

    async def create(self, spec: TaskSpec) -> None:
        self.observed_before[spec.job_id] = len(self.observed)
        self.created_one.set()
        await super().create(spec)


def test_a_submission_waits_for_no_resync_of_the_jobs_already_open() -> None:
    """The resync's look at every open job queues behind the changes."""
    open_ids = [f"{i:016x}" for i in range(1, 301)]
    w = world(*(record(i, submitted=True) for i in open_ids), backend=SlowObserves())
    backend = cast(SlowObserves, w.backend)
    for job_id in open_ids:
        backend.jobs[job_id] = RUNNING
    new = "00000000000fffff"

    async def scenario() -> None:
        task = asyncio.create_task(w.reconciler.lead())
        try:
            await asyncio.wait_for(backend.observing.wait(), 5)  # the start's resync is on
            w.store.records[new] = record(new)
            w.reconciler.enqueue(new)
            await asyncio.wait_for(backend.created_one.wait(), 5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert backend.observed_before[new] < 50  # the workers' syncs in flight, not 300


class TellingBackend(FakeBackend):
    """Tells of a change as it creates the job (the local backend starts its pod then) and,
    with `starts_later`, of one more right after the sync's observe (the pod started)."""

    def __init__(self, *, starts_later: bool) -> None:
        super().__init__()
        self.starts_later = starts_later

    async def create(self, spec: TaskSpec) -> None:
        await super().create(spec)
        self.jobs[spec.job_id] = PENDING
        self.changes.put_nowait(spec.job_id)
        await asyncio.sleep(0.005)  # the reconciler hears of it while this sync goes on

    async def observe(self, job_id: str) -> Observation | None:
        seen = await super().observe(job_id)
        if self.starts_later:
            self.starts_later = False
            self.jobs[job_id] = RUNNING
            self.changes.put_nowait(job_id)
        return seen


async def _run_for(w: World, seconds: float) -> None:
    """The reconciler as a server runs it (following the backend too), for a while."""
    task = asyncio.create_task(w.reconciler.run())
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_change_told_before_the_sync_observed_costs_no_second_sync() -> None:
    w = world(backend=TellingBackend(starts_later=False))
    asyncio.run(_run_for(w, 0.1))
    assert w.backend.created == [JOB]
    assert w.backend.observed == [JOB], "the sync's own observe saw what it was told"
    assert w.published() == [JobState.PENDING]


def test_a_change_told_after_the_sync_observed_is_synced_again() -> None:
    w = world(backend=TellingBackend(starts_later=True))
    asyncio.run(_run_for(w, 0.1))
    assert w.backend.observed == [JOB, JOB]
    assert w.published() == [JobState.PENDING, JobState.RUNNING]


def test_a_record_this_version_refuses_is_never_created() -> None:
    """Accepted by an older version, refused by today's rules (`JobRecord.refused`): failed
    with their words, nothing made on the backend."""
    w = world(record().model_copy(update={"refused": "labels.job-name.[key]: reserved"}))
    w.sync()
    status = w.record().status
    assert (status.state, status.reason) == (JobState.FAILED, "CreateRejected")
    assert "this version refuses its request: labels.job-name.[key]: reserved" in (
        status.message or ""
    )
    assert w.backend.created == []


class BrokenIndexStore(FakeStore):
    """A store (Maintained) whose one-time index build fails every time."""

    def __init__(self) -> None:
        super().__init__(record())
        self.expired = 0

    async def build_indexes(self) -> int:
        raise ValueError("a record nothing can index")

    async def expire_due(self) -> int:
        self.expired += 1
        return 0


def test_expiry_goes_on_while_the_index_build_fails() -> None:
    """A store written by an older version whose index build fails (one record it cannot
    read) still has its finished records expired: retention never stops."""
    store = BrokenIndexStore()
    w = world(resync_s=0.01)

    async def tend() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w.reconciler._tend(store), 0.2)

    asyncio.run(tend())
    assert store.expired >= 3
