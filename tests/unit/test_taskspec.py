"""build_task_spec: from an accepted job to what a backend runs, under the container contract."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from controller import taskspec
from controller.records import JobRecord
from controller.taskspec import TaskDefaults, build_task_spec
from jobs.registry import KINDS
from kubetask import env
from kubetask.models import JobRequest, Resources

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DEFAULTS = TaskDefaults(
    redis_url="redis://redis:6379/0",
    artifacts="/artifacts",
    images={"trainer": "kubetask/trainer:1.0", "gan": "kubetask/gan:1.0"},
    grace_s=7.0,
)


def record(**request: object) -> JobRecord:
    req = JobRequest.model_validate({"kind": "noop", **request})
    return JobRecord(id="0000000000abcdef", request=req, created_at=T0)


def test_env_is_exactly_the_container_contract() -> None:
    spec = build_task_spec(record(params={"steps": 3, "fail": "memory"}), DEFAULTS)
    assert spec.env == {
        env.JOB_ID: "0000000000abcdef",
        env.KIND: "noop",
        env.PARAMS: json.dumps({"steps": 3, "fail": "memory"}, separators=(",", ":")),
        env.REDIS_URL: "redis://redis:6379/0",
        env.ARTIFACTS: "/artifacts",
    }


def test_params_survive_as_json() -> None:
    params = {"classes": ["normal", "imbalance"], "noise": 0.5, "seed": 7}
    spec = build_task_spec(record(kind="datagen", params=params), DEFAULTS)
    assert json.loads(spec.env[env.PARAMS]) == params


def test_spec_carries_the_request() -> None:
    resources = Resources(cpu="500m", memory="1Gi", gpu=1, gpu_type="a100")
    spec = build_task_spec(
        record(retries=3, timeout_s=600, completions=8, parallelism=4, resources=resources),
        DEFAULTS,
    )
    assert spec.job_id == "0000000000abcdef"
    assert spec.kind == "noop"
    assert spec.command == ("python", "-m", "jobs", "noop")
    assert (spec.retries, spec.timeout_s) == (3, 600)
    assert (spec.completions, spec.parallelism) == (8, 4)
    assert spec.resources == resources
    assert spec.grace_s == 7.0


def test_parallelism_is_capped_by_completions() -> None:
    # validate_request rejects this, but a stored record from before must still run sanely.
    spec = build_task_spec(record(completions=2, parallelism=10), DEFAULTS)
    assert spec.parallelism == 2


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_image_is_the_one_for_the_kinds_image_role(kind: str) -> None:
    spec = build_task_spec(record(kind=kind), DEFAULTS)
    assert spec.image == DEFAULTS.images[KINDS[kind].image]


def test_a_gan_role_kind_gets_the_gan_image(monkeypatch: pytest.MonkeyPatch) -> None:
    gan_kind = replace(KINDS["noop"], name="noop", image="gan")
    monkeypatch.setattr(taskspec, "KINDS", {"noop": gan_kind})
    assert build_task_spec(record(), DEFAULTS).image == "kubetask/gan:1.0"
