"""derive_state: the one mapping from observable facts to a job's state; and transitions."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kubetask.controller.states import (
    ALLOWED,
    Condition,
    Derived,
    JobFacts,
    Observation,
    PodFacts,
    can_transition,
    derive_state,
    failure_due,
)
from kubetask.models import TERMINAL_STATES, JobState

_S = JobState


def derive(
    observation: Observation | None,
    *,
    submitted: bool = True,
    cancel_requested: bool = False,
    start_deadline_passed: bool = False,
    tasks_succeeded: bool = False,
) -> Derived:
    return derive_state(
        JobFacts(
            observation=observation,
            submitted=submitted,
            cancel_requested=cancel_requested,
            start_deadline_passed=start_deadline_passed,
            tasks_succeeded=tasks_succeeded,
        )
    )


RUNNING_POD = PodFacts(phase="Running")


# --- the rules, in order --------------------------------------------------------------------


@pytest.mark.parametrize(
    "observation",
    [
        None,
        Observation(),
        Observation(pods=(RUNNING_POD,), active=1),
        Observation(conditions=(Condition("Suspended"),), suspended=True),
    ],
)
def test_cancel_request_wins_over_everything_undecided_and_asks_to_stop(
    observation: Observation | None,
) -> None:
    derived = derive(observation, cancel_requested=True, start_deadline_passed=True)
    assert derived.state is _S.CANCELLED
    assert derived.reason == "Cancelled"
    assert derived.stop


@pytest.mark.parametrize(
    ("observation", "state"),
    [
        (Observation(conditions=(Condition("Complete"),), succeeded=1), _S.SUCCEEDED),
        (Observation(conditions=(Condition("SuccessCriteriaMet"),), active=1), _S.SUCCEEDED),
        (Observation(conditions=(Condition("Failed", reason="BackoffLimitExceeded"),)), _S.FAILED),
    ],
)
def test_a_cancel_after_the_outcome_was_decided_changes_nothing(
    observation: Observation, state: _S
) -> None:
    """The Job ended before the cancel reached the controller (it was away, or behind):
    the outcome stands, and nothing deletes the Job with its pods' words."""
    derived = derive(observation, cancel_requested=True)
    assert derived.state is state
    assert not derived.stop


def test_job_gone_after_submit_is_failed_job_deleted() -> None:
    derived = derive(None, submitted=True)
    assert derived.state is _S.FAILED
    assert derived.reason == "JobDeleted"
    assert derived.message
    assert not derived.stop  # nothing left to delete


def test_job_gone_after_every_task_succeeded_is_succeeded() -> None:
    derived = derive(None, submitted=True, tasks_succeeded=True)
    assert (derived.state, derived.reason) == (_S.SUCCEEDED, "Completed")
    assert derive(None, submitted=True, tasks_succeeded=True, cancel_requested=True).state is (
        _S.CANCELLED
    )


def test_job_not_yet_created_is_queued() -> None:
    derived = derive(None, submitted=False)
    assert derived.state is _S.QUEUED
    assert derived.reason == "Accepted"
    assert not derived.stop


@pytest.mark.parametrize(
    ("condition_type", "state"),
    [
        ("Failed", _S.FAILED),
        ("FailureTarget", _S.FAILED),
        ("Complete", _S.SUCCEEDED),
        ("SuccessCriteriaMet", _S.SUCCEEDED),
    ],
)
def test_finished_conditions_decide_the_state_with_their_reason_and_message(
    condition_type: str, state: JobState
) -> None:
    cond = Condition(condition_type, reason="SomeReason", message="what happened")
    # Even with a running pod still reported, the condition is the final word.
    derived = derive(Observation(conditions=(cond,), pods=(RUNNING_POD,), active=1))
    assert derived.state is state
    assert derived.reason == "SomeReason"
    assert derived.message == "what happened"
    assert not derived.stop


@pytest.mark.parametrize("condition_type", ["Failed", "FailureTarget", "Complete"])
def test_a_condition_without_reason_uses_its_type_as_reason(condition_type: str) -> None:
    derived = derive(Observation(conditions=(Condition(condition_type),)))
    assert derived.reason == condition_type


@pytest.mark.parametrize(
    ("final", "early", "state"),
    [("Complete", "SuccessCriteriaMet", _S.SUCCEEDED), ("Failed", "FailureTarget", _S.FAILED)],
)
def test_a_job_ends_when_its_outcome_was_decided_however_late_the_final_word_is_seen(
    final: str, early: str, state: JobState
) -> None:
    """The Job controller writes the early condition as soon as the outcome is decided and
    the final one once the pods stopped (a second or more later): seen together or one by
    one, the job ended at the early one's time, with the final one's reason."""
    decided = datetime(2026, 3, 1, 12, 0, 25, tzinfo=UTC)
    said = Condition(early, reason="Early", at=decided)
    final_word = Condition(final, reason="Final", at=decided.replace(second=26))
    alone = derive(Observation(conditions=(said,)))
    both = derive(Observation(conditions=(said, final_word)))
    assert (alone.state, alone.at) == (both.state, both.at) == (state, decided)
    assert (alone.reason, both.reason) == ("Early", "Final")


def test_failed_wins_over_complete_when_both_are_present() -> None:
    obs = Observation(conditions=(Condition("Complete"), Condition("Failed", reason="X")))
    assert derive(obs).state is _S.FAILED


@pytest.mark.parametrize("condition_type", ["Failed", "Complete", "Suspended"])
def test_conditions_with_status_false_are_ignored(condition_type: str) -> None:
    obs = Observation(conditions=(Condition(condition_type, status=False),))
    assert derive(obs) == Derived(_S.QUEUED, "Created", "the Job is created; no pod yet")


def test_start_deadline_passed_without_a_running_pod_fails_and_stops() -> None:
    obs = Observation(pods=(PodFacts(phase="Pending", waiting_reason="ImagePullBackOff"),))
    derived = derive(obs, start_deadline_passed=True)
    assert derived.state is _S.FAILED
    assert derived.reason == "StartTimeout"
    assert derived.stop


def test_start_deadline_passed_while_suspended_still_fails() -> None:
    derived = derive(Observation(suspended=True), start_deadline_passed=True)
    assert (derived.state, derived.reason, derived.stop) == (_S.FAILED, "StartTimeout", True)


def test_start_deadline_does_not_fail_a_running_job() -> None:
    derived = derive(Observation(pods=(RUNNING_POD,), active=1), start_deadline_passed=True)
    assert derived.state is _S.RUNNING
    assert not derived.stop


def test_start_deadline_does_not_override_a_finished_condition() -> None:
    obs = Observation(conditions=(Condition("Complete"),), succeeded=1)
    assert derive(obs, start_deadline_passed=True).state is _S.SUCCEEDED


def test_suspended_flag_is_queued_with_the_backends_message() -> None:
    derived = derive(Observation(suspended=True, suspended_message="waiting for a local slot"))
    assert derived == Derived(_S.QUEUED, "Suspended", "waiting for a local slot")


def test_a_job_let_go_by_its_queue_is_admitted_not_still_suspended() -> None:
    """`spec.suspend` false, the Job controller's Suspended condition not yet turned: its
    words ("Job suspended") are the past's."""
    cond = Condition("Suspended", reason="JobSuspended", message="Job suspended")
    derived = derive(Observation(conditions=(cond,)))
    assert derived == Derived(_S.QUEUED, "Admitted", "let go by its queue; its pods are being made")


def test_suspended_without_any_message_still_explains_itself() -> None:
    derived = derive(Observation(suspended=True))
    assert derived.state is _S.QUEUED
    assert derived.reason == "Suspended"
    assert derived.message


def test_suspended_wins_over_a_running_pod() -> None:
    # A suspended Job's pods are being deleted; the job is back in the queue.
    derived = derive(Observation(suspended=True, pods=(RUNNING_POD,), active=1))
    assert derived.state is _S.QUEUED


def test_a_running_pod_makes_the_job_running() -> None:
    pods = (PodFacts(phase="Pending", waiting_reason="ContainerCreating"), RUNNING_POD)
    derived = derive(Observation(pods=pods, active=2))
    assert derived.state is _S.RUNNING
    assert not derived.stop


@pytest.mark.parametrize("reason", ["Unschedulable", "SchedulerError"])
def test_a_pod_not_scheduled_is_pending_with_the_schedulers_reason_and_message(
    reason: str,
) -> None:
    pod = PodFacts(
        phase="Pending", unscheduled_reason=reason, unscheduled_message="0/3 nodes have a GPU"
    )
    derived = derive(Observation(pods=(pod,), active=1))
    assert derived == Derived(_S.PENDING, reason, "0/3 nodes have a GPU")


@pytest.mark.parametrize("reason", ["Unschedulable", "SchedulerError"])
def test_a_pod_not_scheduled_without_a_message_still_explains_itself(reason: str) -> None:
    derived = derive(Observation(pods=(PodFacts("Pending", unscheduled_reason=reason),)))
    assert (derived.state, derived.reason) == (_S.PENDING, reason)
    assert derived.message


def test_unschedulable_is_reported_before_a_waiting_reason_of_another_pod() -> None:
    pods = (
        PodFacts(phase="Pending", waiting_reason="ErrImagePull", waiting_message="pull"),
        PodFacts(phase="Pending", unscheduled_reason="Unschedulable", unscheduled_message="no"),
    )
    assert derive(Observation(pods=pods, active=2)).reason == "Unschedulable"


@pytest.mark.parametrize(
    "reason",
    ["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "ContainerCreating"],
)
def test_waiting_pod_is_pending_with_the_kubelets_reason_and_message(reason: str) -> None:
    pod = PodFacts(phase="Pending", waiting_reason=reason, waiting_message="details here")
    derived = derive(Observation(pods=(pod,), active=1))
    assert derived == Derived(_S.PENDING, reason, "details here")


def test_a_pod_not_running_for_another_reason_is_pending() -> None:
    derived = derive(Observation(pods=(PodFacts(phase="Pending"),), active=1))
    assert derived.state is _S.PENDING
    assert derived.reason == "PodPending"


def test_failed_attempts_and_no_pod_is_pending_in_retry_backoff() -> None:
    derived = derive(Observation(failed=2))
    assert derived.state is _S.PENDING
    assert derived.reason == "RetryBackoff"
    assert derived.message is not None
    assert "2" in derived.message


def test_a_counted_failure_is_retry_backoff_with_the_jobs_count() -> None:
    derived = derive(Observation(failed=1, pods=(PodFacts("Failed"),)))
    assert derived == Derived(_S.PENDING, "RetryBackoff", "retrying after 1 failed attempt(s)")


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
@pytest.mark.parametrize("failed", [0, 1])
def test_a_finished_pod_the_job_has_not_counted_yet_keeps_it_running(
    phase: str, failed: int
) -> None:
    # The pod informer sees the pod finish before the Job controller counts it (the pod
    # still holds its tracking finalizer): the Job's verdict is on its way, no retry yet.
    derived = derive(Observation(failed=failed, pods=(PodFacts(phase, tracked=True),)))
    assert derived == Derived(_S.RUNNING)


def test_a_failed_pod_the_job_did_not_count_is_no_retry() -> None:
    # Not tracked, not counted: a disruption the pod failure policy ignores; the Job
    # replaces the pod at once, it is no failed attempt.
    derived = derive(Observation(pods=(PodFacts("Failed"),)))
    assert derived.state is _S.RUNNING
    assert derived.reason != "RetryBackoff"


@pytest.mark.parametrize(("terminating", "pods"), [(1, "1 pod"), (2, "2 pods")])
def test_only_terminating_pods_is_pending_pod_terminating(terminating: int, pods: str) -> None:
    derived = derive(Observation(terminating=terminating, failed=1))
    assert (derived.state, derived.reason) == (_S.PENDING, "PodTerminating")
    assert derived.message is not None
    assert derived.message.startswith(f"{pods} terminating")


@pytest.mark.parametrize("state", [_S.RUNNING, _S.PENDING])
def test_pods_the_job_controller_stops_for_a_decided_failure_change_no_state(
    state: JobState,
) -> None:
    """Its deadline over (or its tries spent): the pods' deletion comes before the Job's
    FailureTarget. Not an eviction (`PodTerminating`, "a replacement starts"): the state it
    had holds until the failure is written, so running -> failed, never -> pending -> failed."""
    facts = JobFacts(
        observation=Observation(terminating=1, active=1),
        submitted=True,
        failing="timeout_s=8 is over",
        state=state,
    )
    assert derive_state(facts) == Derived(
        state, "Stopping", "its pods are being stopped: timeout_s=8 is over", stopping=True
    )
    assert derive_state(replace(facts, failing=None)).reason == "PodTerminating"  # an eviction


T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("observation", "now", "due"),
    [
        (Observation(start_time=T0), T0 + timedelta(seconds=7), None),
        (Observation(start_time=T0), T0 + timedelta(seconds=8), "timeout_s=8 is over"),
        (Observation(failed=1, uncounted_failed=1), T0, "2 failed attempt(s), more than retries=1"),
        (Observation(failed=1), T0, None),
        (Observation(last_exit_code=2), T0, "a task exited with code 2, which is not retried"),
        (Observation(last_exit_code=1), T0, None),
    ],
)
def test_a_failure_is_due_by_the_rules_the_job_controller_decides_by(
    observation: Observation, now: datetime, due: str | None
) -> None:
    assert failure_due(observation, retries=1, timeout_s=8, now=now) == due


def test_a_live_pod_wins_over_terminating_ones() -> None:
    pod = PodFacts("Pending", waiting_reason="ContainerCreating", waiting_message="m")
    assert derive(Observation(terminating=1, pods=(pod,))).reason == "ContainerCreating"
    assert derive(Observation(terminating=1, pods=(RUNNING_POD,))).state is _S.RUNNING


def test_terminating_pods_of_a_suspended_job_are_queued() -> None:
    derived = derive(Observation(suspended=True, terminating=1))
    assert (derived.state, derived.reason) == (_S.QUEUED, "Suspended")


def test_terminating_pods_of_a_finished_job_do_not_matter() -> None:
    obs = Observation(conditions=(Condition("FailureTarget", reason="BackoffLimitExceeded"),))
    assert derive(replace(obs, terminating=1)).state is _S.FAILED


def test_a_pod_the_job_controller_could_not_create_is_pending_failed_create() -> None:
    why = 'Error creating: pods "kt-x-abc" is forbidden: violates PodSecurity "restricted"'
    derived = derive(Observation(create_failure=why))
    assert derived == Derived(_S.PENDING, "FailedCreate", why)


def test_a_live_or_terminating_pod_wins_over_a_create_failure() -> None:
    obs = Observation(create_failure="quota", pods=(PodFacts("Pending"),))
    assert derive(obs).reason == "PodPending"
    assert derive(replace(obs, pods=(), terminating=1)).reason == "PodTerminating"
    assert derive(replace(obs, pods=(), suspended=True)).reason == "Suspended"


def test_a_create_the_backend_rejected_fails_the_job_with_its_words() -> None:
    facts = JobFacts(observation=None, submitted=False, create_rejected="namespace not found")
    assert derive_state(facts) == Derived(_S.FAILED, "CreateRejected", "namespace not found")
    cancelled = replace(facts, cancel_requested=True)
    assert derive_state(cancelled).state is _S.CANCELLED


def test_created_job_without_pods_is_queued() -> None:
    derived = derive(Observation())
    assert derived.state is _S.QUEUED
    assert derived.reason == "Created"
    assert not derived.stop


# --- Observation ----------------------------------------------------------------------------


def test_condition_lookup_finds_only_true_conditions_of_that_type() -> None:
    obs = Observation(
        conditions=(Condition("Failed", status=False), Condition("Complete", reason="Done"))
    )
    assert obs.condition("Failed") is None
    assert obs.condition("Complete") == Condition("Complete", reason="Done")
    assert obs.condition("Suspended") is None


# --- transitions ----------------------------------------------------------------------------

ACTIVE_STATES = [_S.QUEUED, _S.PENDING, _S.RUNNING]


@pytest.mark.parametrize(
    ("old", "new"), list(itertools.product(sorted(TERMINAL_STATES), list(JobState)))
)
def test_terminal_states_are_final(old: JobState, new: JobState) -> None:
    assert not can_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [(old, new) for old in ACTIVE_STATES for new in JobState if new is not old],
)
def test_every_active_state_may_move_to_any_other_state(old: JobState, new: JobState) -> None:
    assert can_transition(old, new)


def test_allowed_covers_every_state() -> None:
    assert set(ALLOWED) == set(JobState)


@pytest.mark.parametrize(
    ("active", "succeeded", "failed", "attempts"),
    [
        (0, 0, 0, 0),  # nothing started yet
        (1, 0, 0, 1),
        (1, 0, 2, 3),  # the third try runs
        (0, 1, 1, 2),
        (2, 0, 0, 1),  # an Indexed Job's two workers are one try
        (0, 4, 1, 2),  # four indexes done, one of them retried once
        (0, 0, 3, 3),  # failed for good after three tries
        (0, 0, 1, 1),  # exit code 2: one try, never retried
    ],
)
def test_attempts_count_each_failed_pod_and_the_try_under_way(
    active: int, succeeded: int, failed: int, attempts: int
) -> None:
    observation = Observation(active=active, succeeded=succeeded, failed=failed, task_started_at=T0)
    assert observation.attempts == attempts


@pytest.mark.parametrize("pods", [(), (PodFacts("Pending", unscheduled_reason="Unschedulable"),)])
def test_a_job_whose_task_never_started_has_made_no_attempt(pods: tuple[PodFacts, ...]) -> None:
    """Unschedulable until its start deadline, or its pod still being made: 0 tries, so
    that a start timeout does not read "after 1 attempt"."""
    assert Observation(active=1, pods=pods).attempts == 0
    assert Observation(active=1, pods=(RUNNING_POD,)).attempts == 1


def test_a_job_that_ran_and_has_no_pod_is_pending_a_replacement_not_queued() -> None:
    """An evicted pod is gone and not counted (the failure policy ignores disruptions):
    until the Job controller makes the next one, the job waits for a pod, it is not new."""
    empty = Observation(active=0, start_time=datetime(2026, 3, 1, tzinfo=UTC))
    ran = derive_state(JobFacts(observation=empty, submitted=True, ran=True))
    assert (ran.state, ran.reason) == (_S.PENDING, "PodReplacing")
    fresh = derive_state(JobFacts(observation=empty, submitted=True))
    assert (fresh.state, fresh.reason) == (_S.QUEUED, "Created")
