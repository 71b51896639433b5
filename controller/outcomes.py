"""A finished job's result or error, from what its tasks left behind: pure functions."""

from __future__ import annotations

import signal
from dataclasses import replace

from pydantic import JsonValue, ValidationError

from kubetask.controller.merging import merge_parts
from kubetask.controller.states import Derived
from kubetask.kinds import Merge
from kubetask.models import ErrorInfo, JobState, Outcome

_REASON_SUGGESTIONS = {
    "DeadlineExceeded": "The job did not finish within timeout_s (counted from its start, "
    "waiting for a node included): raise timeout_s or make the task smaller.",
    "StartTimeout": "The job never started running within start_timeout_s: look at why it "
    "stayed pending (capacity, image pull, quota).",
    "JobDeleted": "The Job was deleted outside kubetask (kubectl delete or its TTL): "
    "submit it again if it should run.",
    "BackoffLimitExceeded": "Every attempt failed: the logs show why (GET /v1/jobs/{id}/logs).",
}
TERMINATED = "TaskTerminated"  # the error of a task stopped by SIGTERM (jobs/errors.py)
OOM_SUGGESTION = (
    "The task was killed (SIGKILL) without a word: most often for using more memory than it "
    "may (raise resources.memory, or make the task smaller), else by someone or something "
    "outside it."
)


def exit_words(exit_code: int) -> str:
    """`exit code 137, SIGKILL`: a code past 128 names the signal that ended the task, as
    a shell (and the kubelet) reports a task a signal killed."""
    try:
        name = signal.Signals(exit_code - 128).name if exit_code > 128 else None
    except ValueError:
        name = None
    return f"exit code {exit_code}" + (f", {name}" if name else "")


def in_plain_words(
    derived: Derived,
    *,
    attempts: int,
    exit_code: int | None,
    timeout_s: int | None,
    start_timeout_s: int | None,
    workers: int = 1,
) -> Derived:
    """`derived` with a message a person reads at a glance ("failed after 2 attempts (exit
    code 3)"); `reason` keeps the backend's (Kubernetes') word, for programs. Reasons
    without plain words here keep their message. `workers`: the job's completions, whose
    failures one backoff limit counts together."""
    said = derived.message
    exited = f" ({exit_words(exit_code)})" if exit_code is not None else ""
    tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
    if workers > 1:  # two workers failing once each are not one worker tried twice
        tries = (
            f"{attempts} failed attempt{'' if attempts == 1 else 's'} across its {workers} "
            "workers, which share its retries"
        )
    words = {
        "BackoffLimitExceeded": f"failed after {tries}{exited}",
        "PodFailurePolicy": "failed at once, not retried: the task exited with code 2, "
        "which means its params (or the data they name) cannot work: a retry would fail the same",
        "DeadlineExceeded": f"stopped: it did not finish within its timeout_s ({timeout_s} s)",
        "StartTimeout": f"failed: it did not start running within its start_timeout_s "
        f"({start_timeout_s} s)",
        "CreateRejected": f"failed: the backend refused to create it: {said}",
        "FailedCreate": f"no task could be created yet (retrying): {said}",
        "ControllerError": f"failed: {said}; the server's log says more",
    }
    plain = words.get(derived.reason or "")
    return derived if plain is None else replace(derived, message=plain)


def parse_outcome(raw: str | None) -> Outcome | None:
    if not raw:
        return None
    try:
        return Outcome.model_validate_json(raw)
    except ValidationError:
        return None


def summarize(
    derived: Derived,
    outcomes: dict[int, Outcome],
    *,
    completions: int,
    merge: Merge | None = None,
    exit_code: int | None = None,
) -> tuple[dict[str, JsonValue] | None, ErrorInfo | None]:
    """(result, error) for the job: the task's own words when it left them. Several
    completions make one result by the kind's `merge` (the parts under `workers`), or without
    one the parts as they are (under `completions`). `exit_code`: the last failed task's,
    where the backend knows it: a single task's words that say another code are an earlier
    attempt's (the last one was killed before it said anything), and do not count."""
    if derived.state is JobState.SUCCEEDED:
        if completions == 1:
            only = outcomes.get(0)
            if only is not None and not only.ok:  # an earlier attempt's: the last one's unknown
                return None, None
            return (only.result if only else None) or {}, None
        if merge is not None:
            parts = [
                outcomes[i].result if i in outcomes and outcomes[i].ok else None
                for i in range(completions)
            ]
            return merge_parts(merge, parts), None
        per_index: list[JsonValue] = [
            outcomes[i].result if i in outcomes else None for i in range(completions)
        ]
        return {"completions": per_index}, None
    if derived.state is JobState.FAILED:
        told = [o.error for _, o in sorted(outcomes.items()) if not o.ok and o.error]
        if completions > 1:  # a worker SIGTERMed because a sibling failed the Job: not why
            told = [error for error in told if error.type != TERMINATED]
        last = told[-1] if told else None
        if last is not None and completions == 1 and exit_code not in (None, last.exit_code):
            last = None  # an earlier attempt's words
        if last is not None and derived.reason not in (
            "DeadlineExceeded",
            "StartTimeout",
            "JobDeleted",
        ):
            return None, last
        killed = derived.reason == "BackoffLimitExceeded" and exit_code == 128 + signal.SIGKILL
        return None, ErrorInfo(
            type=derived.reason or "Failed",
            message=derived.message or "the job failed",
            suggestion=OOM_SUGGESTION if killed else _REASON_SUGGESTIONS.get(derived.reason or ""),
            exit_code=exit_code,
        )
    return None, None
