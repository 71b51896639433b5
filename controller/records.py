"""The job record kubetask keeps, and the pure rules for updating its status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from kubetask.controller.states import Derived, can_transition
from kubetask.models import (
    DEFAULT_TENANT,
    RECEIVED,
    BackendRef,
    ErrorInfo,
    JobRequest,
    JobState,
    JobView,
    Notify,
    ProgressEvent,
    Resources,
    SecretEnv,
    WorkerProgress,
)


def settled(progress: ProgressEvent | None, state: JobState) -> ProgressEvent | None:
    """A job's progress as its state settles it: a succeeded job is whole (1.0, nothing
    left); a failed or cancelled one stays where it stopped, with no time left to guess."""
    if progress is None or not state.terminal:
        return progress
    if state is JobState.SUCCEEDED:
        return progress.model_copy(update={"fraction": 1.0, "eta_s": 0.0})
    return progress.model_copy(update={"eta_s": None})


def settled_worker(worker: WorkerProgress, state: JobState) -> WorkerProgress:
    """A worker of a succeeded job is whole; otherwise as it last reported."""
    if state is JobState.SUCCEEDED:
        return worker.model_copy(update={"fraction": 1.0})
    return worker


class JobStatus(BaseModel):
    """What the reconciler has derived so far; written only when it changes."""

    model_config = ConfigDict(frozen=True)

    state: JobState = JobState.QUEUED
    reason: str | None = "Accepted"
    message: str | None = "accepted; waiting for the controller"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    result: dict[str, JsonValue] | None = None
    error: ErrorInfo | None = None


class JobRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    request: JobRequest
    created_at: datetime
    tenant: str = DEFAULT_TENANT  # the submitter's; records from before tenants: the default
    status: JobStatus = JobStatus()
    cancel_requested: bool = False
    submitted: bool = False  # the backend object was created at least once
    # where it was created, when the backend places jobs (kubernetes: the namespace, which
    # a tenant's mapping may later change); None on other backends and older records
    namespace: str | None = None
    # why today's rules refuse its request, which an older version accepted: never created
    refused: str | None = None

    def visible_to(self, tenant: str | None) -> bool:
        """Whether a caller scoped to `tenant` may see this job (None: every tenant's)."""
        return tenant is None or tenant == self.tenant

    def start_deadline(self) -> datetime | None:
        """When it must have started running by (`start_timeout_s`); None once it ran, or
        without one."""
        timeout = self.request.start_timeout_s
        if timeout is None or self.status.started_at is not None:
            return None
        return self.created_at + timedelta(seconds=timeout)

    def start_deadline_passed(self, now: datetime) -> bool:
        deadline = self.start_deadline()
        return deadline is not None and now > deadline

    def view(
        self,
        *,
        backend: BackendRef,
        progress: ProgressEvent | None,
        workers: Sequence[WorkerProgress] = (),
    ) -> JobView:
        """The job as a person sees it; its progress as the state settles it (`settled`)."""
        status = self.status
        return JobView(
            id=self.id,
            kind=self.request.kind,
            name=self.request.name,
            tenant=self.tenant,
            state=status.state,
            reason=status.reason,
            message=status.message,
            created_at=self.created_at,
            started_at=status.started_at,
            finished_at=status.finished_at,
            attempts=status.attempts,
            labels=self.request.labels,
            progress=settled(progress, status.state),
            workers=[settled_worker(worker, status.state) for worker in workers],
            result=status.result,
            error=status.error,
            cancel_requested=self.cancel_requested,
            request=self.request,
            backend=backend,
        )


def next_status(
    current: JobStatus,
    derived: Derived,
    *,
    attempts: int,
    now: datetime,
    result: dict[str, JsonValue] | None = None,
    error: ErrorInfo | None = None,
    ran_at: datetime | None = None,
) -> JobStatus | None:
    """The status after observing `derived`, or None when nothing changes (or may not).
    `ran_at`: when the job's first task began running, if the backend says (else a job
    starts when a sync first sees it running, or, seen only once it ended, then). A job ends
    when the backend's condition says it did (`derived.at`, when a Job's outcome was decided),
    else now: not when this sync came to see it."""
    if current.state.terminal:
        return None
    if derived.state != current.state and not can_transition(current.state, derived.state):
        return None
    attempts = max(attempts, current.attempts)
    started_at = current.started_at
    if started_at is None and derived.state is JobState.RUNNING:
        started_at = ran_at or now
    elif started_at is None and derived.state is JobState.SUCCEEDED:
        started_at = ran_at or now  # it ran, too briefly to be seen running
    elif started_at is None and derived.state.terminal:
        started_at = ran_at  # None for a job that never ran (cancelled, start timeout)
    candidate = current.model_copy(
        update={
            "state": derived.state,
            "reason": derived.reason,
            "message": derived.message,
            "attempts": attempts,
            "started_at": started_at,
            "finished_at": ended_at(derived, started_at, now) if derived.state.terminal else None,
            "result": result,
            "error": error,
        }
    )
    return None if candidate == current else candidate


def ended_at(derived: Derived, started_at: datetime | None, now: datetime) -> datetime:
    """When a job that `derived` ends ended: its backend condition's time, within [the
    job's start, now] (clocks apart), else now."""
    if derived.at is None:
        return now
    return min(max(derived.at, started_at or derived.at), now)


def stored_request(raw: str) -> tuple[JobRequest, str | None]:
    """A request as the store kept it, and why today's rules refuse it (None: they do not).
    An older version may have accepted what a rule added since refuses (a reserved label,
    a secret's variable, a quantity): such a record must stay readable (its list, its
    cancel and its purge would fail with it), but it is run only as this version would
    accept it (`JobRecord.refused`)."""
    try:
        return JobRequest.model_validate_json(raw), None
    except ValidationError as refusal:
        refused = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in refusal.errors()
        )
    try:
        return JobRequest.model_validate_json(raw, context=RECEIVED), refused
    except ValidationError:  # a field's own bound tightened since (a shorter max_length...)
        data = json.loads(raw)
    notify = data.get("notify")
    constructed = JobRequest.model_construct(
        **{
            **data,
            "resources": Resources.model_construct(**(data.get("resources") or {})),
            "notify": None if notify is None else Notify.model_construct(**notify),
            "secrets": [SecretEnv.model_construct(**s) for s in data.get("secrets") or []],
        }
    )
    return constructed, refused
