"""A failed job's message in plain words, its reason kept as the backend's word for programs:
the pure `in_plain_words`, and the exit code each backend reads off what it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.k8s_read import observe_job
from kubetask.controller.backends.local_plan import Pod
from kubetask.controller.backends.local_plan import observe as observe_local
from kubetask.controller.outcomes import in_plain_words
from kubetask.controller.states import Derived
from kubetask.models import JobState

_S = JobState
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def words(
    reason: str,
    message: str | None = "the backend's words",
    *,
    attempts: int = 1,
    exit_code: int | None = None,
    state: JobState = _S.FAILED,
    workers: int = 1,
) -> Derived:
    return in_plain_words(
        Derived(state, reason, message),
        attempts=attempts,
        exit_code=exit_code,
        timeout_s=600,
        start_timeout_s=120,
        workers=workers,
    )


def test_the_failures_of_several_workers_are_not_told_as_one_workers_tries() -> None:
    """Two workers of an Indexed job failing once each exhaust retries=1 together."""
    message = words("BackoffLimitExceeded", attempts=2, exit_code=1, workers=2).message
    assert message == (
        "failed after 2 failed attempts across its 2 workers, which share its retries (exit code 1)"
    )


def test_backoff_limit_exceeded_says_how_many_attempts_and_the_exit_code() -> None:
    derived = words(
        "BackoffLimitExceeded", "Job has reached the specified backoff limit", exit_code=3
    )
    assert derived.message == "failed after 1 attempt (exit code 3)"
    assert derived.reason == "BackoffLimitExceeded"  # the machine field stays


def test_a_task_a_signal_ended_is_said_to_have_been_killed_by_it() -> None:
    assert words("BackoffLimitExceeded", exit_code=137).message == (
        "failed after 1 attempt (exit code 137, SIGKILL)"
    )
    for code, said in (
        (143, "exit code 143, SIGTERM"),
        (200, "exit code 200"),
        (127, "exit code 127"),
    ):
        assert (
            words("BackoffLimitExceeded", exit_code=code).message
            == f"failed after 1 attempt ({said})"
        )


def test_attempts_are_counted_in_words_and_an_unknown_exit_code_left_out() -> None:
    assert words("BackoffLimitExceeded", attempts=3).message == "failed after 3 attempts"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("DeadlineExceeded", "stopped: it did not finish within its timeout_s (600 s)"),
        ("StartTimeout", "failed: it did not start running within its start_timeout_s (120 s)"),
        ("CreateRejected", "failed: the backend refused to create it: the backend's words"),
        ("FailedCreate", "no task could be created yet (retrying): the backend's words"),
        ("ControllerError", "failed: the backend's words; the server's log says more"),
    ],
)
def test_each_reason_reads_as_plain_words(reason: str, expected: str) -> None:
    derived = words(reason)
    assert (derived.reason, derived.message) == (reason, expected)


def test_invalid_params_say_why_it_was_not_retried() -> None:
    message = words("PodFailurePolicy").message
    assert message == (
        "failed at once, not retried: the task exited with code 2, which means its params "
        "(or the data they name) cannot work: a retry would fail the same"
    )


def test_reasons_already_in_plain_words_keep_their_message() -> None:
    assert words("Cancelled", "cancelled on request").message == "cancelled on request"
    assert words("RetryBackoff", "retrying after 1 failed attempt(s)").message == (
        "retrying after 1 failed attempt(s)"
    )


def kube_pod(created: str, exit_code: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p-{created}", "creationTimestamp": created},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "task", "state": {"terminated": {"exitCode": exit_code}}}
            ],
        },
    }


def test_the_kubernetes_backend_reads_the_newest_failed_pods_exit_code() -> None:
    job = {"metadata": {"name": "kt-x"}, "spec": {}, "status": {"failed": 2}}
    pods = [kube_pod("2026-01-01T00:01:00Z", 137), kube_pod("2026-01-01T00:00:00Z", 1)]
    assert observe_job(job, pods).last_exit_code == 137


def test_the_local_backend_reads_the_last_failed_tasks_exit_code() -> None:
    spec = TaskSpec(
        job_id="j", kind="noop", image="i", command=("python",), env={}, retries=1, timeout_s=None
    )
    pods = [
        Pod(
            index=0,
            attempt=2,
            created_at=T0,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=9),
            exit_code=4,
            alive=False,
        ),
        Pod(
            index=0,
            attempt=1,
            created_at=T0,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=1),
            exit_code=3,
            alive=False,
        ),
    ]
    assert observe_local(spec, pods, condition=None, waiting_for_slot=None).last_exit_code == 4
