"""The Job controller's sync as a pure function: from a Job, its Pods and the time, the plan
— the new status, the pods to create (by completion index) and delete, the tracking
finalizers to remove, the events to record — as Kubernetes 1.31+ does it:

- pods carry the `batch.kubernetes.io/job-tracking` finalizer until their outcome is counted
  in `status.succeeded`/`failed` (and `completedIndexes` for Indexed Jobs);
- a failed pod is matched against `podFailurePolicy` (FailJob fails the Job, Ignore does not
  count it, Count counts it); more than `backoffLimit` counted failures (plus container
  restarts under `restartPolicy: OnFailure`), or running past `activeDeadlineSeconds`, fail
  the Job;
- success or failure first adds `SuccessCriteriaMet` / `FailureTarget` and deletes the
  remaining pods; `Complete` / `Failed` follow once no pod is terminating;
- `suspend` deletes the active pods and sets `Suspended`; resuming resets `startTime`;
- `podReplacementPolicy: Failed` creates no replacement while a pod is still terminating;
- status counters that are zero are left out (`omitempty`), `ready`/`terminating` are not."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.kubeapi.job_pods import (
    TRACKING_FINALIZER,
    compress_indexes,
    condition,
    has_condition,
    is_finished,
    is_ready,
    is_terminal,
    match_failure_policy,
    parse_indexes,
    parse_time,
    pod_index,
    stamp,
)

Obj = dict[str, Any]
Why = tuple[str, str]  # reason, message

SUCCESS: Why = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF: Why = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE: Why = ("DeadlineExceeded", "Job was active longer than specified deadline")


@dataclass
class JobPlan:
    status: Obj
    create: list[int | None] = field(default_factory=list)  # completion index, or None
    delete: list[str] = field(default_factory=list)  # pod names
    release: list[str] = field(default_factory=list)  # pods whose tracking finalizer can go
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    new_failures: int = 0
    held: bool = False  # pods were wanted but held back (retry back-off)
    requeue_s: float | None = None


def _has_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


@dataclass
class _Sync:
    """The working state of one sync."""

    job: Obj
    now: datetime
    plan: JobPlan
    active: list[Obj]
    terminating: list[Obj]
    done: set[int] = field(default_factory=set)  # succeeded completion indexes

    @property
    def spec(self) -> Obj:
        spec: Obj = self.job["spec"]
        return spec

    @property
    def status(self) -> Obj:
        return self.plan.status

    def set_condition(self, kind: str, value: str, why: Why) -> bool:
        """Add or update a condition; True if it changed."""
        reason, message = why
        moment = stamp(self.now)
        entry = {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastProbeTime": moment,
            "lastTransitionTime": moment,
        }
        conditions = self.status.setdefault("conditions", [])
        for i, existing in enumerate(conditions):
            if existing["type"] == kind:
                if (existing.get("status"), existing.get("reason")) == (value, reason):
                    return False
                conditions[i] = entry
                return True
        conditions.append(entry)
        return True

    def counts(self, active: list[Obj], terminating: list[Obj]) -> None:
        self.status.update(
            active=len(active),
            ready=sum(1 for p in active if is_ready(p)),
            terminating=len(terminating),
            uncountedTerminatedPods={},
        )
        for key in ("active", "succeeded", "failed"):  # omitempty in the Go types
            if not self.status.get(key):
                self.status.pop(key, None)

    def count_outcomes(self, uncounted: list[Obj]) -> Why | None:
        """Add the finished pods not counted yet; the FailJob match, if any."""
        indexed = self.spec.get("completionMode") == "Indexed"
        completions = self.spec.get("completions") or 0
        self.done = parse_indexes(self.status.get("completedIndexes", ""))
        succeeded, failed = self.status.get("succeeded", 0), self.status.get("failed", 0)
        fail_job: Why | None = None
        for pod in sorted(uncounted, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            if pod["status"]["phase"] == "Succeeded":
                index = pod_index(pod)
                if indexed and index is not None and index < completions:
                    self.done.add(index)
                succeeded += 1
                continue
            matched = match_failure_policy(self.spec.get("podFailurePolicy"), pod)
            if matched and matched[0] == "Ignore":
                continue
            failed += 1
            self.plan.new_failures += 1
            if matched and matched[0] == "FailJob" and fail_job is None:
                fail_job = ("PodFailurePolicy", matched[1])
        if indexed:
            succeeded = len(self.done)
            self.status["completedIndexes"] = compress_indexes(self.done)
        self.status.update(succeeded=succeeded, failed=failed)
        self.counts(self.active, self.terminating)
        return fail_job

    def failure(self, fail_job: Why | None) -> Why | None:
        target = condition(self.job, "FailureTarget")
        if target is not None and target.get("status") == "True":
            return target.get("reason", ""), target.get("message", "")
        if fail_job is not None:
            return fail_job
        restarts = sum(
            s.get("restartCount", 0)
            for p in self.active
            for s in p.get("status", {}).get("containerStatuses") or []
        )
        if self.spec["template"]["spec"].get("restartPolicy") != "OnFailure":
            restarts = 0
        if self.status.get("failed", 0) + restarts > self.spec.get("backoffLimit", 6):
            return BACKOFF
        deadline, started = self.spec.get("activeDeadlineSeconds"), self.status.get("startTime")
        if deadline is None or not started or self.spec.get("suspend"):
            return None
        elapsed = (self.now - parse_time(started)).total_seconds()
        if elapsed >= deadline:
            return DEADLINE
        self.plan.requeue_s = deadline - elapsed
        return None

    def succeeded(self) -> bool:
        completions: int | None = self.spec.get("completions")
        if has_condition(self.job, "SuccessCriteriaMet"):
            return True
        if self.spec.get("completionMode") == "Indexed":
            return len(self.done) >= (completions or 0)
        if completions is not None:
            return int(self.status.get("succeeded", 0)) >= completions
        return bool(self.status.get("succeeded", 0)) and not self.active

    def finish(self, final: str, why: Why) -> None:
        """Delete what still runs; add the terminal condition once nothing is terminating."""
        self.plan.delete = [p["metadata"]["name"] for p in self.active]
        self.counts([], self.terminating + self.active)
        if self.active or self.terminating:
            return
        self.set_condition(final, "True", why)
        if final == "Complete":
            self.status["completionTime"] = stamp(self.now)
            self.plan.events.append(("Normal", "Completed", "Job completed"))
        else:
            self.plan.events.append(("Warning", *why))

    def suspend(self) -> None:
        if self.set_condition("Suspended", "True", ("JobSuspended", "Job suspended")):
            self.plan.events.append(("Normal", "Suspended", "Job suspended"))
        self.plan.delete = [p["metadata"]["name"] for p in self.active]
        self.counts([], self.terminating + self.active)

    def run(self, hold: bool) -> None:
        if has_condition(self.job, "Suspended"):
            self.set_condition("Suspended", "False", ("JobResumed", "Job resumed"))
            self.plan.events.append(("Normal", "Resumed", "Job resumed"))
            self.status["startTime"] = stamp(self.now)
        self.status.setdefault("startTime", stamp(self.now))
        blocking = self.terminating if self.spec.get("podReplacementPolicy") == "Failed" else []
        surplus, to_create = (
            self._indexed(blocking)
            if self.spec.get("completionMode") == "Indexed"
            else self._non_indexed(blocking)
        )
        self.plan.delete = [p["metadata"]["name"] for p in surplus]
        if to_create and (hold or self.plan.new_failures):
            self.plan.held, to_create = True, []
        self.plan.create = to_create
        kept = [p for p in self.active if p not in surplus]
        self.counts(kept + [{}] * len(to_create), self.terminating + surplus)

    def _indexed(self, blocking: list[Obj]) -> tuple[list[Obj], list[int | None]]:
        completions = self.spec.get("completions") or 0
        surplus: list[Obj] = []
        running: set[int] = set()
        for pod in self.active:
            index = pod_index(pod)
            if index is None or index in self.done or index in running or index >= completions:
                surplus.append(pod)
            else:
                running.add(index)
        running |= {i for p in blocking if (i := pod_index(p)) is not None}
        want = min(self.spec.get("parallelism", 1), completions - len(self.done))
        in_flight = len(self.active) - len(surplus) + len(blocking)
        pending = [i for i in range(completions) if i not in self.done and i not in running]
        return surplus, list(pending[: max(0, want - in_flight)])

    def _non_indexed(self, blocking: list[Obj]) -> tuple[list[Obj], list[int | None]]:
        parallelism, completions = self.spec.get("parallelism", 1), self.spec.get("completions")
        succeeded = self.status.get("succeeded", 0)
        if completions is None:
            want = 0 if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, completions - succeeded))
        in_flight = len(self.active) + len(blocking)
        extra = min(in_flight - want, len(self.active))
        surplus = sorted(self.active, key=is_ready)[:extra] if extra > 0 else []
        return surplus, [None] * max(0, want - in_flight)


def plan_job(job: Obj, pods: list[Obj], now: datetime, *, hold: bool = False) -> JobPlan:
    """One sync of one Job; `pods` are the Pods it controls. New pods are held back (`held`)
    when `hold` (the caller's retry back-off runs) or when this sync counted new failures."""
    plan = JobPlan(copy.deepcopy(job.get("status") or {}))
    if is_finished(job):
        plan.release = [p["metadata"]["name"] for p in pods if _has_finalizer(p)]
        return plan
    sync = _Sync(
        job,
        now,
        plan,
        active=[
            p for p in pods if not is_terminal(p) and not p["metadata"].get("deletionTimestamp")
        ],
        terminating=[
            p for p in pods if not is_terminal(p) and p["metadata"].get("deletionTimestamp")
        ],
    )
    uncounted = [p for p in pods if is_terminal(p) and _has_finalizer(p)]
    plan.release = [p["metadata"]["name"] for p in uncounted]
    failure = sync.failure(sync.count_outcomes(uncounted))
    if failure is not None:
        sync.set_condition("FailureTarget", "True", failure)
        sync.finish("Failed", failure)
    elif sync.succeeded():
        sync.set_condition("SuccessCriteriaMet", "True", SUCCESS)
        sync.finish("Complete", SUCCESS)
    elif job["spec"].get("suspend"):
        sync.suspend()
    else:
        sync.run(hold)
    return plan
