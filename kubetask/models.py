"""The contracts every part of kubetask shares: the job request, states, events and views.

These are plain pydantic models with no I/O; the API, the controller, the task runtime and
the SDK all speak them.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, JsonValue, field_validator

# Kubernetes' own rules (apimachinery validation), so nothing invalid reaches a cluster.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_RESERVED_LABEL_PREFIXES = ("kubetask.io", "app.kubernetes.io")


class JobState(StrEnum):
    """Where a job stands. Derived from observable facts, never set by hand."""

    QUEUED = "queued"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_label(key: str, value: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        raise ValueError(f"label key {key!r} has an empty prefix")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(f"label key {key!r} is not a valid Kubernetes label name")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        raise ValueError(f"label key {key!r} has an invalid prefix")
    if any(prefix == p or prefix.endswith(f".{p}") for p in _RESERVED_LABEL_PREFIXES):
        raise ValueError(f"label key {key!r} uses a prefix reserved by kubetask")
    if len(value) > 63 or not _LABEL_NAME.match(value):
        raise ValueError(f"label value {value!r} for {key!r} is not a valid Kubernetes label value")


class Resources(_Strict):
    """What one task container asks for (requests = limits)."""

    cpu: str | None = Field(None, description="Kubernetes quantity, e.g. '500m' or '2'.")
    memory: str | None = Field(None, description="Kubernetes quantity, e.g. '512Mi'.")
    gpu: int = Field(0, ge=0, le=16, description="Number of nvidia.com/gpu.")
    gpu_type: str | None = Field(None, max_length=63, description="GPU node label value.")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None and not _QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. '500m', '2Gi')")
        return value


class Notify(_Strict):
    """Where to tell someone that the job has finished."""

    webhook: AnyHttpUrl | None = None


class JobRequest(_Strict):
    """`POST /v1/jobs`: what to run and how. Params are checked by the kind's own model."""

    kind: str = Field(description="A registered task kind (see GET /v1/kinds).")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    name: str | None = Field(None, max_length=53, description="A DNS label for people.")
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(0, ge=0, le=20, description="Re-runs after a failed attempt.")
    timeout_s: int | None = Field(None, ge=1, description="Deadline for the whole run.")
    start_timeout_s: int | None = Field(None, ge=1, description="Deadline to start running.")
    parallelism: int = Field(1, ge=1, le=64)
    completions: int = Field(1, ge=1, le=1024)
    priority: str | None = Field(None, max_length=63)
    queue: str | None = Field(None, max_length=63, description="Kueue LocalQueue name.")
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    notify: Notify | None = None

    @field_validator("name", "queue")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a DNS label (lowercase letters, digits, '-')")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            _check_label(key, label)
        return value


class ErrorInfo(_Strict):
    """Why a task failed, in a form a person can act on."""

    type: str
    message: str
    traceback: list[str] = Field(default_factory=list, description="Last frames, innermost last.")
    suggestion: str | None = None
    exit_code: int | None = None


class Outcome(_Strict):
    """What a task leaves behind when it exits: its result or its error (< 4 KiB as JSON)."""

    ok: bool
    result: dict[str, JsonValue] | None = None
    error: ErrorInfo | None = None


class ProgressEvent(_Strict):
    """A task's progress report, as published on `kubetask:progress:{job_id}`."""

    type: Literal["progress"] = "progress"
    job_id: str
    seq: int
    timestamp: datetime
    current: float
    total: float | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    stage: str | None = None
    message: str | None = None
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    index: int | None = None


class StateEvent(_Strict):
    """A job's state transition, published on the same channel as its progress."""

    type: Literal["state"] = "state"
    job_id: str
    seq: int
    timestamp: datetime
    state: JobState
    reason: str | None = None
    message: str | None = None
    attempts: int = 0


Event = Annotated[ProgressEvent | StateEvent, Field(discriminator="type")]


class BackendRef(_Strict):
    """Where the job lives in its backend (the Kubernetes Job, or the local run folder)."""

    backend: Literal["local", "kubernetes"]
    name: str
    namespace: str | None = None


class JobView(_Strict):
    """`GET /v1/jobs/{id}`: everything a person needs to know about one job."""

    id: str
    kind: str
    name: str | None
    state: JobState
    reason: str | None = None
    message: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    progress: ProgressEvent | None = None
    result: dict[str, JsonValue] | None = None
    error: ErrorInfo | None = None
    cancel_requested: bool = False
    request: JobRequest
    backend: BackendRef


class JobPage(_Strict):
    """One page of `GET /v1/jobs`, newest first."""

    items: list[JobView]
    next_cursor: str | None = None


class KindInfo(_Strict):
    """`GET /v1/kinds`: one registered task kind."""

    kind: str
    description: str
    image: str
    params_schema: dict[str, JsonValue]
