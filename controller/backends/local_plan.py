"""The local backend's Job controller, as pure functions: given a TaskSpec and the pods
found on disk, what is the Job's status and which pods should start now.

It follows Kubernetes' Job semantics: `retries` is the backoff limit (failed pods beyond it
fail the Job), exit code 2 fails the Job at once (the pod failure policy), a pod whose
supervisor vanished is a disruption and does not count as a try, `timeout_s` is the active
deadline, and a retry waits an exponential backoff after the last failure. What happened
first decides: a task that ended after the deadline (while no controller watched) does not
complete the Job, it overran it. A job whose `start_timeout_s` passed before any pod was
made gets none (the reconciler fails it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.states import Condition, Observation, PodFacts

MAX_BACKOFF_S = 360.0


@dataclass(frozen=True)
class Pod:
    """One attempt at one completion index, as its folder shows it."""

    index: int
    attempt: int
    created_at: datetime
    started_at: datetime | None = None  # the task process exists
    finished_at: datetime | None = None
    exit_code: int | None = None  # set once the supervisor recorded the exit
    alive: bool = True  # the supervisor process still runs

    @property
    def active(self) -> bool:
        return self.exit_code is None and self.alive

    @property
    def lost(self) -> bool:
        """Gone without an exit record: a disruption, retried without counting."""
        return self.exit_code is None and not self.alive

    @property
    def failed(self) -> bool:
        return self.exit_code not in (None, env.EXIT_OK)

    @property
    def phase(self) -> str:
        if self.exit_code == env.EXIT_OK:
            return "Succeeded"
        if self.exit_code is not None or self.lost:
            return "Failed"
        return "Running" if self.started_at else "Pending"


def terminal_condition(spec: TaskSpec, pods: list[Pod], now: datetime) -> Condition | None:
    """Complete or Failed, once the pods decide it; None while the Job goes on. Dated when
    the exit that decided it happened (a controller that was down meanwhile sees it late),
    else `now` (a deadline: when the controller stopped it). An exit after the deadline
    decides nothing but that the deadline passed."""
    decided = _decided(spec, pods, now)
    when = decided.at if decided is not None and decided.at is not None else now
    end = deadline(spec, pods)
    if end is not None and when >= end:
        return Condition(
            "Failed",
            reason="DeadlineExceeded",
            message=f"the job did not finish within timeout_s={spec.timeout_s}",
            at=when,
        )
    return decided


def _decided(spec: TaskSpec, pods: list[Pod], now: datetime) -> Condition | None:
    """What the pods' exits decide, deadline aside."""
    invalid = next((p for p in pods if p.exit_code == env.EXIT_INVALID_PARAMS), None)
    if invalid is not None:
        return Condition(
            "Failed",
            reason="PodFailurePolicy",
            message=f"index {invalid.index} exited with code 2 (a retry would fail the same): "
            "not retried",
            at=_ended(invalid, now),
        )
    failures = [p for p in pods if p.failed]
    if len(failures) > spec.retries:
        last = max(failures, key=lambda p: p.finished_at or p.created_at)
        return Condition(
            "Failed",
            reason="BackoffLimitExceeded",
            message=f"{len(failures)} failed attempt(s), retries={spec.retries}; "
            f"last exit code {last.exit_code}",
            at=_ended(last, now),
        )
    if len(succeeded_indexes(pods)) >= spec.completions:
        done = [p for p in pods if p.exit_code == env.EXIT_OK]
        last = max(done, key=lambda p: p.finished_at or p.created_at)
        return Condition(
            "Complete", reason="Completed", message="all tasks succeeded", at=_ended(last, now)
        )
    return None


def _ended(pod: Pod, now: datetime) -> datetime:
    """When `pod`'s task ended, as its exit was recorded (never after `now`)."""
    return min(pod.finished_at, now) if pod.finished_at is not None else now


def succeeded_indexes(pods: list[Pod]) -> set[int]:
    return {p.index for p in pods if p.exit_code == env.EXIT_OK}


def start_time(pods: list[Pod]) -> datetime | None:
    return min((p.created_at for p in pods), default=None)


def deadline(spec: TaskSpec, pods: list[Pod], *, now: datetime | None = None) -> datetime | None:
    """When the Job's active deadline passes: `timeout_s` after its first pod was made
    (`now` for the first pod, while it is being made); None without one."""
    start = start_time(pods) or now
    if spec.timeout_s is None or start is None:
        return None
    return start + timedelta(seconds=spec.timeout_s)


def backoff_s(failures: int, base_s: float) -> float:
    return float(min(base_s * 2 ** max(failures - 1, 0), MAX_BACKOFF_S))


@dataclass(frozen=True)
class Plan:
    start: list[tuple[int, int]]  # (index, attempt) to start now
    retry_at: datetime | None  # when a retry waiting for its backoff may start


def plan_pods(spec: TaskSpec, pods: list[Pod], *, now: datetime, backoff_base_s: float) -> Plan:
    """Which pods to start: each index without a success or an active pod, up to
    `parallelism` active at once, after the backoff that follows a failure; none for a job
    that never had one and is past its start deadline."""
    if not pods and spec.start_by is not None and now > spec.start_by:
        return Plan(start=[], retry_at=None)
    active = [p for p in pods if p.active]
    room = spec.parallelism - len(active)
    done = succeeded_indexes(pods)
    busy = {p.index for p in active}
    failures = [p for p in pods if p.failed]
    last_failure = max((p.finished_at or p.created_at for p in failures), default=None)
    not_before = None
    if last_failure is not None:
        not_before = last_failure + timedelta(seconds=backoff_s(len(failures), backoff_base_s))
    if not_before is not None and now < not_before:
        return Plan(start=[], retry_at=not_before)
    start: list[tuple[int, int]] = []
    for index in range(spec.completions):
        if room <= 0:
            break
        if index in done or index in busy:
            continue
        attempt = 1 + max((p.attempt for p in pods if p.index == index), default=0)
        start.append((index, attempt))
        room -= 1
    return Plan(start=start, retry_at=None)


def observe(
    spec: TaskSpec,
    pods: list[Pod],
    *,
    condition: Condition | None,
    waiting_for_slot: str | None,
) -> Observation:
    """The Job as Kubernetes would show it."""
    counted = [p for p in pods if not p.lost]
    failures = [p for p in counted if p.failed]
    last_failure = max(failures, key=lambda p: p.finished_at or p.created_at, default=None)
    return Observation(
        conditions=(condition,) if condition else (),
        suspended=waiting_for_slot is not None and not any(p.active for p in pods),
        suspended_message=waiting_for_slot,
        active=sum(p.active for p in pods),
        succeeded=len(succeeded_indexes(pods)),
        failed=sum(p.failed for p in counted),
        start_time=start_time(pods),
        task_started_at=min((p.started_at for p in pods if p.started_at), default=None),
        pods=tuple(
            PodFacts(
                phase=p.phase,
                waiting_reason=None if p.started_at else "ContainerCreating",
            )
            for p in pods
            if p.active
        ),
        last_exit_code=last_failure.exit_code if last_failure else None,
    )
