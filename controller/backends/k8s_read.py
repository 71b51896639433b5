"""Reading Kubernetes objects (raw API JSON) into kubetask's terms: pure functions.

`observe_job` turns a Job, its Pods and the Job controller's `FailedCreate` Events into the
Observation that `derive_state` reads. The informers cache Jobs and Pods as `slim_job` and
`slim_pod` leave them: what is read here, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from kubetask.controller.k8s_api import Obj
from kubetask.controller.manifests import ANNOTATION_INDEX, CONTAINER, LABEL_QUEUE, job_id_of
from kubetask.controller.states import Condition, Observation, PodFacts

# The Job controller's finalizer on each pod, removed once the pod's outcome is counted
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
FAILED_CREATE = "FailedCreate"  # the Job controller's Event reason when a pod create fails
# A Job without a queue is suspended only by hand (kubectl patch): no queue will admit it.
SUSPENDED_BY_HAND = (
    "suspended (its Job's spec.suspend was set outside kubetask): it starts once resumed"
)


def _slim_metadata(obj: Obj) -> Obj:
    return {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}


def slim_job(job: Obj) -> Obj:
    """What kubetask reads of a Job: its metadata (without managedFields), whether it is
    suspended and its status; the pod template and the rest of the spec stay with the API
    server (a Job cached whole holds ~70 objects the garbage collector tracks, this ~4)."""
    return {
        "metadata": _slim_metadata(job),
        "spec": {"suspend": job.get("spec", {}).get("suspend", False)},
        "status": job.get("status") or {},
    }


def slim_pod(pod: Obj) -> Obj:
    """What kubetask reads of a Pod: its metadata (without managedFields) and its status."""
    return {"metadata": _slim_metadata(pod), "status": pod.get("status") or {}}


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def pod_index(pod: Obj) -> int:
    raw = pod.get("metadata", {}).get("annotations", {}).get(ANNOTATION_INDEX, "0")
    return int(raw) if str(raw).isdigit() else 0


def _container_status(pod: Obj) -> Obj:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return next(
        (s for s in statuses if s.get("name") == CONTAINER), statuses[0] if statuses else {}
    )


def _unscheduled(status: Obj) -> tuple[str, str | None] | None:
    """(reason, message) when the scheduler could not place the pod."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = cond.get("reason")
            if reason in ("Unschedulable", "SchedulerError"):
                return reason, cond.get("message")
    return None


def _tracked(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (pod.get("metadata", {}).get("finalizers") or [])


def _finished(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def pod_facts(pod: Obj, *, uncounted: frozenset[str] = frozenset()) -> PodFacts:
    """The pod's facts; `uncounted`: the uids the Job lists as finished but not yet counted
    (the controller drops a pod's finalizer between listing it there and counting it)."""
    status = pod.get("status", {})
    waiting = _container_status(pod).get("state", {}).get("waiting") or {}
    unscheduled = _unscheduled(status)
    return PodFacts(
        phase=status.get("phase", "Pending"),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        unscheduled_reason=unscheduled[0] if unscheduled else None,
        unscheduled_message=unscheduled[1] if unscheduled else None,
        tracked=_tracked(pod) or pod.get("metadata", {}).get("uid") in uncounted,
    )


def _uncounted_list(status: Obj, outcome: str) -> list[str]:
    lists = status.get("uncountedTerminatedPods") or {}
    return [str(uid) for uid in lists.get(outcome) or []]


def _uncounted(status: Obj) -> frozenset[str]:
    return frozenset(_uncounted_list(status, "succeeded") + _uncounted_list(status, "failed"))


def _terminating(pods: Iterable[Obj]) -> int:
    """Pods being deleted that the Job still waits for: not finished yet, or finished but
    not yet counted."""
    return sum(
        1
        for pod in pods
        if pod.get("metadata", {}).get("deletionTimestamp")
        and (not _finished(pod) or _tracked(pod))
    )


def event_job_id(event: Obj) -> str | None:
    """The job an Event on a Job is about (None: not a kubetask Job's name)."""
    involved = event.get("involvedObject") or {}
    return job_id_of(str(involved.get("name", ""))) if involved.get("kind") == "Job" else None


def _event_time(event: Obj) -> datetime | None:
    return parse_time(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("metadata", {}).get("creationTimestamp")
    )


def create_failure(job: Obj, pods: Iterable[Obj], events: Iterable[Obj]) -> str | None:
    """The message of the Job controller's newest `FailedCreate` Event on this very Job (by
    uid: an older Job of the same name is another job), unless a pod was created since."""
    uid = job.get("metadata", {}).get("uid")
    newest: tuple[datetime, str] | None = None
    for event in events:
        involved = event.get("involvedObject") or {}
        when = _event_time(event)
        if (
            event.get("reason") != FAILED_CREATE
            or involved.get("kind") != "Job"
            or involved.get("uid") != uid
            or when is None
        ):
            continue
        if newest is None or when > newest[0]:
            message = event.get("message") or "the Job controller could not create a pod"
            newest = (when, str(message))
    if newest is None:
        return None
    created = [t for t in (parse_time(_created(p) or None) for p in pods) if t is not None]
    return newest[1] if not created or newest[0] > max(created) else None


def observe_job(job: Obj, pods: list[Obj], events: Iterable[Obj] = ()) -> Observation:
    """The Job's conditions and counters, the facts of its pods (those being deleted left
    out: they no longer run for the Job, they only delay a replacement), and why no pod could
    be created, if the Job controller said so."""
    status = job.get("status") or {}
    labels = job.get("metadata", {}).get("labels") or {}
    current = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    uncounted = _uncounted(status)
    return Observation(
        conditions=tuple(
            Condition(
                type=c["type"],
                status=c.get("status") == "True",
                reason=c.get("reason"),
                message=c.get("message"),
                at=parse_time(c.get("lastTransitionTime")),
            )
            for c in status.get("conditions") or []
        ),
        suspended=bool(job.get("spec", {}).get("suspend")),
        suspended_message=None if LABEL_QUEUE in labels else SUSPENDED_BY_HAND,
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        start_time=parse_time(status.get("startTime")),
        task_started_at=first_task_start(pods),
        pods=tuple(pod_facts(p, uncounted=uncounted) for p in sorted(current, key=_created)),
        # The Job counts them too, but its status lags the pods' own
        terminating=max(int(status.get("terminating") or 0), _terminating(pods)),
        create_failure=create_failure(job, pods, events),
        uncounted_succeeded=len(_uncounted_list(status, "succeeded")),
        uncounted_failed=len(_uncounted_list(status, "failed")),
        last_exit_code=last_exit_code(pods),
    )


def first_task_start(pods: list[Obj]) -> datetime | None:
    """When the first of the pods' task containers began running (its `startedAt`, running
    or terminated since), those being deleted included: they ran too."""
    starts = []
    for pod in pods:
        state = _container_status(pod).get("state", {})
        began = (state.get("running") or state.get("terminated") or {}).get("startedAt")
        if (at := parse_time(began)) is not None:
            starts.append(at)
    return min(starts, default=None)


def last_exit_code(pods: list[Obj]) -> int | None:
    """The exit code of the newest failed pod's task container, if it says one."""
    for pod in sorted(pods, key=_created, reverse=True):
        if pod.get("status", {}).get("phase") == "Failed":
            terminated = _container_status(pod).get("state", {}).get("terminated") or {}
            code = terminated.get("exitCode")
            if isinstance(code, int):
                return code
    return None


def _created(pod: Obj) -> str:
    return str(pod.get("metadata", {}).get("creationTimestamp", ""))


def latest_pods(pods: list[Obj]) -> dict[int, Obj]:
    """The newest pod of each completion index."""
    latest: dict[int, Obj] = {}
    for pod in sorted(pods, key=_created):
        latest[pod_index(pod)] = pod
    return latest


def termination_messages(pods: list[Obj]) -> dict[int, str]:
    """Each index's last termination message (the task's outcome when Redis lost it)."""
    messages: dict[int, str] = {}
    for index, pod in latest_pods(pods).items():
        terminated = _container_status(pod).get("state", {}).get("terminated") or {}
        if terminated.get("message"):
            messages[index] = terminated["message"]
    return messages


def api_message(body: str | bytes | None, reason: str | None) -> str:
    """What an API error says: its Status's `message` when the body is one, else the
    HTTP reason."""
    try:
        status = json.loads(body) if body else None
    except ValueError:
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else str(reason or "rejected by the Kubernetes API")
