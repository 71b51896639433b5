"""How a job's state follows from what can be observed, and which transitions are allowed.

`derive_state` is the one place that maps Kubernetes Job conditions (`Complete`, `Failed`,
`FailureTarget`, `SuccessCriteriaMet`, `Suspended`) and pod status to a kubetask state. Both
backends describe what they see as an `Observation`, so both give the same states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from kubetask.models import JobState

_S = JobState

ALLOWED: dict[JobState, frozenset[JobState]] = {
    _S.QUEUED: frozenset({_S.PENDING, _S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
    _S.PENDING: frozenset({_S.QUEUED, _S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.QUEUED, _S.PENDING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}

# Pod waiting reasons that keep a job pending, as the kubelet reports them.
PENDING_REASONS = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ContainerCreating",
)


def can_transition(old: JobState, new: JobState) -> bool:
    """Terminal states are final; every other change must be listed in ALLOWED."""
    return new in ALLOWED[old]


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool = True
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class PodFacts:
    phase: str  # Pending | Running | Succeeded | Failed
    waiting_reason: str | None = None
    waiting_message: str | None = None
    unschedulable_message: str | None = None


@dataclass(frozen=True)
class Observation:
    """A job as its backend sees it, in Kubernetes' terms (None when the Job is gone)."""

    conditions: tuple[Condition, ...] = ()
    suspended: bool = False
    suspended_message: str | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    start_time: datetime | None = None
    pods: tuple[PodFacts, ...] = field(default=())

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_ and c.status), None)

    @property
    def attempts(self) -> int:
        """Tries so far: each failed pod (what the backoff limit counts), plus the try under
        way or that succeeded. An Indexed Job's parallel pods are one try, not one each."""
        return self.failed + (1 if self.active or self.succeeded else 0)


@dataclass(frozen=True)
class JobFacts:
    """Everything `derive_state` looks at: the backend's view plus kubetask's own record."""

    observation: Observation | None
    submitted: bool
    cancel_requested: bool = False
    start_deadline_passed: bool = False  # start_timeout_s is over and it never ran
    tasks_succeeded: bool = False  # every completion index left a successful outcome


@dataclass(frozen=True)
class Derived:
    state: JobState
    reason: str | None = None
    message: str | None = None
    stop: bool = False  # kubetask itself must delete the backend's job (cancel, start timeout)


def derive_state(facts: JobFacts) -> Derived:
    """The job's state, read off the facts. Order matters: the first rule that holds wins."""
    obs = facts.observation
    if facts.cancel_requested:
        return Derived(_S.CANCELLED, "Cancelled", "cancelled on request", stop=True)
    if obs is None:
        if facts.submitted and facts.tasks_succeeded:  # e.g. its TTL ran out while we were away
            return Derived(_S.SUCCEEDED, "Completed", "every task succeeded; the Job is gone")
        if facts.submitted:
            return Derived(_S.FAILED, "JobDeleted", "the Job was deleted outside kubetask")
        return Derived(_S.QUEUED, "Accepted", "accepted; creating the Job")
    for type_, state in (
        ("Failed", _S.FAILED),
        ("FailureTarget", _S.FAILED),
        ("Complete", _S.SUCCEEDED),
        ("SuccessCriteriaMet", _S.SUCCEEDED),
    ):
        cond = obs.condition(type_)
        if cond is not None:
            return Derived(state, cond.reason or type_, cond.message)
    running = any(pod.phase == "Running" for pod in obs.pods)
    if facts.start_deadline_passed and not running:
        return Derived(
            _S.FAILED, "StartTimeout", "the job did not start within start_timeout_s", stop=True
        )
    suspended = obs.condition("Suspended")
    if obs.suspended or suspended is not None:
        message = obs.suspended_message or (suspended.message if suspended else None)
        return Derived(_S.QUEUED, "Suspended", message or "waiting for admission by the queue")
    if running:
        return Derived(_S.RUNNING)
    return _pending(obs)


def _pending(obs: Observation) -> Derived:
    live = [pod for pod in obs.pods if pod.phase in ("Pending", "Running")]
    for pod in live:
        if pod.unschedulable_message:
            return Derived(_S.PENDING, "Unschedulable", pod.unschedulable_message)
    for pod in live:
        if pod.waiting_reason in PENDING_REASONS:
            return Derived(_S.PENDING, pod.waiting_reason, pod.waiting_message)
    if live:
        return Derived(_S.PENDING, "PodPending", "the pod is not running yet")
    if any(pod.phase == "Succeeded" for pod in obs.pods):
        return Derived(_S.RUNNING)  # a task is done; the Job's own verdict is on its way
    if obs.failed or any(pod.phase == "Failed" for pod in obs.pods):
        return Derived(_S.PENDING, "RetryBackoff", f"retrying after {obs.failed} failed attempt(s)")
    return Derived(_S.QUEUED, "Created", "the Job is created; no pod yet")
