"""build_task_spec: from an accepted job to what a backend runs, under the container contract."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from kubetask import env
from kubetask.controller.manifests import ClusterSettings, build_job, request_of
from kubetask.controller.records import JobRecord
from kubetask.controller.taskspec import MAX_REQUEST_SUMMARY, TaskDefaults, build_task_spec
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest, Resources

KINDS = load_kinds()  # the installed kinds (entry points)

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
    spec = build_task_spec(record(params={"steps": 3, "fail": "memory"}), DEFAULTS, KINDS)
    assert spec.env == {
        env.JOB_ID: "0000000000abcdef",
        env.KIND: "noop",
        env.PARAMS: json.dumps({"steps": 3, "fail": "memory"}, separators=(",", ":")),
        env.REDIS_URL: "redis://redis:6379/0",
        env.ARTIFACTS: "/artifacts",
        env.COMPLETIONS: "1",
    }


def test_params_survive_as_json() -> None:
    params = {"classes": ["normal", "imbalance"], "noise": 0.5, "seed": 7}
    spec = build_task_spec(record(kind="datagen", params=params), DEFAULTS, KINDS)
    assert json.loads(spec.env[env.PARAMS]) == params


def test_spec_carries_the_request() -> None:
    resources = Resources(cpu="500m", memory="1Gi", gpu=1, gpu_type="a100")
    spec = build_task_spec(
        record(retries=3, timeout_s=600, completions=8, parallelism=4, resources=resources),
        DEFAULTS,
        KINDS,
    )
    assert spec.job_id == "0000000000abcdef"
    assert spec.kind == "noop"
    assert spec.command == ("python", "-m", "kubetask.jobs", "noop")
    assert (spec.retries, spec.timeout_s) == (3, 600)
    assert (spec.completions, spec.parallelism) == (8, 4)
    assert spec.resources == resources
    assert spec.grace_s == 7.0


def test_parallelism_is_capped_by_completions() -> None:
    # validate_request rejects this, but a stored record from before must still run sanely.
    spec = build_task_spec(record(completions=2, parallelism=10), DEFAULTS, KINDS)
    assert spec.parallelism == 2


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_image_is_the_one_for_the_kinds_image_role(kind: str) -> None:
    spec = build_task_spec(record(kind=kind), DEFAULTS, KINDS)
    assert spec.image == DEFAULTS.images[KINDS[kind].image]


def test_a_gan_role_kind_gets_the_gan_image() -> None:
    gan_kind = replace(KINDS["noop"], name="noop", image="gan")
    assert build_task_spec(record(), DEFAULTS, {"noop": gan_kind}).image == "kubetask/gan:1.0"


def test_the_request_summary_keeps_no_params_and_no_notify_url() -> None:
    params = {"rows": [[1.5, 2.5]] * 100, "token_like": "s3cr3t-data"}
    spec = build_task_spec(
        record(
            params=params,
            notify={"webhook": "https://hooks.example/T0/B0?token=hunter2"},
            retries=2,
            labels={"team": "vision"},
            secrets=[{"name": "hf", "key": "token", "env": "HF_TOKEN"}],
        ),
        DEFAULTS,
        KINDS,
    )
    assert "s3cr3t-data" not in spec.request_json
    assert "hunter2" not in spec.request_json
    summary = json.loads(spec.request_json)
    assert summary == {
        "kind": "noop",
        "retries": 2,
        "labels": {"team": "vision"},
        "secrets": [{"name": "hf", "key": "token", "env": "HF_TOKEN"}],
        "params_bytes": len(spec.env[env.PARAMS]),
    }
    assert request_of(build_job(spec, ClusterSettings())) == summary


def test_the_request_summary_is_bounded_and_sheds_the_same_way_every_time() -> None:
    labels = {f"{'a' * 100}.example.com/label-{i:02d}": "v" * 63 for i in range(32)}
    secrets = [
        {"name": f"secret-{i}-" + "s" * 200, "key": "k" * 200, "env": f"E{i}"} for i in range(32)
    ]
    job = record(labels=labels, secrets=secrets, params={"payload": "x" * 300_000})
    first = build_task_spec(job, DEFAULTS, KINDS).request_json
    assert len(first.encode()) <= MAX_REQUEST_SUMMARY
    assert build_task_spec(job, DEFAULTS, KINDS).request_json == first
    summary = json.loads(first)
    assert summary["kind"] == "noop"
    assert summary["params_bytes"] > 300_000
    assert summary["truncated"] == ["secrets", "labels"]
    assert (summary["secrets_count"], summary["labels_count"]) == (32, 32)
    assert "labels" not in summary
    assert "secrets" not in summary


def test_a_summary_within_bounds_sheds_nothing() -> None:
    labels = {f"label-{i:02d}": "v" * 20 for i in range(32)}
    summary = json.loads(build_task_spec(record(labels=labels), DEFAULTS, KINDS).request_json)
    assert summary["labels"] == labels
    assert "truncated" not in summary
