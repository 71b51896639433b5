"""From an accepted job to the TaskSpec a backend runs: pure functions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.records import JobRecord
from kubetask.kinds import KindSpec
from kubetask.models import JobRequest

MAX_REQUEST_SUMMARY = 4 * 1024  # bytes; the API server allows 256 KiB for all annotations
# What a summary over the limit sheds, in this order (its count is kept in its place)
SHED = ("secrets", "labels")


@dataclass(frozen=True)
class TaskDefaults:
    """What every task of this installation shares."""

    redis_url: str
    artifacts: str
    images: Mapping[str, str]  # image role (trainer, gan) -> image reference
    grace_s: float = 10.0
    # Object storage (s3://bucket/prefix) tasks stage through, with its endpoint and region;
    # None when the artifacts are a folder. Credentials never here: Secret refs on Kubernetes
    # (ClusterSettings.secret_env), the controller's own environment on the local backend.
    artifacts_url: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_timeout_s: float | None = None  # the store's time limits (None: the client's own)
    s3_read_idle_s: float | None = None


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def request_summary(request: JobRequest, *, params_bytes: int) -> str:
    """The request as the Job's annotation keeps it, for `kubectl describe`: never the params
    (they may hold data: only their size is kept) nor the notify URL (it may embed a token),
    and at most MAX_REQUEST_SUMMARY bytes: over that, it sheds SHED in order, keeping counts."""
    summary = request.model_dump(mode="json", exclude_defaults=True, exclude={"params", "notify"})
    summary["params_bytes"] = params_bytes
    text = _compact(summary)
    for key in SHED:
        if len(text.encode()) <= MAX_REQUEST_SUMMARY:
            return text
        if key in summary:
            summary[f"{key}_count"] = len(summary.pop(key))
            summary["truncated"] = [*summary.get("truncated", []), key]
            text = _compact(summary)
    if len(text.encode()) <= MAX_REQUEST_SUMMARY:
        return text
    return _compact({"kind": request.kind, "params_bytes": params_bytes, "truncated": True})


def _seconds(value: float | None) -> str | None:
    return None if value is None else str(value)


def store_env(defaults: TaskDefaults) -> dict[str, str]:
    """The object store's part of a task's environment (none for a folder store)."""
    if defaults.artifacts_url is None:
        return {}
    variables = {
        env.ARTIFACTS_URL: defaults.artifacts_url,
        env.S3_ENDPOINT: defaults.s3_endpoint,
        env.S3_REGION: defaults.s3_region,
        env.S3_TIMEOUT: _seconds(defaults.s3_timeout_s),
        env.S3_READ_IDLE: _seconds(defaults.s3_read_idle_s),
    }
    return {name: value for name, value in variables.items() if value}


def build_task_spec(
    record: JobRecord, defaults: TaskDefaults, kinds: Mapping[str, KindSpec]
) -> TaskSpec:
    """The task an accepted job runs, on the image of its kind's role (one of `kinds`)."""
    request = record.request
    kind = kinds[request.kind]
    # as sent: UTF-8, not \u escapes (which make "é" three times larger, and the ConfigMap
    # of large params too large for the API server)
    params = json.dumps(request.params, separators=(",", ":"), ensure_ascii=False)
    return TaskSpec(
        job_id=record.id,
        kind=request.kind,
        image=defaults.images[kind.image],
        command=("python", "-m", "kubetask.jobs", request.kind),
        env={
            env.JOB_ID: record.id,
            env.KIND: request.kind,
            env.PARAMS: params,
            env.REDIS_URL: defaults.redis_url,
            env.ARTIFACTS: defaults.artifacts,
            env.COMPLETIONS: str(request.completions),
            **store_env(defaults),
        },
        retries=request.retries,
        timeout_s=request.timeout_s,
        completions=request.completions,
        parallelism=min(request.parallelism, request.completions),
        grace_s=defaults.grace_s,
        resources=request.resources,
        labels=dict(request.labels),
        priority=request.priority,
        queue=request.queue,
        request_json=request_summary(request, params_bytes=len(params.encode())),
        tenant=record.tenant,
        secret_env={secret.env: (secret.name, secret.key) for secret in request.secrets},
        start_by=record.start_deadline(),
    )
