"""next_status: how the stored status follows a derived state; and the job record itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetask.controller.records import JobRecord, JobStatus, next_status
from kubetask.controller.states import Derived
from kubetask.models import (
    BackendRef,
    ErrorInfo,
    JobRequest,
    JobState,
    ProgressEvent,
)

_S = JobState
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=5)
T2 = T0 + timedelta(seconds=60)


def record(**request: object) -> JobRecord:
    req = JobRequest.model_validate({"kind": "noop", **request})
    return JobRecord(id="0000000000abcdef", request=req, created_at=T0)


# --- next_status ----------------------------------------------------------------------------


def test_unchanged_status_is_none() -> None:
    current = JobStatus(state=_S.PENDING, reason="ErrImagePull", message="m", attempts=1)
    derived = Derived(_S.PENDING, "ErrImagePull", "m")
    assert next_status(current, derived, attempts=1, now=T1) is None


def test_a_changed_message_is_a_change() -> None:
    current = JobStatus(state=_S.PENDING, reason="ErrImagePull", message="old", attempts=1)
    new = next_status(current, Derived(_S.PENDING, "ErrImagePull", "new"), attempts=1, now=T1)
    assert new is not None
    assert new.message == "new"


@pytest.mark.parametrize("state", [_S.SUCCEEDED, _S.FAILED, _S.CANCELLED])
@pytest.mark.parametrize("derived_state", list(JobState))
def test_nothing_changes_a_terminal_status(state: JobState, derived_state: JobState) -> None:
    current = JobStatus(state=state, reason="Done", finished_at=T0)
    assert next_status(current, Derived(derived_state, "Other"), attempts=5, now=T1) is None


def test_started_at_is_set_on_first_running_and_kept_afterwards() -> None:
    queued = JobStatus()
    running = next_status(queued, Derived(_S.RUNNING), attempts=1, now=T1)
    assert running is not None
    assert running.state is _S.RUNNING
    assert running.started_at == T1
    assert running.finished_at is None

    # Back to pending (a retry) and running again: the first start stays.
    pending = next_status(running, Derived(_S.PENDING, "RetryBackoff"), attempts=1, now=T2)
    assert pending is not None
    assert pending.started_at == T1
    again = next_status(pending, Derived(_S.RUNNING), attempts=2, now=T2 + timedelta(seconds=1))
    assert again is not None
    assert again.started_at == T1


def test_started_at_is_when_the_backend_says_the_task_began_where_it_says() -> None:
    running = next_status(JobStatus(), Derived(_S.RUNNING), attempts=1, now=T2, ran_at=T1)
    assert running is not None
    assert running.started_at == T1


def test_started_at_stays_unset_while_not_running() -> None:
    new = next_status(JobStatus(), Derived(_S.PENDING, "ErrImagePull", "x"), attempts=1, now=T1)
    assert new is not None
    assert new.started_at is None


@pytest.mark.parametrize("state", [_S.SUCCEEDED, _S.FAILED, _S.CANCELLED])
def test_finished_at_is_set_on_a_terminal_state(state: JobState) -> None:
    running = JobStatus(state=_S.RUNNING, reason=None, started_at=T1, attempts=1)
    new = next_status(running, Derived(state, "Why", "because"), attempts=1, now=T2)
    assert new is not None
    assert new.state is state
    assert (new.reason, new.message) == ("Why", "because")
    assert new.started_at == T1
    assert new.finished_at == T2


def test_a_job_ends_when_its_backend_says_it_did_not_when_a_sync_saw_it() -> None:
    """A controller that was away (restarted, lagging) dates a job from the backend's
    condition, as a Kubernetes Job's completion time, not from its own late sync."""
    running = JobStatus(state=_S.RUNNING, reason=None, started_at=T0, attempts=1)
    ended = T1 + timedelta(seconds=1)
    new = next_status(running, Derived(_S.SUCCEEDED, "Completed", at=ended), attempts=1, now=T2)
    assert new is not None
    assert new.finished_at == ended


@pytest.mark.parametrize(
    ("at", "finished_at"),
    [(T0 - timedelta(seconds=9), T1), (T2 + timedelta(seconds=9), T2)],
    ids=["before-its-start", "after-now"],
)
def test_a_backend_time_out_of_bounds_is_kept_within_the_jobs_start_and_now(
    at: datetime, finished_at: datetime
) -> None:
    """Clocks apart (the API server's and this controller's)."""
    running = JobStatus(state=_S.RUNNING, reason=None, started_at=T1, attempts=1)
    new = next_status(running, Derived(_S.FAILED, "x", at=at), attempts=1, now=T2)
    assert new is not None
    assert new.finished_at == finished_at


def test_finished_at_is_unset_while_active() -> None:
    new = next_status(JobStatus(), Derived(_S.RUNNING), attempts=1, now=T1)
    assert new is not None
    assert new.finished_at is None


def test_a_job_seen_succeeded_straight_from_queued_has_a_start_time() -> None:
    new = next_status(JobStatus(), Derived(_S.SUCCEEDED, "Completed"), attempts=1, now=T1)
    assert new is not None
    assert new.finished_at == T1
    assert new.started_at is not None
    assert new.started_at <= new.finished_at


def test_a_job_that_never_ran_has_no_start_time() -> None:
    timed_out = Derived(_S.FAILED, "StartTimeout", "never started")
    new = next_status(JobStatus(state=_S.PENDING), timed_out, attempts=1, now=T1)
    assert new is not None
    assert new.started_at is None
    failed = next_status(JobStatus(), Derived(_S.FAILED, "x"), attempts=1, now=T1, ran_at=T0)
    assert failed is not None
    assert failed.started_at == T0


def test_attempts_never_decrease() -> None:
    current = JobStatus(state=_S.RUNNING, reason=None, message=None, started_at=T0, attempts=3)
    new = next_status(current, Derived(_S.PENDING, "RetryBackoff", "r"), attempts=1, now=T1)
    assert new is not None
    assert new.attempts == 3
    # Fewer attempts alone is no change at all.
    assert next_status(current, Derived(_S.RUNNING), attempts=0, now=T1) is None


def test_attempts_increase_is_a_change() -> None:
    current = JobStatus(state=_S.RUNNING, reason=None, started_at=T0, attempts=1)
    new = next_status(current, Derived(_S.RUNNING), attempts=2, now=T1)
    assert new is not None
    assert new.attempts == 2


def test_result_is_carried_into_a_succeeded_status() -> None:
    running = JobStatus(state=_S.RUNNING, reason=None, started_at=T0, attempts=1)
    new = next_status(
        running, Derived(_S.SUCCEEDED, "Completed"), attempts=1, now=T1, result={"steps": 3}
    )
    assert new is not None
    assert new.result == {"steps": 3}
    assert new.error is None


def test_error_is_carried_into_a_failed_status() -> None:
    running = JobStatus(state=_S.RUNNING, reason=None, started_at=T0, attempts=1)
    error = ErrorInfo(type="MemoryError", message="oom", exit_code=1)
    new = next_status(
        running, Derived(_S.FAILED, "BackoffLimitExceeded"), attempts=1, now=T1, error=error
    )
    assert new is not None
    assert new.error == error
    assert new.result is None


def test_next_status_does_not_mutate_the_current_status() -> None:
    current = JobStatus()
    next_status(current, Derived(_S.RUNNING), attempts=1, now=T1)
    assert current == JobStatus()


# --- JobRecord ------------------------------------------------------------------------------


def test_start_deadline_without_start_timeout_never_passes() -> None:
    assert not record().start_deadline_passed(T0 + timedelta(days=365))


def test_start_deadline_passes_only_after_start_timeout() -> None:
    rec = record(start_timeout_s=30)
    assert not rec.start_deadline_passed(T0)
    assert not rec.start_deadline_passed(T0 + timedelta(seconds=30))
    assert rec.start_deadline_passed(T0 + timedelta(seconds=30, milliseconds=1))


def test_start_deadline_never_passes_once_started() -> None:
    rec = record(start_timeout_s=30)
    started = rec.model_copy(
        update={"status": JobStatus(state=_S.RUNNING, reason=None, started_at=T1)}
    )
    assert not started.start_deadline_passed(T0 + timedelta(hours=1))


def test_view_shows_the_record_status_progress_and_backend() -> None:
    rec = record(name="my-run", labels={"team": "ml"}, retries=2)
    error = ErrorInfo(type="RuntimeError", message="boom")
    status = JobStatus(
        state=_S.FAILED,
        reason="BackoffLimitExceeded",
        message="3 failed attempt(s)",
        started_at=T1,
        finished_at=T2,
        attempts=3,
        error=error,
    )
    rec = rec.model_copy(update={"status": status, "cancel_requested": True})
    progress = ProgressEvent(job_id=rec.id, seq=7, timestamp=T1, current=2, total=4, progress=0.5)
    ref = BackendRef(backend="kubernetes", name="kt-0000000000abcdef", namespace="ml")

    view = rec.view(backend=ref, progress=progress)

    assert view.id == rec.id
    assert view.kind == "noop"
    assert view.name == "my-run"
    assert view.state is _S.FAILED
    assert (view.reason, view.message) == ("BackoffLimitExceeded", "3 failed attempt(s)")
    assert (view.created_at, view.started_at, view.finished_at) == (T0, T1, T2)
    assert view.attempts == 3
    assert view.labels == {"team": "ml"}
    assert view.progress == progress
    assert view.error == error
    assert view.result is None
    assert view.cancel_requested
    assert view.request == rec.request
    assert view.backend == ref


def test_view_of_a_new_record_is_queued_without_progress() -> None:
    view = record().view(backend=BackendRef(backend="local", name="x"), progress=None)
    assert view.state is _S.QUEUED
    assert view.progress is None
    assert view.started_at is None
    assert view.attempts == 0
