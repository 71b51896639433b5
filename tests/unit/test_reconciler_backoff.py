"""The reconciler backs off a job whose sync failed (exponentially, with jitter, never less
than a Retry-After the backend was told), whatever wakes the job up meanwhile (resyncs,
change notices), and starts again from the shortest wait once a sync gets through; a create
the backend refuses for good fails the job instead. It reconciles only while it leads."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import UTC, datetime
from typing import cast

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from kubetask.controller.backends.base import Backend, BackendError, CreateRejected, TaskSpec
from kubetask.controller.bus import EventBus
from kubetask.controller.reconciler import GIVE_UP_AFTER, Reconciler, RetryPolicy
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.states import Observation, PodFacts
from kubetask.controller.store import Store
from kubetask.models import BackendRef, JobRequest, JobState, Outcome

JOB = JobRecord(
    id="0000000000000001", request=JobRequest(kind="noop"), created_at=datetime.now(UTC)
)


class OneJobStore:
    """One unfinished job, as far as the reconciler reads it here."""

    async def get(self, job_id: str) -> JobRecord | None:
        return JOB if job_id == JOB.id else None

    async def unfinished(self) -> list[str]:
        return [JOB.id]

    async def mark_submitted(self, record: JobRecord) -> None:
        raise AssertionError("never created")


class ThrottledBackend:
    """Answers every create with "429, retry after `retry_after_s`" and notes when."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self.creates: list[float] = []

    async def create(self, spec: TaskSpec) -> None:
        self.creates.append(time.monotonic())
        raise BackendError("429 Too Many Requests", retry_after_s=self.retry_after_s)


def reconciler(backend: ThrottledBackend) -> Reconciler:
    return Reconciler(
        retry=RetryPolicy(base_s=0.01, max_s=0.01),  # the Retry-After is the longer wait
        store=cast(Store, OneJobStore()),  # only get, unfinished and mark_submitted are used
        bus=EventBus(aioredis.Redis()),  # never reached: no status is written here
        backend=cast(Backend, backend),  # only changes and create are used
        spec_for=lambda record: TaskSpec(
            job_id=record.id, kind="noop", image="", command=(), env={}, retries=0, timeout_s=None
        ),
        resync_s=0.02,  # a resync every 20 ms...
    )


async def _retry_after_is_waited_out() -> list[float]:
    backend = ThrottledBackend(retry_after_s=0.3)
    loop = reconciler(backend)
    task = asyncio.create_task(loop.run())
    for _ in range(100):  # ... and a change notice every 10 ms, for a second
        backend.changes.put_nowait(JOB.id)
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return backend.creates


def test_a_job_told_to_retry_after_is_not_synced_again_before() -> None:
    creates = asyncio.run(_retry_after_is_waited_out())
    gaps = [later - earlier for earlier, later in itertools.pairwise(creates)]
    assert 2 <= len(creates) <= 5
    assert min(gaps) >= 0.3


async def _follower_drops_changes() -> tuple[int, int]:
    backend = ThrottledBackend(retry_after_s=0.01)
    loop = reconciler(backend)
    following = asyncio.create_task(loop.follow_backend())  # changes, but not leading
    for _ in range(10):
        backend.changes.put_nowait(JOB.id)
        loop.enqueue(JOB.id)  # no wake-ups configured: nobody to tell
    await asyncio.sleep(0.1)
    idle = len(backend.creates)
    leading = asyncio.create_task(loop.lead())
    await asyncio.sleep(0.1)
    leading.cancel()
    await asyncio.sleep(0.05)
    stopped = len(backend.creates)
    await asyncio.sleep(0.1)
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(following, leading)
    assert stopped > idle
    return idle, len(backend.creates) - stopped


def test_only_a_leading_reconciler_syncs_and_it_stops_when_leadership_ends() -> None:
    idle, after = asyncio.run(_follower_drops_changes())
    assert (idle, after) == (0, 0)


# --- the back-off itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "jitter", "retry_after_s", "delay_s"),
    [
        (1, 0.5, None, 1.0),
        (2, 0.5, None, 2.0),
        (3, 0.5, None, 4.0),
        (7, 0.5, None, 60.0),  # capped
        (30, 0.5, None, 60.0),
        (1, 0.0, None, 0.5),  # jitter spans [0.5, 1.5) of the back-off
        (1, 0.999, None, 1.499),
        (7, 0.999, None, 60.0),
        (30, 0.0, None, 30.0),  # at the cap, retries spread over its second half
        (1, 0.5, 30.0, 30.0),  # a longer Retry-After wins
        (3, 0.5, 2.0, 4.0),  # a shorter one does not
    ],
)
def test_the_wait_doubles_per_failure_with_jitter_up_to_a_cap(
    failures: int, jitter: float, retry_after_s: float | None, delay_s: float
) -> None:
    wait = RetryPolicy().delay_s(failures, jitter=jitter, retry_after_s=retry_after_s)
    assert wait == pytest.approx(delay_s)


class RecordingStore:
    """One job, its status as last saved, and whether it was marked submitted."""

    def __init__(self) -> None:
        self.record = JOB
        self.saved: list[JobStatus] = []

    async def get(self, job_id: str) -> JobRecord | None:
        return self.record if job_id == JOB.id else None

    async def unfinished(self) -> list[str]:
        return [] if self.record.status.state.terminal else [JOB.id]

    async def mark_submitted(self, record: JobRecord) -> None:
        self.record = self.record.model_copy(update={"submitted": True})

    async def save_status(self, record: JobRecord, status: JobStatus, *, at: datetime) -> bool:
        self.saved.append(status)
        submitted = self.record.submitted or record.submitted  # the mark goes with the status
        self.record = self.record.model_copy(update={"status": status, "submitted": submitted})
        return True


class RecordingBus:
    async def outcomes(self, job_id: str, completions: int) -> dict[int, Outcome]:
        return {}


class ScriptedBackend:
    """create and observe fail as scripted (an exception, or None: get through); notes when
    each was called."""

    def __init__(self, creates: list[Exception | None], observes: list[Exception | None]) -> None:
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self._creates = creates
        self._observes = observes
        self.created: list[float] = []
        self.observed: list[float] = []
        self.transitions: list[JobState] = []
        self._observing = asyncio.Event()

    async def observed_times(self, count: int) -> None:
        """Until observe was called `count` times."""
        while len(self.observed) < count:
            self._observing.clear()
            await self._observing.wait()

    def ref(self, job_id: str, *, tenant: str = "", namespace: str | None = None) -> BackendRef:
        return BackendRef(backend="local", name=job_id)

    def watches(self, namespace: str) -> bool:
        return True

    async def create(self, spec: TaskSpec) -> None:
        self.created.append(time.monotonic())
        failure = self._creates.pop(0) if self._creates else None
        if failure is not None:
            raise failure

    async def observe(self, job_id: str) -> Observation | None:
        self.observed.append(time.monotonic())
        self._observing.set()
        failure = self._observes.pop(0) if self._observes else None
        if failure is not None:
            raise failure
        return Observation(active=1, pods=(PodFacts("Running"),))

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        return {}

    async def record_transition(self, job_id: str, status: JobStatus) -> None:
        self.transitions.append(status.state)


def scripted(backend: ScriptedBackend, store: RecordingStore, retry: RetryPolicy) -> Reconciler:
    return Reconciler(
        store=cast(Store, store),
        bus=cast(EventBus, RecordingBus()),
        backend=cast(Backend, backend),
        spec_for=lambda record: TaskSpec(
            job_id=record.id, kind="noop", image="", command=(), env={}, retries=0, timeout_s=None
        ),
        retry=retry,
        jitter=lambda: 0.5,  # the back-off itself, no more, no less
    )


async def _backs_off_then_resets() -> ScriptedBackend:
    down = BackendError("kubernetes API: 503 Service Unavailable")
    backend = ScriptedBackend(creates=[down, down, down], observes=[None, down])
    store = RecordingStore()
    task = asyncio.create_task(scripted(backend, store, RetryPolicy(base_s=0.1, max_s=10)).run())
    await backend.observed_times(1)
    await asyncio.sleep(0.1)
    backend.changes.put_nowait(JOB.id)  # the next sync fails once more: a fresh back-off
    await backend.observed_times(3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert store.record.submitted
    return backend


def test_failed_syncs_back_off_exponentially_and_a_success_resets_it() -> None:
    backend = asyncio.run(_backs_off_then_resets())
    gaps = [later - earlier for earlier, later in itertools.pairwise(backend.created)]
    assert len(gaps) == 3
    for gap, wait in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert wait <= gap < wait + 0.15
    after_reset = backend.observed[2] - backend.observed[1]
    assert 0.1 <= after_reset < 0.25  # not 0.8: the count started again


async def _rejected() -> tuple[RecordingStore, ScriptedBackend]:
    refusal = 'jobs.batch "kt-x" is forbidden: exceeded quota: jobs, requested: count/jobs=1'
    backend = ScriptedBackend(creates=[CreateRejected(refusal)], observes=[AssertionError()])
    store = RecordingStore()
    await scripted(backend, store, RetryPolicy()).sync(JOB.id)
    return store, backend


def test_a_create_refused_for_good_fails_the_job_with_the_apis_words() -> None:
    store, backend = asyncio.run(_rejected())
    assert len(backend.created) == 1
    assert backend.observed == []  # never created: nothing to observe
    assert not store.record.submitted
    (status,) = store.saved
    assert (status.state, status.reason) == (JobState.FAILED, "CreateRejected")
    assert status.message == (  # plain words first, the API's own after
        'failed: the backend refused to create it: jobs.batch "kt-x" is forbidden: '
        "exceeded quota: jobs, requested: count/jobs=1"
    )
    assert status.error is not None
    assert status.error.type == "CreateRejected"
    assert backend.transitions == [JobState.FAILED]


class DeletingBackend(ScriptedBackend):
    async def delete(self, job_id: str) -> None:
        self.deleted = True


async def _gives_up() -> tuple[RecordingStore, DeletingBackend]:
    broken = OverflowError("date value out of range")  # what no retry will mend
    backend = DeletingBackend(creates=[], observes=[broken] * GIVE_UP_AFTER)
    store = RecordingStore()
    task = asyncio.create_task(scripted(backend, store, RetryPolicy(base_s=0.01, max_s=0.01)).run())
    for _ in range(200):
        if store.record.status.state.terminal:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return store, backend


def test_a_job_whose_sync_fails_the_same_way_again_and_again_is_failed_not_retried_forever() -> (
    None
):
    store, backend = asyncio.run(_gives_up())
    assert len(backend.observed) == GIVE_UP_AFTER  # then no more observing
    (status,) = store.saved
    assert (status.state, status.reason) == (JobState.FAILED, "ControllerError")
    assert status.message == (
        "failed: kubetask could not handle this job: OverflowError: date value out of range; "
        "the server's log says more"
    )
    assert backend.deleted  # what ran for it is stopped


async def _synced_through(faults: list[Exception | None]) -> tuple[RecordingStore, DeletingBackend]:
    """A job whose observations fail as `faults` say, synced until past the last of them."""
    backend = DeletingBackend(creates=[], observes=faults)
    store = RecordingStore()
    task = asyncio.create_task(scripted(backend, store, RetryPolicy(base_s=0.01, max_s=0.01)).run())
    await asyncio.wait_for(backend.observed_times(len(faults) + 1), 10)  # still syncing it
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return store, backend


def test_different_errors_in_a_row_are_retried_not_given_up() -> None:
    """Errors that differ each time are passing faults, not a job nothing can handle."""
    faults: list[Exception | None] = [RuntimeError(f"fault {i}") for i in range(GIVE_UP_AFTER + 2)]
    store, backend = asyncio.run(_synced_through(faults))
    assert JobState.FAILED not in [status.state for status in store.saved]
    assert not hasattr(backend, "deleted")


@pytest.mark.parametrize(
    "fault",
    [
        redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        redis_errors.ResponseError(
            "MISCONF Errors writing to the AOF file: No space left on device"
        ),
        redis_errors.NoScriptError("No matching script. Please use EVAL."),
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
        redis_errors.ResponseError(
            "Error running script (call to f_1): @user_script:9: OOM command not allowed"
        ),
    ],
    ids=["oom", "misconf", "noscript", "readonly", "oom-in-a-script"],
)
def test_the_store_unable_to_serve_is_never_counted_against_the_job(fault: Exception) -> None:
    """Redis full (maxmemory, noeviction), its disk full, restarted without the scripts: an
    installation's fault, not the job's. Its syncs go on; it is never failed for it."""
    store, backend = asyncio.run(_synced_through([fault] * (GIVE_UP_AFTER * 2)))
    assert JobState.FAILED not in [status.state for status in store.saved]
    assert not hasattr(backend, "deleted")
