"""How a job's state follows from what can be observed, and which transitions are allowed.

`derive_state` is the one place that maps Kubernetes Job conditions (`Complete`, `Failed`,
`FailureTarget`, `SuccessCriteriaMet`, `Suspended`) and pod status to a kubetask state. Both
backends describe what they see as an `Observation`, so both give the same states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kubetask import env
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
    at: datetime | None = None  # when it became so, where the backend says (lastTransitionTime)


@dataclass(frozen=True)
class PodFacts:
    phase: str  # Pending | Running | Succeeded | Failed
    waiting_reason: str | None = None
    waiting_message: str | None = None
    # Why the scheduler has not placed it (PodScheduled False): Unschedulable, SchedulerError
    unscheduled_reason: str | None = None
    unscheduled_message: str | None = None
    # Not yet counted by the Job (it still holds the Job controller's tracking finalizer):
    # for a finished pod, the Job's verdict on it is on its way. Backends whose counters
    # are always up to date (local) leave it False.
    tracked: bool = False


@dataclass(frozen=True)
class Observation:
    """A job as its backend sees it, in Kubernetes' terms (None when the Job is gone)."""

    conditions: tuple[Condition, ...] = ()
    suspended: bool = False
    suspended_message: str | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    start_time: datetime | None = None  # the Job's: when its controller began (startTime)
    # When its first task began running (a container's startedAt), where the backend says
    task_started_at: datetime | None = None
    pods: tuple[PodFacts, ...] = field(default=())  # those not being deleted
    terminating: int = 0  # pods being deleted that the Job still waits for
    create_failure: str | None = None  # why the Job controller could not create a pod (newest)
    # Finished pods the Job controller has seen but not yet moved into succeeded/failed
    # (status.uncountedTerminatedPods): the Job's final condition may come before the count.
    uncounted_succeeded: int = 0
    uncounted_failed: int = 0
    last_exit_code: int | None = None  # of the task that failed last, where the backend knows

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_ and c.status), None)

    @property
    def attempts(self) -> int:
        """Tries so far: each failed pod (what the backoff limit counts), plus the try under
        way or that succeeded. A job whose task never started (its pod unschedulable, or
        still being made) has made no try yet. An Indexed Job's parallel pods are one try,
        not one each."""
        failed = self.failed + self.uncounted_failed
        succeeded = self.succeeded + self.uncounted_succeeded
        started = self.task_started_at is not None or any(p.phase == "Running" for p in self.pods)
        return failed + (1 if (self.active and started) or succeeded else 0)


@dataclass(frozen=True)
class JobFacts:
    """Everything `derive_state` looks at: the backend's view plus kubetask's own record."""

    observation: Observation | None
    submitted: bool
    cancel_requested: bool = False
    start_deadline_passed: bool = False  # start_timeout_s is over and it never ran
    tasks_succeeded: bool = False  # every completion index left a successful outcome
    create_rejected: str | None = None  # the backend refused the job for good: its words
    ran: bool = False  # a task of the job has run (kubetask's record says when it started)
    unhandled: str | None = None  # kubetask failed to handle the job, again and again: why
    # the namespace its Job was created in, which kubetask no longer watches (its tenant's
    # namespace changed since): the Job cannot be seen, it was not deleted
    out_of_sight: str | None = None
    # The Job's failure is decided (its deadline passed, its tries are spent, a task exited
    # with the code that fails it) but not yet written: why. Its pods going away then are
    # the Job controller stopping them, not an eviction; the state it had holds meanwhile.
    failing: str | None = None
    state: JobState | None = None  # the state kubetask last recorded


@dataclass(frozen=True)
class Derived:
    state: JobState
    reason: str | None = None
    message: str | None = None
    stop: bool = False  # kubetask itself must delete the backend's job (cancel, start timeout)
    stopping: bool = False  # the backend stops the job's pods itself (a decided failure)
    at: datetime | None = None  # when the backend's condition that decided it became so


WAITING_FOR_QUEUE = "waiting for admission by the queue"

# a Job's outcome, by the conditions that say it: the final one first, then the early word the
# Job controller writes as soon as the outcome is decided (its pods may still be stopping)
OUTCOME_CONDITIONS = (
    (_S.FAILED, ("Failed", "FailureTarget")),
    (_S.SUCCEEDED, ("Complete", "SuccessCriteriaMet")),
)


def derive_state(facts: JobFacts) -> Derived:
    """The job's state, read off the facts. Order matters: the first rule that holds wins."""
    obs = facts.observation
    decided = None if obs is None else _outcome(obs)
    if facts.cancel_requested and decided is None:  # a cancel after the outcome changes nothing
        return Derived(_S.CANCELLED, "Cancelled", "cancelled on request", stop=True)
    if facts.unhandled is not None:
        return Derived(
            _S.FAILED, "ControllerError", f"kubetask could not handle this job: {facts.unhandled}"
        )
    if facts.create_rejected is not None:
        return Derived(_S.FAILED, "CreateRejected", facts.create_rejected)
    if obs is None:
        return _no_job(facts)
    if decided is not None:
        return decided
    running = any(pod.phase == "Running" for pod in obs.pods)
    if facts.start_deadline_passed and not running:
        return Derived(
            _S.FAILED, "StartTimeout", "the job did not start within start_timeout_s", stop=True
        )
    if (held := _held(obs)) is not None:
        return held
    if running:
        return Derived(_S.RUNNING)
    if obs.terminating and facts.failing is not None and facts.state is not None:
        # the Job controller stops its pods: no eviction, and no state of its own meanwhile
        return Derived(
            facts.state, "Stopping", f"its pods are being stopped: {facts.failing}", stopping=True
        )
    return _pending(obs, ran=facts.ran)


def _no_job(facts: JobFacts) -> Derived:
    """No Job to observe: not created yet, or gone (ended and removed, deleted by hand, or
    out of sight in a namespace no longer watched)."""
    if facts.submitted and facts.tasks_succeeded:  # e.g. its TTL ran out while we were away
        return Derived(_S.SUCCEEDED, "Completed", "every task succeeded; the Job is gone")
    if facts.submitted and facts.out_of_sight is not None:
        return Derived(
            _S.FAILED,
            "NamespaceNotWatched",
            f"its Job was created in namespace {facts.out_of_sight}, which kubetask no "
            "longer watches (its tenant's namespace changed): it may still run there, unseen",
        )
    if facts.submitted:
        return Derived(_S.FAILED, "JobDeleted", "the Job was deleted outside kubetask")
    if facts.start_deadline_passed:  # never created in time (refused, or we were away)
        return Derived(_S.FAILED, "StartTimeout", "the job did not start within start_timeout_s")
    return Derived(_S.QUEUED, "Accepted", "accepted; creating the Job")


def _held(obs: Observation) -> Derived | None:
    """Queued while the Job is suspended (a queue holds it), or let go but with no pod yet."""
    if obs.suspended:  # held by its spec: the Job controller's "Job suspended" says no more
        return Derived(_S.QUEUED, "Suspended", obs.suspended_message or WAITING_FOR_QUEUE)
    if obs.condition("Suspended") is not None:  # let go; the condition's words are stale
        return Derived(_S.QUEUED, "Admitted", "let go by its queue; its pods are being made")
    return None


def failure_due(
    obs: Observation, *, retries: int, timeout_s: int | None, now: datetime
) -> str | None:
    """Why the Job controller is about to fail the Job, by the rules it decides by (its
    active deadline, its backoff limit, the exit code its failure policy fails it on); None
    when none applies."""
    started = obs.start_time
    if (
        timeout_s is not None
        and started is not None
        and now >= started + timedelta(seconds=timeout_s)
    ):
        return f"timeout_s={timeout_s} is over"
    failed = obs.failed + obs.uncounted_failed
    if failed > retries:
        return f"{failed} failed attempt(s), more than retries={retries}"
    if obs.last_exit_code == env.EXIT_INVALID_PARAMS:
        return f"a task exited with code {env.EXIT_INVALID_PARAMS}, which is not retried"
    return None


def _outcome(obs: Observation) -> Derived | None:
    """The outcome the Job's conditions say was decided (None: not yet): the final word's
    reason, the time the outcome was first decided."""
    for state, types in OUTCOME_CONDITIONS:
        said = [c for c in map(obs.condition, types) if c is not None]
        if said:
            final = said[0]
            decided = min((c.at for c in said if c.at is not None), default=None)
            return Derived(state, final.reason or final.type, final.message, at=decided)
    return None


def _pending(obs: Observation, *, ran: bool) -> Derived:
    """No pod runs: why, in the order a person would look (the scheduler, the kubelet, pods
    going away, the Job controller's own failures, its counting of finished pods)."""
    live = [pod for pod in obs.pods if pod.phase in ("Pending", "Running")]
    for pod in live:
        if pod.unscheduled_reason:
            message = pod.unscheduled_message or _UNSCHEDULED.get(pod.unscheduled_reason)
            return Derived(_S.PENDING, pod.unscheduled_reason, message)
    for pod in live:
        if pod.waiting_reason in PENDING_REASONS:
            return Derived(_S.PENDING, pod.waiting_reason, pod.waiting_message)
    if live:
        return Derived(_S.PENDING, "PodPending", "the pod is not running yet")
    if obs.terminating:
        pods = "1 pod" if obs.terminating == 1 else f"{obs.terminating} pods"
        return Derived(
            _S.PENDING,
            "PodTerminating",
            f"{pods} terminating (evicted or its node lost); a replacement starts when it is gone",
        )
    if obs.create_failure:  # newer than every pod: the backend reads it so
        return Derived(_S.PENDING, "FailedCreate", obs.create_failure)
    finished = [pod for pod in obs.pods if pod.phase in ("Succeeded", "Failed")]
    if any(pod.tracked or pod.phase == "Succeeded" for pod in finished):
        return Derived(_S.RUNNING)  # a task is done; the Job's own verdict is on its way
    if obs.failed:
        return Derived(_S.PENDING, "RetryBackoff", f"retrying after {obs.failed} failed attempt(s)")
    if finished:  # failed, not tracked, not counted: a disruption the Job does not count
        return Derived(_S.RUNNING)
    if ran:  # its pod went (evicted, its node lost) and was not counted: one more is coming
        return Derived(_S.PENDING, "PodReplacing", "a new pod is being made for the one that went")
    return Derived(_S.QUEUED, "Created", "the Job is created; no pod yet")


_UNSCHEDULED = {
    "Unschedulable": "no node can run this pod",
    "SchedulerError": "the scheduler could not place this pod",
}
