"""The local backend's Job controller as pure functions: Kubernetes Job semantics on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_plan import (
    MAX_BACKOFF_S,
    Pod,
    backoff_s,
    deadline,
    observe,
    plan_pods,
    terminal_condition,
)
from kubetask.controller.states import Condition, PodFacts

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spec(
    *,
    retries: int = 0,
    timeout_s: int | None = None,
    completions: int = 1,
    parallelism: int = 1,
    start_by: datetime | None = None,
) -> TaskSpec:
    return TaskSpec(
        job_id="0000000000abcdef",
        kind="noop",
        image="kubetask/trainer:test",
        command=("python", "-m", "kubetask.jobs", "noop"),
        env={},
        retries=retries,
        timeout_s=timeout_s,
        completions=completions,
        parallelism=parallelism,
        start_by=start_by,
    )


def running(index: int = 0, attempt: int = 1, *, created: float = 0.0) -> Pod:
    return Pod(index=index, attempt=attempt, created_at=at(created), started_at=at(created))


def exited(
    code: int, index: int = 0, attempt: int = 1, *, created: float = 0.0, finished: float = 1.0
) -> Pod:
    return Pod(
        index=index,
        attempt=attempt,
        created_at=at(created),
        started_at=at(created),
        finished_at=at(finished),
        exit_code=code,
        alive=False,
    )


def lost(index: int = 0, attempt: int = 1) -> Pod:
    return Pod(index=index, attempt=attempt, created_at=T0, started_at=T0, alive=False)


# --- terminal_condition ---------------------------------------------------------------------


def test_exit_2_fails_the_job_at_once_even_with_retries_left() -> None:
    cond = terminal_condition(spec(retries=5), [exited(env.EXIT_INVALID_PARAMS)], at(2))
    assert cond is not None
    assert cond.type == "Failed"
    assert cond.reason == "PodFailurePolicy"
    assert cond.message is not None
    assert "index 0" in cond.message


def test_failures_beyond_retries_fail_the_job_naming_the_last_exit_code() -> None:
    pods = [exited(1, attempt=1, finished=1), exited(3, attempt=2, created=5, finished=6)]
    cond = terminal_condition(spec(retries=1), pods, at(7))
    assert cond is not None
    assert (cond.type, cond.reason) == ("Failed", "BackoffLimitExceeded")
    assert cond.message is not None
    assert "last exit code 3" in cond.message


def test_failures_equal_to_retries_do_not_decide_yet() -> None:
    pods = [exited(1, attempt=1), exited(1, attempt=2, created=5, finished=6)]
    assert terminal_condition(spec(retries=2), pods, at(7)) is None


def test_no_retries_and_one_failure_fails() -> None:
    cond = terminal_condition(spec(retries=0), [exited(env.EXIT_FAILED)], at(2))
    assert cond is not None
    assert cond.reason == "BackoffLimitExceeded"


def test_lost_pods_do_not_count_as_failures() -> None:
    pods = [lost(attempt=1), lost(attempt=2), running(attempt=3)]
    assert terminal_condition(spec(retries=0), pods, at(1)) is None


def test_all_completions_succeeded_is_complete() -> None:
    pods = [exited(env.EXIT_OK, index=i) for i in range(3)]
    cond = terminal_condition(spec(completions=3, parallelism=3), pods, at(2))
    assert cond is not None
    assert (cond.type, cond.reason) == ("Complete", "Completed")


def test_some_completions_succeeded_is_not_complete() -> None:
    pods = [exited(env.EXIT_OK, index=0), running(index=1)]
    assert terminal_condition(spec(completions=3, parallelism=3), pods, at(2)) is None


def test_a_retried_index_that_succeeded_counts_once_toward_completions() -> None:
    pods = [exited(1, index=0, attempt=1), exited(env.EXIT_OK, index=0, attempt=2, created=5)]
    assert terminal_condition(spec(retries=1, completions=2, parallelism=2), pods, at(9)) is None


def test_deadline_passed_fails_with_deadline_exceeded() -> None:
    cond = terminal_condition(spec(timeout_s=10), [running(created=0)], at(10))
    assert cond is not None
    assert (cond.type, cond.reason) == ("Failed", "DeadlineExceeded")


@pytest.mark.parametrize(
    ("code", "retries"), [(env.EXIT_OK, 0), (1, 0), (env.EXIT_INVALID_PARAMS, 3), (143, 0)]
)
def test_an_exit_after_the_deadline_decides_only_that_it_passed(code: int, retries: int) -> None:
    """No controller watched when the deadline passed (it was down): the task ran on and
    ended after it. What happened first decides: the deadline, dated by that exit."""
    late = terminal_condition(
        spec(timeout_s=3, retries=retries), [exited(code, finished=8)], at(20)
    )
    assert late is not None
    assert (late.type, late.reason, late.at) == ("Failed", "DeadlineExceeded", at(8))
    in_time = terminal_condition(
        spec(timeout_s=10, retries=retries), [exited(code, finished=8)], at(20)
    )
    assert in_time is not None
    assert in_time.reason != "DeadlineExceeded"


def test_a_job_past_its_start_deadline_before_any_pod_gets_none() -> None:
    late = spec(start_by=at(5))
    assert plan_pods(late, [], now=at(6), backoff_base_s=1).start == []
    assert plan_pods(late, [], now=at(4), backoff_base_s=1).start == [(0, 1)]
    retried = [exited(1, finished=2)]  # it ran once: the start deadline is behind it
    assert plan_pods(
        spec(retries=1, start_by=at(5)), retried, now=at(9), backoff_base_s=1
    ).start == [(0, 2)]


def test_the_first_pod_carries_the_deadline_from_its_own_making() -> None:
    assert deadline(spec(timeout_s=10), [], now=at(4)) == at(14)
    assert deadline(spec(timeout_s=10), [running(created=1)], now=at(4)) == at(11)
    assert deadline(spec(), [], now=at(4)) is None


def test_a_condition_is_dated_by_the_exit_that_decided_it_not_when_it_was_seen() -> None:
    """A controller down while the task ended sees the exit late: the job ended then."""
    complete = terminal_condition(spec(), [exited(env.EXIT_OK, finished=3)], at(60))
    failed = terminal_condition(spec(), [exited(1, finished=4)], at(60))
    invalid = terminal_condition(spec(retries=3), [exited(2, finished=5)], at(60))
    assert [c.at for c in (complete, failed, invalid) if c is not None] == [at(3), at(4), at(5)]
    late = terminal_condition(spec(timeout_s=10), [running(created=0)], at(60))
    assert late is not None
    assert late.at == at(60)  # stopped now, whenever its deadline passed


def test_before_the_deadline_nothing_is_decided() -> None:
    assert terminal_condition(spec(timeout_s=10), [running(created=0)], at(9.999)) is None


def test_the_deadline_counts_from_the_first_pod() -> None:
    pods = [exited(1, attempt=1, created=0, finished=2), running(attempt=2, created=8)]
    cond = terminal_condition(spec(retries=3, timeout_s=10), pods, at(11))
    assert cond is not None
    assert cond.reason == "DeadlineExceeded"


def test_no_pods_no_deadline() -> None:
    assert terminal_condition(spec(timeout_s=1), [], at(1000)) is None


def test_complete_wins_over_a_later_deadline() -> None:
    pods = [exited(env.EXIT_OK, created=0, finished=5)]
    cond = terminal_condition(spec(timeout_s=10), pods, at(60))
    assert cond is not None
    assert cond.type == "Complete"


# --- plan_pods ------------------------------------------------------------------------------


def test_a_new_job_starts_index_0_attempt_1() -> None:
    plan = plan_pods(spec(), [], now=T0, backoff_base_s=10)
    assert plan.start == [(0, 1)]
    assert plan.retry_at is None


def test_parallelism_bounds_how_many_start() -> None:
    plan = plan_pods(spec(completions=5, parallelism=2), [], now=T0, backoff_base_s=10)
    assert plan.start == [(0, 1), (1, 1)]


def test_active_pods_use_up_parallelism() -> None:
    pods = [running(index=0)]
    plan = plan_pods(spec(completions=5, parallelism=2), pods, now=at(1), backoff_base_s=10)
    assert plan.start == [(1, 1)]
    full = [running(index=0), running(index=1)]
    assert (
        plan_pods(spec(completions=5, parallelism=2), full, now=at(1), backoff_base_s=10).start
        == []
    )


def test_succeeded_and_busy_indexes_are_skipped() -> None:
    pods = [exited(env.EXIT_OK, index=0), running(index=1)]
    plan = plan_pods(spec(completions=4, parallelism=3), pods, now=at(2), backoff_base_s=10)
    assert plan.start == [(2, 1), (3, 1)]


def test_nothing_to_start_once_every_index_succeeded() -> None:
    pods = [exited(env.EXIT_OK, index=i) for i in range(2)]
    plan = plan_pods(spec(completions=2, parallelism=2), pods, now=at(5), backoff_base_s=10)
    assert plan.start == []
    assert plan.retry_at is None


def test_a_retry_waits_out_the_backoff_and_says_when() -> None:
    pods = [exited(1, attempt=1, finished=4)]
    plan = plan_pods(spec(retries=3), pods, now=at(5), backoff_base_s=10)
    assert plan.start == []
    assert plan.retry_at == at(14)


def test_a_retry_after_the_backoff_takes_the_next_attempt_number() -> None:
    pods = [exited(1, attempt=1, finished=4)]
    plan = plan_pods(spec(retries=3), pods, now=at(14), backoff_base_s=10)
    assert plan.start == [(0, 2)]
    assert plan.retry_at is None


def test_the_backoff_doubles_with_each_failure() -> None:
    pods = [
        exited(1, attempt=1, created=0, finished=1),
        exited(1, attempt=2, created=20, finished=21),
    ]
    plan = plan_pods(spec(retries=3), pods, now=at(22), backoff_base_s=10)
    assert plan.retry_at == at(41)  # last failure + 2 x 10 s
    assert plan_pods(spec(retries=3), pods, now=at(41), backoff_base_s=10).start == [(0, 3)]


def test_a_lost_pod_is_retried_at_once_with_the_next_attempt() -> None:
    plan = plan_pods(spec(), [lost(attempt=1)], now=at(1), backoff_base_s=10)
    assert plan.start == [(0, 2)]
    assert plan.retry_at is None


def test_attempt_numbers_are_per_index() -> None:
    pods = [exited(1, index=0, attempt=1, finished=1), lost(index=1, attempt=4)]
    plan = plan_pods(
        spec(retries=3, completions=2, parallelism=2), pods, now=at(60), backoff_base_s=1
    )
    assert plan.start == [(0, 2), (1, 5)]


# --- backoff_s ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "expected"), [(0, 10.0), (1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0)]
)
def test_backoff_doubles_per_failure(failures: int, expected: float) -> None:
    assert backoff_s(failures, 10.0) == expected


@pytest.mark.parametrize("failures", [7, 20, 1000])
def test_backoff_is_capped(failures: int) -> None:
    assert backoff_s(failures, 10.0) == MAX_BACKOFF_S


# --- observe --------------------------------------------------------------------------------


def test_observe_counts_like_kubernetes_without_lost_pods() -> None:
    pods = [
        exited(1, index=0, attempt=1),
        lost(index=0, attempt=2),
        running(index=0, attempt=3),
        exited(env.EXIT_OK, index=1),
    ]
    obs = observe(
        spec(retries=3, completions=2, parallelism=2), pods, condition=None, waiting_for_slot=None
    )
    assert obs.active == 1
    assert obs.succeeded == 1
    assert obs.failed == 1  # the lost pod is a disruption, not a try
    assert obs.attempts == 2  # the first try and one retry (index 0); index 1 ran alongside
    assert obs.start_time == T0
    assert obs.conditions == ()


def test_observe_carries_the_terminal_condition() -> None:
    cond = Condition("Complete", reason="Completed")
    obs = observe(spec(), [exited(env.EXIT_OK)], condition=cond, waiting_for_slot=None)
    assert obs.conditions == (cond,)


def test_waiting_for_a_slot_with_nothing_active_is_suspended() -> None:
    obs = observe(spec(), [], condition=None, waiting_for_slot="waiting for a local slot")
    assert obs.suspended
    assert obs.suspended_message == "waiting for a local slot"


def test_waiting_for_a_slot_with_an_active_pod_is_not_suspended() -> None:
    pods = [running(index=0)]
    obs = observe(spec(completions=2, parallelism=2), pods, condition=None, waiting_for_slot="x")
    assert not obs.suspended


def test_not_waiting_for_a_slot_is_not_suspended() -> None:
    assert not observe(spec(), [], condition=None, waiting_for_slot=None).suspended


def test_observe_reports_only_active_pods_and_container_creating_before_start() -> None:
    not_started = Pod(index=0, attempt=1, created_at=T0)
    pods = [not_started, running(index=1), exited(1, index=2)]
    obs = observe(spec(completions=3, parallelism=3), pods, condition=None, waiting_for_slot=None)
    assert obs.pods == (
        PodFacts(phase="Pending", waiting_reason="ContainerCreating"),
        PodFacts(phase="Running"),
    )


def test_observe_says_when_the_first_task_began_finished_ones_included() -> None:
    pods = [Pod(index=0, attempt=1, created_at=T0), exited(1, created=3.0), running(created=5.0)]
    obs = observe(spec(completions=3, parallelism=3), pods, condition=None, waiting_for_slot=None)
    assert obs.task_started_at == at(3.0)
    none_began = [Pod(index=0, attempt=1, created_at=T0)]
    assert (
        observe(spec(), none_began, condition=None, waiting_for_slot=None).task_started_at is None
    )


# --- Pod ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "phase"),
    [
        (Pod(index=0, attempt=1, created_at=T0), "Pending"),
        (running(), "Running"),
        (exited(env.EXIT_OK), "Succeeded"),
        (exited(env.EXIT_FAILED), "Failed"),
        (exited(env.EXIT_INVALID_PARAMS), "Failed"),
        (exited(env.EXIT_TERMINATED), "Failed"),
        (lost(), "Failed"),
    ],
)
def test_pod_phase(pod: Pod, phase: str) -> None:
    assert pod.phase == phase


def test_pod_flags() -> None:
    assert running().active
    assert not running().failed
    assert lost().lost
    assert not lost().failed
    assert not lost().active
    assert exited(1).failed
    assert not exited(env.EXIT_OK).failed
    assert not exited(1).active
