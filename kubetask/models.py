"""The contracts every part of kubetask shares: the job request, states, events and views.

These are plain pydantic models with no I/O; the API, the controller, the task runtime and
the SDK all speak them.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)

# a task's outcome: a module of its own, which the task runtime imports alone (re-exported)
from kubetask.outcome import ErrorInfo as ErrorInfo  # noqa: PLC0414
from kubetask.outcome import Outcome as Outcome  # noqa: PLC0414
from kubetask.outcome import StrictModel

# Kubernetes' own rules (apimachinery validation), so nothing invalid reaches a cluster.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes' quantity grammar, without a sign: 1, 1.5, .5, 5., then an exponent or a suffix
_QUANTITY = re.compile(
    r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)
_RESERVED_LABEL_PREFIXES = ("kubetask.io", "app.kubernetes.io", "batch.kubernetes.io")
# what the Job controller sets on a Job's pods (the API server refuses any other value)
_RESERVED_LABEL_KEYS = frozenset({"job-name", "controller-uid"})
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What kubetask sets in every task's environment: a Secret may not take their place.
_RESERVED_ENV = frozenset({"HOME", "XDG_DATA_HOME", "JOB_COMPLETION_INDEX"})
# What would change the code a task runs (the interpreter's and the loader's search paths,
# the interpreter's start-up) or the GPUs it sees (the device plugin sets those): a Secret
# may not set them either.
_CODE_ENV, _CODE_ENV_PREFIXES = frozenset({"PATH"}), ("PYTHON", "LD_")
_GPU_ENV, _GPU_ENV_PREFIXES = frozenset({"CUDA_VISIBLE_DEVICES"}), ("NVIDIA_",)

DEFAULT_TENANT = "default"  # the tenant of local mode (no tokens file) and of older records


def is_dns_label(value: str) -> bool:
    """Kubernetes' DNS label (RFC 1123): what a namespace, and so a tenant, is named."""
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


MAX_DEADLINE_S = 366 * 24 * 3600  # any deadline beyond is a mistake (and dates overflow far beyond)


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


# A request read back (from the store, or in a server's answer) was checked when it was
# accepted: the rules added since are not applied again, or one old record would make a
# list unreadable. `Model.model_validate_json(raw, context=RECEIVED)`.
RECEIVED: dict[str, object] = {"received": True}


def _received(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("received"))


def _label_key(key: str, info: ValidationInfo) -> str:
    if _received(info):
        return key
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        raise ValueError(f"label key {key!r} has an empty prefix")
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"label key {key!r} is not a valid Kubernetes label name")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        raise ValueError(f"label key {key!r} has an invalid prefix")
    if any(prefix == p or prefix.endswith(f".{p}") for p in _RESERVED_LABEL_PREFIXES):
        raise ValueError(f"label key {key!r} uses a prefix reserved by kubetask or Kubernetes")
    if not prefix and name in _RESERVED_LABEL_KEYS:
        raise ValueError(f"label key {key!r} is reserved: the Job controller sets it on pods")
    return key


def _label_value(value: str, info: ValidationInfo) -> str:
    if _received(info):
        return value
    if len(value) > 63 or not _LABEL_NAME.fullmatch(value):
        raise ValueError(f"label value {value!r} is not a valid Kubernetes label value")
    return value


# a bad one is named in errors by its place: ("labels", key, "[key]") or ("labels", key)
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]


class Resources(StrictModel):
    """What one task container asks for (requests = limits)."""

    cpu: str | None = Field(None, description="Kubernetes quantity, e.g. '500m' or '2'.")
    memory: str | None = Field(None, description="Kubernetes quantity, e.g. '512Mi'.")
    gpu: int = Field(0, ge=0, le=16, strict=True, description="Number of nvidia.com/gpu.")
    gpu_type: str | None = Field(None, max_length=63, description="GPU node label value.")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _received(info) and not _QUANTITY.fullmatch(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. '500m', '2Gi')")
        return value

    @field_validator("gpu_type")
    @classmethod
    def _label_value(cls, value: str | None, info: ValidationInfo) -> str | None:
        if _received(info):
            return value
        # a node selector's value: Kubernetes' label value rules
        if value is not None and not _LABEL_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid Kubernetes label value")
        # it picks a GPU model's nodes, which only a task asking for a GPU may use (their
        # taint): without one, the pod would wait unschedulable for good
        if value is not None and info.data.get("gpu") == 0:
            raise ValueError("gpu_type picks a GPU model: ask for gpu >= 1 too")
        return value


class Notify(StrictModel):
    """Where to tell someone that the job has finished."""

    webhook: AnyHttpUrl | None = None


class SecretKey(StrictModel):
    """One key of a Kubernetes Secret in the job's namespace."""

    name: str = Field(max_length=253, description="The Secret (a DNS subdomain).")
    key: str = Field(max_length=253, description="The key in it.")

    @field_validator("name")
    @classmethod
    def _subdomain(cls, value: str, info: ValidationInfo) -> str:
        if not _received(info) and not _LABEL_PREFIX.fullmatch(value):
            raise ValueError(f"{value!r} is not a Secret name (a lowercase DNS subdomain)")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str, info: ValidationInfo) -> str:
        if _received(info):
            return value
        if not _SECRET_KEY.fullmatch(value) or value in (".", ".."):
            raise ValueError(f"{value!r} is not a Secret key (letters, digits, '-', '_', '.')")
        return value


class SecretEnv(SecretKey):
    """A credential for the task: the environment variable `env` holds the Secret's key,
    put there by the kubelet (the value is never in the request, the Job or the API)."""

    env: str = Field(max_length=255, description="The variable, e.g. HF_TOKEN.")

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str, info: ValidationInfo) -> str:
        if _received(info):
            return value
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        if value.startswith("KUBETASK_") or value in _RESERVED_ENV:
            raise ValueError(f"{value!r} is set by kubetask itself")
        if value in _CODE_ENV or value.startswith(_CODE_ENV_PREFIXES):
            raise ValueError(f"{value!r} would change which code the task runs")
        if value in _GPU_ENV or value.startswith(_GPU_ENV_PREFIXES):
            raise ValueError(f"{value!r} would change which GPUs the task sees")
        return value


class JobRequest(StrictModel):
    """`POST /v1/jobs`: what to run and how. Params are checked by the kind's own model."""

    # Built at once, unlike the others: FastAPI takes it as a request body under an alias,
    # which pydantic warns about when it builds a deferred model for it.
    model_config = ConfigDict(
        defer_build=False,
        json_schema_extra={
            "examples": [
                {"kind": "noop", "params": {"steps": 3, "step_s": 0.01}, "labels": {"team": "ml"}},
                {"kind": "datagen", "params": {"n_per_class": 50}},
            ]
        },
    )

    kind: str = Field(
        description="A registered task kind (see GET /v1/kinds).", examples=["noop", "datagen"]
    )
    params: dict[str, JsonValue] = Field(default_factory=dict)
    name: str | None = Field(None, max_length=53, description="A DNS label for people.")
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(0, ge=0, le=20, strict=True, description="Re-runs after a failed attempt.")
    timeout_s: int | None = Field(
        None,
        ge=1,
        le=MAX_DEADLINE_S,
        strict=True,
        description="Deadline for the whole run (≤ 366 days).",
    )
    start_timeout_s: int | None = Field(
        None,
        ge=1,
        le=MAX_DEADLINE_S,
        strict=True,
        description="Deadline to start running (≤ 366 days).",
    )
    parallelism: int = Field(1, ge=1, le=64, strict=True)
    completions: int = Field(1, ge=1, le=1024, strict=True)
    priority: str | None = Field(None, max_length=63)
    queue: str | None = Field(None, max_length=63, description="Kueue LocalQueue name.")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=32)
    notify: Notify | None = None
    secrets: list[SecretEnv] = Field(
        default_factory=list,
        max_length=32,
        description="Credentials from Kubernetes Secrets in the job's namespace, as environment "
        "variables (kubernetes backend).",
    )

    @field_validator("secrets")
    @classmethod
    def _one_secret_per_env(cls, value: list[SecretEnv], info: ValidationInfo) -> list[SecretEnv]:
        if _received(info):
            return value
        names = [secret.env for secret in value]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"each env once: {', '.join(repeated)} named twice")
        return value

    @field_validator("name", "queue")
    @classmethod
    def _dns_label(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _received(info) and not _DNS_LABEL.fullmatch(value):
            raise ValueError(f"{value!r} is not a DNS label (lowercase letters, digits, '-')")
        return value


class ProgressEvent(StrictModel):
    """A task's progress report, as published on `kubetask:progress:{job_id}`.

    `fraction` is the whole job's (every stage by its kind's weight, every worker averaged;
    kubetask/progress.py): it never goes back within an `attempt`. `current`/`total` and
    `progress` are the current stage's own count and fraction; `worker_fraction` is the
    reporting worker's (`index`) own figure. It maps onto Kubeflow Trainer's progress status
    (`kubetask.progress.trainer_status`)."""

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
    fraction: float | None = Field(None, ge=0.0, le=1.0, description="The job's, 0..1.")
    attempt: int = Field(1, ge=1, description="A retry starts the next attempt.")
    eta_s: float | None = Field(None, ge=0.0, description="Seconds left, once it can tell.")
    worker_fraction: float | None = Field(None, ge=0.0, le=1.0)


class WorkerProgress(StrictModel):
    """One worker of an Indexed job, as its last progress event left it."""

    index: int
    fraction: float = Field(0.0, ge=0.0, le=1.0)
    stage: str | None = None


class StateEvent(StrictModel):
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


class BackendRef(StrictModel):
    """Where the job lives in its backend (the Kubernetes Job, or the local run folder)."""

    backend: Literal["local", "kubernetes"]
    name: str
    namespace: str | None = None


class JobView(StrictModel):
    """`GET /v1/jobs/{id}`: everything a person needs to know about one job."""

    id: str
    kind: str
    name: str | None
    tenant: str = Field(DEFAULT_TENANT, description="Whose job it is (its submitter's tenant).")
    state: JobState
    reason: str | None = None
    message: str | None = None
    created_at: datetime
    started_at: datetime | None = Field(
        None,
        description="When its first task began running, as its backend recorded it (the "
        "container's start on Kubernetes, whole seconds).",
    )
    finished_at: datetime | None = Field(
        None,
        description="When it ended: when its Job's outcome was decided (the first condition "
        "saying it), or the cancel or timeout.",
    )
    attempts: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    progress: ProgressEvent | None = None
    workers: list[WorkerProgress] = Field(
        default_factory=list, description="Each worker's progress (jobs with completions > 1)."
    )
    result: dict[str, JsonValue] | None = None
    error: ErrorInfo | None = None
    cancel_requested: bool = False
    request: JobRequest
    backend: BackendRef


class JobPage(StrictModel):
    """One page of `GET /v1/jobs`, newest first."""

    items: list[JobView]
    next_cursor: str | None = None


class DryRun(StrictModel):
    """`POST /v1/jobs?dry_run=true`: what submitting would create; nothing is created."""

    request: JobRequest = Field(description="The request as it would be accepted (defaults in).")
    object: dict[str, JsonValue] = Field(description="What the backend would create.")


class KindInfo(StrictModel):
    """`GET /v1/kinds`: one registered task kind."""

    kind: str
    description: str
    image: str
    params_schema: dict[str, JsonValue]


class _Answer(BaseModel):
    """An answer the SDK reads: frozen, and tolerant of fields a newer server adds."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


class Artifact(_Answer):
    """One stored file: of a job (`GET /v1/jobs/{id}/artifacts`, `path` relative to the
    job's folder) or of the caller's uploads (`GET /v1/uploads`, relative to theirs)."""

    path: str
    size: int = Field(ge=0)
    content_type: str
    etag: str
    modified: datetime


class ArtifactList(_Answer):
    """`GET /v1/jobs/{id}/artifacts` and `GET /v1/uploads`: files sorted by path."""

    items: list[Artifact]


class Upload(_Answer):
    """`PUT /v1/uploads/{path}`: where the file is stored (`uploads/<tenant>/<path>`)."""

    path: str
    size: int = Field(ge=0)
    etag: str

    @property
    def ref(self) -> str:
        """How a job's params name it: `upload:<path>` (the path under the tenant's area)."""
        parts = self.path.split("/", 2)
        return f"upload:{parts[2]}" if len(parts) == 3 and parts[0] == "uploads" else self.path
