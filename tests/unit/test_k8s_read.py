"""Kubernetes Jobs and Pods (raw API JSON) read into Observations, then into states."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubetask.controller.backends.k8s_read import latest_pods, observe_job, termination_messages
from kubetask.controller.states import JobFacts, derive_state
from kubetask.models import JobState


def job(conditions: list[dict[str, str]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "kt-x"},
        "spec": {"suspend": status.pop("suspend", False)},
        "status": {"conditions": conditions or [], **status},
    }


def pod(phase: str, *, created: str = "2026-01-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"p-{created}", "creationTimestamp": created}
    if "index" in extra:
        meta["annotations"] = {"batch.kubernetes.io/job-completion-index": str(extra["index"])}
    status: dict[str, Any] = {"phase": phase}
    if "waiting" in extra:
        status["containerStatuses"] = [
            {"name": "task", "state": {"waiting": {"reason": extra["waiting"], "message": "m"}}}
        ]
    if "message" in extra:
        status["containerStatuses"] = [
            {"name": "task", "state": {"terminated": {"exitCode": 1, "message": extra["message"]}}}
        ]
    if "unschedulable" in extra:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": extra["unschedulable"],
            }
        ]
    return {"metadata": meta, "status": status}


def state_of(j: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[JobState, str | None]:
    derived = derive_state(JobFacts(observe_job(j, pods), submitted=True))
    return derived.state, derived.reason


def test_conditions_decide_terminal_states() -> None:
    complete = [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]
    failed = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    target = [{"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy"}]
    met = [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"}]
    assert state_of(job(complete, succeeded=1), []) == (JobState.SUCCEEDED, "CompletionsReached")
    assert state_of(job(failed, failed=7), []) == (JobState.FAILED, "BackoffLimitExceeded")
    assert state_of(job(target), [pod("Running")]) == (JobState.FAILED, "PodFailurePolicy")
    assert state_of(job(met), [pod("Running")])[0] is JobState.SUCCEEDED
    false = [{"type": "Complete", "status": "False"}]
    assert state_of(job(false, active=1), [pod("Running")])[0] is JobState.RUNNING


def test_pod_status_decides_pending_and_running() -> None:
    assert state_of(job(active=1), [pod("Running")])[0] is JobState.RUNNING
    assert state_of(job(active=1), [pod("Pending", waiting="ImagePullBackOff")]) == (
        JobState.PENDING,
        "ImagePullBackOff",
    )
    unschedulable = pod("Pending", unschedulable="0/3 nodes have nvidia.com/gpu")
    derived = derive_state(JobFacts(observe_job(job(active=1), [unschedulable]), submitted=True))
    assert (derived.state, derived.reason) == (JobState.PENDING, "Unschedulable")
    assert derived.message == "0/3 nodes have nvidia.com/gpu"
    assert state_of(job(), [])[0] is JobState.QUEUED


def test_pods_being_deleted_are_left_out() -> None:
    going = pod("Running", created="2026-01-01T00:00:00Z")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    running = {"running": {"startedAt": "2026-01-01T00:00:01Z"}}
    going["status"]["containerStatuses"] = [{"name": "task", "state": running}]
    observation = observe_job(job(active=1, failed=1), [pod("Failed"), going])
    assert [p.phase for p in observation.pods] == ["Failed"]
    assert observation.attempts == 2


def test_between_a_finished_pod_and_the_jobs_verdict_it_stays_running() -> None:
    # The Job controller lags its pods: the pod succeeded, the Job is not Complete yet.
    assert state_of(job(active=1), [pod("Succeeded")]) == (JobState.RUNNING, None)
    assert state_of(job(failed=1), [pod("Failed")]) == (JobState.PENDING, "RetryBackoff")
    retry = [pod("Failed"), pod("Pending", created="2026-01-01T00:01:00Z")]
    assert state_of(job(failed=1, active=1), retry) == (JobState.PENDING, "PodPending")


def test_a_suspended_job_is_queued() -> None:
    suspended = [{"type": "Suspended", "status": "True", "message": "Kueue: no quota"}]
    assert state_of(job(suspended, suspend=True), []) == (JobState.QUEUED, "Suspended")


def test_a_job_says_when_its_first_task_container_began() -> None:
    """Running or terminated since, a pod being deleted included; a waiting container has
    not begun."""

    def began(state: dict[str, Any], *, created: str, deleted: bool = False) -> dict[str, Any]:
        p = pod("Running", created=created)
        p["status"]["containerStatuses"] = [{"name": "task", "state": state}]
        if deleted:
            p["metadata"]["deletionTimestamp"] = "2026-01-01T00:09:00Z"
        return p

    pods = [
        began({"waiting": {"reason": "ContainerCreating"}}, created="2026-01-01T00:00:00Z"),
        began({"running": {"startedAt": "2026-01-01T00:03:00Z"}}, created="2026-01-01T00:01:00Z"),
        began(
            {"terminated": {"exitCode": 1, "startedAt": "2026-01-01T00:02:30Z"}},
            created="2026-01-01T00:02:00Z",
            deleted=True,
        ),
    ]
    assert observe_job(job(active=1), pods).task_started_at == datetime(
        2026, 1, 1, 0, 2, 30, tzinfo=UTC
    )
    assert observe_job(job(active=1), pods[:1]).task_started_at is None


def test_the_latest_pod_of_each_index_gives_the_termination_message() -> None:
    pods = [
        pod("Failed", created="2026-01-01T00:00:00Z", index=0, message="first"),
        pod("Failed", created="2026-01-01T00:01:00Z", index=0, message="second"),
        pod("Succeeded", created="2026-01-01T00:00:30Z", index=1, message="other"),
    ]
    assert sorted(latest_pods(pods)) == [0, 1]
    assert termination_messages(pods) == {0: "second", 1: "other"}
