"""Jobs, Pods and Events shaped as a real control plane sends them (kube-apiserver and the
upstream Job controller of Kubernetes v1.37), at the moments where kubetask misread them:
the Job controller lags its pods, pods terminate, the scheduler or the Job controller say
why nothing runs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetask.controller.backends.k8s_read import (
    SUSPENDED_BY_HAND,
    TRACKING_FINALIZER,
    api_message,
    observe_job,
    parse_time,
    pod_facts,
    slim_job,
    slim_pod,
)
from kubetask.controller.manifests import LABEL_QUEUE
from kubetask.controller.states import Derived, JobFacts, derive_state
from kubetask.models import JobState

Obj = dict[str, Any]
JOB_ID = "0000000000abcdef"
NAME = f"kt-{JOB_ID}"
JOB_UID = "5f0c3a7e-1d2b-4c8e-9a6f-2b7d8e9f0a1b"
OLD_JOB_UID = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
POD_UID = "9a8b7c6d-5e4f-4321-8fed-cba987654321"
T0 = "2026-03-01T12:00:00Z"


def real_job(*, suspend: bool = False, conditions: list[Obj] | None = None, **status: Any) -> Obj:
    """A Job as `GET .../jobs/kt-...` answers: zero int counters left out (omitempty),
    `ready`, `terminating` and `uncountedTerminatedPods` always there (pointers)."""
    counters = {"ready": 0, "terminating": 0, "uncountedTerminatedPods": {}, **status}
    if not suspend:
        counters.setdefault("startTime", T0)
    if conditions:
        counters["conditions"] = conditions
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": NAME,
            "namespace": "default",
            "uid": JOB_UID,
            "resourceVersion": "812",
            "generation": 1,
            "creationTimestamp": T0,
            "labels": {"app.kubernetes.io/managed-by": "kubetask", "kubetask.io/job-id": JOB_ID},
        },
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 1,
            "completionMode": "NonIndexed",
            "podReplacementPolicy": "Failed",
            "suspend": suspend,
            "manualSelector": False,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": JOB_UID}},
        },
        "status": counters,
    }


def _condition(type_: str, status: str, reason: str | None = None, message: str = "") -> Obj:
    cond: Obj = {"type": type_, "status": status, "lastTransitionTime": T0}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def real_pod(
    phase: str,
    *,
    tracked: bool = True,
    created: str = "2026-03-01T12:00:01Z",
    deleted: str | None = None,
    conditions: list[Obj] | None = None,
    state: Obj | None = None,
) -> Obj:
    """A Job's pod as the API serves it: owned by the Job, with the Job controller's
    tracking finalizer until the Job has counted it."""
    meta: Obj = {
        "name": f"{NAME}-7xk2p",
        "generateName": f"{NAME}-",
        "namespace": "default",
        "uid": POD_UID,
        "resourceVersion": "840",
        "creationTimestamp": created,
        "labels": {
            "batch.kubernetes.io/controller-uid": JOB_UID,
            "batch.kubernetes.io/job-name": NAME,
            "kubetask.io/job-id": JOB_ID,
        },
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": NAME,
                "uid": JOB_UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if tracked:
        meta["finalizers"] = [TRACKING_FINALIZER]
    if deleted:
        meta["deletionTimestamp"] = deleted
        meta["deletionGracePeriodSeconds"] = 30
    status: Obj = {"phase": phase, "conditions": conditions or [], "qosClass": "Guaranteed"}
    if state is not None:
        status["containerStatuses"] = [
            {"name": "task", "ready": False, "restartCount": 0, "image": "x", "state": state}
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": status}


FAILED_POD_CONDITIONS = [
    _condition("PodReadyToStartContainers", "False"),
    _condition("Initialized", "True"),
    _condition("Ready", "False", "PodFailed"),
    _condition("ContainersReady", "False", "PodFailed"),
    _condition("PodScheduled", "True"),
]
EXITED_1 = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": T0, "finishedAt": T0}}
RUNNING = {"running": {"startedAt": "2026-03-01T12:00:02Z"}}


def failed_pod(*, tracked: bool) -> Obj:
    return real_pod("Failed", tracked=tracked, conditions=FAILED_POD_CONDITIONS, state=EXITED_1)


def derive(job: Obj, pods: list[Obj], events: list[Obj] | None = None) -> Derived:
    return derive_state(JobFacts(observe_job(job, pods, events or []), submitted=True))


# --- 1. the Job controller lags its pods ------------------------------------------------------


def test_a_failed_pod_the_job_has_not_counted_is_no_retry_yet() -> None:
    # The pods informer sees the pod Failed; the Job still says active 1, failed 0.
    derived = derive(real_job(active=1), [failed_pod(tracked=True)])
    assert derived == Derived(JobState.RUNNING)


def test_a_failed_pod_listed_as_uncounted_is_no_retry_yet() -> None:
    # Next the controller lists the pod's uid as uncounted, drops its finalizer, and only
    # then moves it into `failed`.
    job = real_job(uncountedTerminatedPods={"failed": [POD_UID]})
    assert pod_facts(failed_pod(tracked=False), uncounted=frozenset({POD_UID})).tracked
    assert derive(job, [failed_pod(tracked=False)]) == Derived(JobState.RUNNING)


def test_a_failure_the_job_counted_is_retry_backoff_with_its_count() -> None:
    derived = derive(real_job(failed=1), [failed_pod(tracked=False)])
    assert derived == Derived(
        JobState.PENDING, "RetryBackoff", "retrying after 1 failed attempt(s)"
    )


def test_a_failure_past_the_backoff_limit_fails_the_job() -> None:
    why = "Job has reached the specified backoff limit"
    conditions = [
        _condition("FailureTarget", "True", "BackoffLimitExceeded", why),
        _condition("Failed", "True", "BackoffLimitExceeded", why),
    ]
    derived = derive(real_job(failed=2, conditions=conditions), [failed_pod(tracked=False)])
    assert derived == Derived(JobState.FAILED, "BackoffLimitExceeded", why, at=parse_time(T0))


def test_a_succeeded_pod_the_job_has_not_counted_keeps_it_running() -> None:
    done = real_pod("Succeeded", state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    assert derive(real_job(active=1), [done]) == Derived(JobState.RUNNING)


def test_a_job_whose_success_is_met_before_it_counts_the_pod_made_one_attempt() -> None:
    """The Job controller writes SuccessCriteriaMet while the pod is still in
    uncountedTerminatedPods (succeeded: 0, active: 0): one try, not none."""
    done = real_pod("Succeeded", state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    job = real_job(
        uncountedTerminatedPods={"succeeded": [POD_UID]},
        conditions=[_condition("SuccessCriteriaMet", "True", "CompletionsReached")],
    )
    observation = observe_job(job, [done])
    assert derive_state(JobFacts(observation=observation, submitted=True)).state == "succeeded"
    assert observation.attempts == 1


def test_failures_not_yet_counted_are_attempts_too() -> None:
    job = real_job(failed=1, uncountedTerminatedPods={"failed": [POD_UID]})
    assert observe_job(job, [failed_pod(tracked=True)]).attempts == 2


# --- 2. terminating pods ----------------------------------------------------------------------

EVICTED = [
    _condition("DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting"),
    _condition("Ready", "True"),
    _condition("PodScheduled", "True"),
]


def evicted_pod(phase: str = "Running", *, tracked: bool = True) -> Obj:
    return real_pod(
        phase,
        tracked=tracked,
        deleted="2026-03-01T12:05:00Z",
        conditions=EVICTED,
        state=RUNNING if phase == "Running" else EXITED_1,
    )


def test_a_job_whose_only_pod_is_terminating_is_pending_pod_terminating() -> None:
    derived = derive(real_job(terminating=1), [evicted_pod()])
    assert (derived.state, derived.reason) == (JobState.PENDING, "PodTerminating")
    assert derived.message == (
        "1 pod terminating (evicted or its node lost); a replacement starts when it is gone"
    )


def test_a_terminating_pod_counts_before_the_job_says_so() -> None:
    # The Job's status lags: still active 1, terminating 0.
    observation = observe_job(real_job(active=1), [evicted_pod()])
    assert (observation.pods, observation.terminating) == ((), 1)
    assert derive(real_job(active=1), [evicted_pod()]).reason == "PodTerminating"


def test_a_deleted_pod_that_finished_but_is_not_counted_still_holds_up_the_job() -> None:
    assert derive(real_job(), [evicted_pod("Failed", tracked=True)]).reason == "PodTerminating"
    # counted (finalizer gone) and finished: nothing waits for it any more
    assert observe_job(real_job(), [evicted_pod("Failed", tracked=False)]).terminating == 0


def test_a_job_suspended_by_hand_says_so_and_one_with_a_queue_waits_for_it() -> None:
    """Without a queue, nothing but a person resumes it: "waiting for the queue" would
    send them looking for a Kueue that is not there."""
    by_hand = derive(real_job(suspend=True), [])
    assert (by_hand.state, by_hand.reason) == (JobState.QUEUED, "Suspended")
    assert by_hand.message == SUSPENDED_BY_HAND
    queued = real_job(suspend=True)
    queued["metadata"]["labels"][LABEL_QUEUE] = "gpu-queue"
    assert derive(queued, []).message == "waiting for admission by the queue"


def test_pods_terminating_while_the_job_is_suspended_are_queued() -> None:
    suspended = [_condition("Suspended", "True", "JobSuspended", "Job suspended")]
    job = real_job(suspend=True, conditions=suspended, terminating=1)
    derived = derive(job, [evicted_pod()])
    assert (derived.state, derived.reason) == (JobState.QUEUED, "Suspended")


# --- 3. why no pod runs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."),
        ("SchedulerError", 'running PreBind plugin "VolumeBinding": binding volumes: timed out'),
    ],
)
def test_the_schedulers_reason_is_the_pending_reason(reason: str, message: str) -> None:
    pending = real_pod("Pending", conditions=[_condition("PodScheduled", "False", reason, message)])
    assert derive(real_job(active=1), [pending]) == Derived(JobState.PENDING, reason, message)


POD_SECURITY = (
    f'Error creating: pods "{NAME}-abc12" is forbidden: violates PodSecurity '
    '"restricted:latest": allowPrivilegeEscalation != false (container "task" must set '
    "securityContext.allowPrivilegeEscalation=false)"
)
QUOTA = (
    f'Error creating: pods "{NAME}-def34" is forbidden: exceeded quota: compute, requested: '
    "limits.cpu=2, used: limits.cpu=4, limited: limits.cpu=4"
)


def failed_create(message: str, *, last: str, uid: str = JOB_UID) -> Obj:
    """An Event the Job controller records when it cannot create a pod (core/v1)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{NAME}.18a2b3c4d5e6f708",
            "namespace": "default",
            "uid": "e1e2e3e4-0000-4000-8000-000000000001",
            "resourceVersion": "901",
            "creationTimestamp": "2026-03-01T12:00:01Z",
        },
        "involvedObject": {
            "kind": "Job",
            "namespace": "default",
            "name": NAME,
            "uid": uid,
            "apiVersion": "batch/v1",
            "resourceVersion": "811",
        },
        "reason": "FailedCreate",
        "message": message,
        "source": {"component": "job-controller"},
        "firstTimestamp": "2026-03-01T12:00:01Z",
        "lastTimestamp": last,
        "count": 3,
        "type": "Warning",
        "eventTime": None,
        "reportingComponent": "job-controller",
        "reportingInstance": "",
    }


def test_a_pod_the_job_controller_cannot_create_is_pending_failed_create() -> None:
    events = [
        failed_create(QUOTA, last="2026-03-01T12:00:03Z"),
        failed_create(POD_SECURITY, last="2026-03-01T12:00:09Z"),  # the newest
    ]
    derived = derive(real_job(), [], events)
    assert derived == Derived(JobState.PENDING, "FailedCreate", POD_SECURITY)


def test_an_older_jobs_failed_create_never_leaks_into_a_new_one() -> None:
    events = [failed_create(POD_SECURITY, last="2026-03-01T12:00:09Z", uid=OLD_JOB_UID)]
    assert derive(real_job(), [], events) == Derived(
        JobState.QUEUED, "Created", "the Job is created; no pod yet"
    )


def test_a_failed_create_before_the_pod_was_made_is_over() -> None:
    events = [failed_create(QUOTA, last="2026-03-01T12:00:00Z")]
    assert derive(real_job(failed=1), [failed_pod(tracked=False)], events).reason == (
        "RetryBackoff"
    )
    pending = real_pod("Pending", state={"waiting": {"reason": "ContainerCreating"}})
    assert derive(real_job(active=1), [pending], events).reason == "ContainerCreating"


def test_a_failed_create_after_the_last_pod_finished_is_the_reason() -> None:
    events = [failed_create(QUOTA, last="2026-03-01T12:07:00Z")]
    derived = derive(real_job(failed=1), [failed_pod(tracked=False)], events)
    assert (derived.reason, derived.message) == ("FailedCreate", QUOTA)


def test_an_event_with_only_an_event_time_is_read() -> None:
    event = copy.deepcopy(failed_create(QUOTA, last=""))
    event["lastTimestamp"] = None
    event["eventTime"] = "2026-03-01T12:00:09.123456Z"
    assert derive(real_job(), [], [event]).reason == "FailedCreate"


# --- 4. what the API says when it refuses a create --------------------------------------------


def test_api_message_reads_the_status_body() -> None:
    body = (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
        b'"Job.batch \\"kt-x\\" is invalid: metadata.annotations: Too long: must have at most '
        b'262144 bytes","reason":"Invalid","code":422}'
    )
    assert api_message(body, "Unprocessable Entity") == (
        'Job.batch "kt-x" is invalid: metadata.annotations: Too long: must have at most '
        "262144 bytes"
    )
    assert api_message(b"<html>forbidden</html>", "Forbidden") == "Forbidden"
    assert api_message(None, None)


# --- what the informers cache ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "pods"),
    [
        (real_job(active=1), [real_pod("Running", state=RUNNING)]),
        (real_job(failed=1), [failed_pod(tracked=False)]),
        (real_job(suspend=True), []),
        (
            real_job(active=1, terminating=1),
            [real_pod("Running", state=RUNNING, deleted="2026-03-01T12:01:00Z")],
        ),
        (
            real_job(conditions=[_condition("Failed", "True", "BackoffLimitExceeded")], failed=2),
            [failed_pod(tracked=True), failed_pod(tracked=False)],
        ),
    ],
    ids=["running", "retrying", "suspended", "terminating", "failed"],
)
def test_a_job_and_pods_as_cached_are_observed_as_served(job: Obj, pods: list[Obj]) -> None:
    """The informers keep only what observe_job reads (no pod template, no managedFields)."""
    served = copy.deepcopy(job)
    served["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    served["spec"]["template"] = {"spec": {"containers": [{"name": "task", "image": "x"}]}}
    cached = slim_job(served)
    assert "template" not in cached["spec"]
    assert "managedFields" not in cached["metadata"]
    assert observe_job(cached, [slim_pod(p) for p in pods]) == observe_job(served, pods)
