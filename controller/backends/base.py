"""The one interface every backend implements, and the backend-neutral TaskSpec."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import JsonValue

from kubetask.controller.errors import FieldError
from kubetask.controller.records import JobStatus
from kubetask.controller.states import Observation
from kubetask.models import DEFAULT_TENANT, BackendRef, JobRequest, Resources


@dataclass(frozen=True)
class TaskSpec:
    """What to run for one job: one container (or local process) per task."""

    job_id: str
    kind: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]  # the container environment, KUBETASK_* and nothing else
    retries: int
    timeout_s: int | None
    completions: int = 1
    parallelism: int = 1
    grace_s: float = 10.0
    resources: Resources = field(default_factory=Resources)
    labels: Mapping[str, str] = field(default_factory=dict)  # the user's labels
    priority: str | None = None
    queue: str | None = None
    request_json: str = "{}"  # a bounded summary of the request (no params), kept on the Job
    tenant: str = DEFAULT_TENANT  # whose job: the kubernetes backend's namespace follows it
    # The request's credentials: env name -> (Secret name, key), read by the kubelet
    secret_env: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    start_by: datetime | None = None  # `start_timeout_s`: no first task is started after it


class BackendError(Exception):
    """The backend could not do what was asked; the reconciler will try again, after
    `retry_after_s` when the backend said when (429 Retry-After)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CreateRejected(BackendError):
    """The backend refused to create the job, and will refuse again whatever the retry
    (invalid, forbidden, its namespace missing): the job fails with the backend's words."""


class Backend(Protocol):
    """Creates, observes and deletes jobs. Level-triggered: `changes` only names a job whose
    facts may have changed; the reconciler re-reads it with `observe`."""

    changes: asyncio.Queue[str]

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def create(self, spec: TaskSpec) -> None:
        """Create the job; creating one that exists already does nothing. CreateRejected
        when it never can be; BackendError when a retry may do."""

    async def delete(self, job_id: str) -> None:
        """Stop every task of the job (graceful, then forced) and remove it."""

    async def observe(self, job_id: str) -> Observation | None:
        """The job's facts, or None when it does not exist (any more)."""

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        """Each completion index's last termination message."""

    async def logs(self, job_id: str, *, tail: int | None) -> str | None:
        """The output of the job's last attempts ('' when they said nothing); None when the
        backend holds no log of it (no pod ran yet, or its pods are gone)."""

    async def purge(self, job_id: str) -> None:
        """Remove all the backend keeps of a job whose tasks have stopped (its folder; its
        Job, pods and params): a user's purge leaves nothing of it behind."""

    async def stopped(self, job_id: str) -> bool:
        """Whether none of the job's tasks runs any more: a job cancelled is over at once,
        its tasks only once SIGTERM (then SIGKILL) ended them, writing logs and files
        until then."""

    async def record_transition(self, job_id: str, status: JobStatus) -> None:
        """Leave a trace of the transition where the backend's own tools show it."""

    def ref(
        self, job_id: str, *, tenant: str = DEFAULT_TENANT, namespace: str | None = None
    ) -> BackendRef:
        """Where the job lives: the `namespace` it was created in when the record says
        one, else where the tenant's would go now (a backend may place jobs by tenant)."""

    def watches(self, namespace: str) -> bool:
        """Whether jobs created in `namespace` are still seen (a tenant's mapping may have
        moved it elsewhere since)."""

    def render(self, spec: TaskSpec) -> dict[str, JsonValue]:
        """What `create` would make, for a dry run."""


@runtime_checkable
class RefusesRequests(Protocol):
    """An optional capability: a backend that can tell, at submit time, what of a request it
    could never honour (the local backend has no GPU to give). The API answers 422 with
    these words and creates nothing."""

    def refusals(self, request: JobRequest) -> list[FieldError]:
        """Each field the backend cannot honour, with why; empty when it can run it."""
