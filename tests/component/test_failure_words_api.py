"""A failed job, as the API shows it: `message` in plain words, `reason` kept as the backend's
(Kubernetes') word for programs; against the real API process and the local backend."""

from __future__ import annotations

from tests.servers import ApiServer


def test_a_task_that_exits_3_reads_failed_after_1_attempt(api: ApiServer) -> None:
    job = api.wait(api.submit("noop", {"fail": "exit", "exit_code": 3}, retries=0))
    assert (job["state"], job["reason"]) == ("failed", "BackoffLimitExceeded")
    assert job["message"] == "failed after 1 attempt (exit code 3)"


def test_retried_attempts_are_counted(api: ApiServer) -> None:
    job = api.wait(api.submit("noop", {"fail": "exit", "exit_code": 5}, retries=1))
    assert (job["state"], job["reason"]) == ("failed", "BackoffLimitExceeded")
    assert job["message"] == "failed after 2 attempts (exit code 5)"


def test_a_deadline_says_which_limit_it_passed(api: ApiServer) -> None:
    job = api.wait(api.submit("noop", {"steps": 100, "step_s": 1}, timeout_s=1))
    assert (job["state"], job["reason"]) == ("failed", "DeadlineExceeded")
    assert job["message"] == "stopped: it did not finish within its timeout_s (1 s)"


def test_two_workers_failing_once_each_are_not_told_as_two_tries(api: ApiServer) -> None:
    """An Indexed job's workers share one backoff limit: retries=1 is used up by one failure
    of each, and the message says so rather than "failed after 2 attempts"."""
    params = {"fail": "exit", "exit_code": 4}
    job = api.wait(api.submit("noop", params, retries=1, completions=2, parallelism=2))
    assert (job["state"], job["reason"]) == ("failed", "BackoffLimitExceeded")
    assert job["message"] == (
        "failed after 2 failed attempts across its 2 workers, which share its retries (exit code 4)"
    )
