"""A finished job's result or error, from the outcomes its tasks left behind."""

from __future__ import annotations

import pytest

from kubetask.controller.outcomes import parse_outcome, summarize
from kubetask.controller.states import Derived
from kubetask.models import ErrorInfo, JobState, Outcome

_S = JobState
SUCCEEDED = Derived(_S.SUCCEEDED, "Completed", "all tasks succeeded")


def ok(**result: int | str) -> Outcome:
    return Outcome(ok=True, result=dict(result))


def failed(type_: str, message: str = "boom") -> Outcome:
    return Outcome(ok=False, error=ErrorInfo(type=type_, message=message, exit_code=1))


# --- parse_outcome --------------------------------------------------------------------------


def test_parse_outcome_round_trips() -> None:
    outcome = failed("MemoryError", "oom")
    assert parse_outcome(outcome.model_dump_json()) == outcome


@pytest.mark.parametrize("raw", [None, "", "not json", '{"ok": "maybe"}', '{"unknown": 1}'])
def test_parse_outcome_of_nothing_or_garbage_is_none(raw: str | None) -> None:
    assert parse_outcome(raw) is None


# --- summarize ------------------------------------------------------------------------------


def test_single_task_success_is_its_result() -> None:
    assert summarize(SUCCEEDED, {0: ok(steps=3)}, completions=1) == ({"steps": 3}, None)


def test_single_task_success_without_an_outcome_is_an_empty_result() -> None:
    assert summarize(SUCCEEDED, {}, completions=1) == ({}, None)


def test_fan_out_success_lists_each_index_result_in_order() -> None:
    result, error = summarize(SUCCEEDED, {2: ok(trial=2), 0: ok(trial=0)}, completions=3)
    assert result == {"completions": [{"trial": 0}, None, {"trial": 2}]}
    assert error is None


def test_failure_reports_the_tasks_own_error() -> None:
    derived = Derived(_S.FAILED, "BackoffLimitExceeded", "2 failed attempt(s)")
    outcome = failed("MemoryError", "oom")
    assert summarize(derived, {0: outcome}, completions=1) == (None, outcome.error)


def test_an_earlier_attempts_words_do_not_stand_for_a_killed_last_one() -> None:
    """Attempt 1 exited 1 saying why; attempt 2 was killed (137) before it said anything."""
    derived = Derived(_S.FAILED, "BackoffLimitExceeded", "failed after 2 attempts")
    stale = failed("RuntimeError", "attempt 1")
    result, error = summarize(derived, {0: stale}, completions=1, exit_code=137)
    assert result is None
    assert error is not None
    assert (error.type, error.exit_code) == ("BackoffLimitExceeded", 137)
    assert "memory" in (error.suggestion or "")  # a SIGKILL that said nothing: most often OOM
    assert summarize(derived, {0: stale}, completions=1, exit_code=1) == (None, stale.error)


def test_failure_of_a_fan_out_reports_the_last_told_error() -> None:
    derived = Derived(_S.FAILED, "BackoffLimitExceeded")
    outcomes = {0: ok(trial=0), 1: failed("ValueError"), 3: failed("KeyError")}
    result, error = summarize(derived, outcomes, completions=4)
    assert result is None
    assert error is not None
    assert error.type == "KeyError"


def test_failure_without_a_told_error_explains_the_reason_with_a_suggestion() -> None:
    derived = Derived(_S.FAILED, "BackoffLimitExceeded", "3 failed attempt(s)")
    result, error = summarize(derived, {}, completions=1)
    assert result is None
    assert error is not None
    assert (error.type, error.message) == ("BackoffLimitExceeded", "3 failed attempt(s)")
    assert error.suggestion


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        ("DeadlineExceeded", "timeout_s"),
        ("StartTimeout", "start_timeout_s"),
        ("JobDeleted", "submit it again"),
    ],
)
def test_controller_decided_failures_win_over_the_tasks_words(reason: str, hint: str) -> None:
    # A task killed by the deadline leaves a TaskTerminated error; the reason is the deadline.
    derived = Derived(_S.FAILED, reason, "why it failed")
    _, error = summarize(derived, {0: failed("TaskTerminated")}, completions=1)
    assert error is not None
    assert error.type == reason
    assert error.message == "why it failed"
    assert error.suggestion is not None
    assert hint in error.suggestion


def test_failure_with_no_reason_or_message_still_says_it_failed() -> None:
    _, error = summarize(Derived(_S.FAILED), {}, completions=1)
    assert error is not None
    assert error.type == "Failed"
    assert error.message


@pytest.mark.parametrize("state", [_S.CANCELLED, _S.RUNNING, _S.QUEUED, _S.PENDING])
def test_other_states_have_neither_result_nor_error(state: JobState) -> None:
    assert summarize(Derived(state), {0: ok(x=1)}, completions=1) == (None, None)


def test_a_workers_sigterm_from_a_sibling_failing_the_job_is_not_the_jobs_error() -> None:
    """Worker 0 was SIGKILLed (out of memory: no words); the Job controller then SIGTERMed
    worker 1, which said so: the job's error is the kill, not worker 1's stop."""
    derived = Derived(_S.FAILED, "BackoffLimitExceeded", "failed after 1 attempt")
    outcomes = {1: failed("TaskTerminated", "received SIGTERM")}
    result, error = summarize(derived, outcomes, completions=2, exit_code=137)
    assert result is None
    assert error is not None
    assert (error.type, error.exit_code) == ("BackoffLimitExceeded", 137)
    assert "memory" in (error.suggestion or "")
    single = summarize(derived, {0: failed("TaskTerminated")}, completions=1, exit_code=1)
    assert single[1] is not None
    assert single[1].type == "TaskTerminated"  # one task's stop is its job's story


def test_a_success_whose_outcome_is_an_earlier_attempts_failure_has_no_result_to_show() -> None:
    """The retry succeeded while Redis was away and its pod is gone: its result is unknown,
    not `{}` (which a task that returned nothing leaves)."""
    derived = Derived(_S.SUCCEEDED, "Completed")
    assert summarize(derived, {0: failed("RuntimeError")}, completions=1) == (None, None)
    assert summarize(derived, {}, completions=1) == ({}, None)
