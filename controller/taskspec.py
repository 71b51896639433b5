"""From an accepted job to the TaskSpec a backend runs: a pure function."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from controller.backends.base import TaskSpec
from controller.records import JobRecord
from jobs.registry import KINDS
from kubetask import env


@dataclass(frozen=True)
class TaskDefaults:
    """What every task of this installation shares."""

    redis_url: str
    artifacts: str
    images: Mapping[str, str]  # image role (trainer, gan) -> image reference
    grace_s: float = 10.0


def build_task_spec(record: JobRecord, defaults: TaskDefaults) -> TaskSpec:
    request = record.request
    kind = KINDS[request.kind]
    return TaskSpec(
        job_id=record.id,
        kind=request.kind,
        image=defaults.images[kind.image],
        command=("python", "-m", "jobs", request.kind),
        env={
            env.JOB_ID: record.id,
            env.KIND: request.kind,
            env.PARAMS: json.dumps(request.params, separators=(",", ":")),
            env.REDIS_URL: defaults.redis_url,
            env.ARTIFACTS: defaults.artifacts,
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
        request_json=request.model_dump_json(exclude_defaults=True),
        tenant=record.tenant,
        secret_env={secret.env: (secret.name, secret.key) for secret in request.secrets},
    )
