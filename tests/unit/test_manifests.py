"""The Job manifest: what the design promises, and valid for the real API's schemas."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest

from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.manifests import (
    ANNOTATION_REQUEST,
    ClusterSettings,
    build_event,
    build_job,
    build_params_configmap,
    job_id_of,
    job_name,
    owned_by,
    request_of,
    selector,
)
from kubetask.controller.records import JobStatus
from kubetask.models import JobState, Resources

VERSIONS = ("1.30.0", "1.37.0")  # the oldest supported, the newest bundled
JOB_ID = "0mwrqv9ahqo4oug3"
CLUSTER = ClusterSettings(namespace="ml", priority_classes={"high": "kubetask-high"})


def spec(**changes: Any) -> TaskSpec:
    base = TaskSpec(
        job_id=JOB_ID,
        kind="datagen",
        image="registry.example/kubetask/trainer:1.0",
        command=("python", "-m", "kubetask.jobs", "datagen"),
        env={env.JOB_ID: JOB_ID, env.KIND: "datagen", env.PARAMS: '{"seed":1}'},
        retries=2,
        timeout_s=None,
        labels={"team": "vision"},
        request_json='{"kind":"datagen"}',
    )
    return replace(base, **changes)


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec_: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec_


def container(job: dict[str, Any]) -> dict[str, Any]:
    only: dict[str, Any] = pod_spec(job)["containers"][0]
    return only


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


VARIANTS = {
    "plain": spec(),
    "gpu": spec(resources=Resources(cpu="4", memory="16Gi", gpu=2, gpu_type="A100")),
    "indexed": spec(completions=4, parallelism=2),
    "queued": spec(queue="team-a", priority="high", timeout_s=600),
    "large-params": spec(env={env.JOB_ID: JOB_ID, env.PARAMS: json.dumps({"p": "x" * 40_000})}),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_job_passes_strict_schema_validation(variant: str, version: str) -> None:
    job = build_job(VARIANTS[variant], CLUSTER)
    kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_params_configmap_passes_strict_validation(version: str) -> None:
    configmap = build_params_configmap(VARIANTS["large-params"], CLUSTER)
    assert configmap is not None
    job = {**build_job(VARIANTS["large-params"], CLUSTER)}
    job["metadata"] = {**job["metadata"], "uid": "5f0c0b9e-0000-4000-8000-000000000000"}
    owned = owned_by(configmap, job)
    kubernetes_validate.validate(owned, version, strict=True)
    assert owned["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


def test_names_labels_and_request_annotation() -> None:
    job = build_job(spec(), CLUSTER)
    meta = job["metadata"]
    assert meta["name"] == job_name(JOB_ID) == f"kt-{JOB_ID}"
    assert meta["namespace"] == "ml"
    assert meta["labels"] == {
        "team": "vision",
        "app.kubernetes.io/name": "kubetask",
        "app.kubernetes.io/managed-by": "kubetask",
        "app.kubernetes.io/component": "task",
        "app.kubernetes.io/instance": "kubetask",
        "kubetask.io/job-id": JOB_ID,
        "kubetask.io/kind": "datagen",
    }
    assert job["spec"]["template"]["metadata"]["labels"] == meta["labels"]
    assert meta["annotations"][ANNOTATION_REQUEST] == '{"kind":"datagen"}'
    assert request_of(job) == {"kind": "datagen"}
    assert selector(CLUSTER) == (
        "app.kubernetes.io/managed-by=kubetask,app.kubernetes.io/instance=kubetask"
    )


def test_retries_deadline_ttl_and_the_pod_failure_policy() -> None:
    job = build_job(spec(retries=3, timeout_s=120), CLUSTER)["spec"]
    assert job["backoffLimit"] == 3
    assert job["activeDeadlineSeconds"] == 120
    assert job["ttlSecondsAfterFinished"] == 3600
    assert job["podReplacementPolicy"] == "Failed"
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "task", "operator": "In", "values": [2]},
    }
    assert rules[1]["action"] == "Ignore"
    assert rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert pod_spec(build_job(spec(), CLUSTER))["restartPolicy"] == "Never"
    assert "activeDeadlineSeconds" not in build_job(spec(), CLUSTER)["spec"]


def test_the_pod_meets_the_restricted_pod_security_standard() -> None:
    job = build_job(spec(), CLUSTER)
    pod = pod_spec(job)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(job)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    allowed = {"emptyDir", "configMap", "persistentVolumeClaim", "secret", "projected"}
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= allowed
    mounts = {m["mountPath"] for m in container(job)["volumeMounts"]}
    assert {"/tmp", "/dev/shm", "/artifacts"} <= mounts


def test_the_container_contract_env_and_command() -> None:
    job = build_job(spec(), CLUSTER)
    assert container(job)["command"] == ["python", "-m", "kubetask.jobs", "datagen"]
    assert container(job)["image"] == "registry.example/kubetask/trainer:1.0"
    variables = env_of(job)
    assert variables[env.JOB_ID] == JOB_ID
    assert variables[env.PARAMS] == '{"seed":1}'
    assert variables[env.ARTIFACTS] == "/artifacts"
    assert variables["HOME"].startswith("/tmp")
    assert env.COMPLETION_INDEX not in variables


def test_cpu_memory_and_gpu_resources_and_placement() -> None:
    job = build_job(VARIANTS["gpu"], CLUSTER)
    resources = container(job)["resources"]
    wanted = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert resources == {"requests": wanted, "limits": wanted}
    pod = pod_spec(job)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    plain = pod_spec(build_job(spec(), CLUSTER))
    assert "nodeSelector" not in plain
    assert "tolerations" not in plain
    assert "resources" not in container(build_job(spec(), CLUSTER))


def test_fan_out_is_an_indexed_job_with_the_index_env() -> None:
    job = build_job(VARIANTS["indexed"], CLUSTER)
    assert job["spec"]["completionMode"] == "Indexed"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (4, 2)
    index = env_of(job)[env.COMPLETION_INDEX]
    assert "batch.kubernetes.io/job-completion-index" in index["fieldRef"]["fieldPath"]
    assert "completionMode" not in build_job(spec(), CLUSTER)["spec"]


def test_a_queue_creates_the_job_suspended_with_the_kueue_label() -> None:
    job = build_job(VARIANTS["queued"], CLUSTER)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert pod_spec(job)["priorityClassName"] == "kubetask-high"
    assert "suspend" not in build_job(spec(), CLUSTER)["spec"]


def test_large_params_go_in_a_mounted_configmap() -> None:
    large = VARIANTS["large-params"]
    job = build_job(large, CLUSTER)
    variables = env_of(job)
    assert env.PARAMS not in variables
    assert variables[env.PARAMS_FILE] == "/etc/kubetask/params.json"
    configmap = build_params_configmap(large, CLUSTER)
    assert configmap is not None
    assert json.loads(configmap["data"]["params.json"]) == {"p": "x" * 40_000}
    assert build_params_configmap(spec(), CLUSTER) is None


def test_an_event_per_transition_names_the_job() -> None:
    job = build_job(spec(), CLUSTER)
    job["metadata"]["uid"] = "5f0c0b9e-0000-4000-8000-000000000000"
    status = JobStatus(state=JobState.FAILED, reason="BackoffLimitExceeded", message="3 failed")
    event = build_event(job, status, now=datetime(2026, 1, 2, tzinfo=UTC), reporting_instance="c")
    assert event["involvedObject"]["name"] == job_name(JOB_ID)
    assert (event["reason"], event["type"], event["message"]) == ("Failed", "Warning", "3 failed")
    kubernetes_validate.validate(event, "1.37.0", strict=True)


def test_the_job_id_is_read_back_from_a_job_name() -> None:
    assert job_id_of(job_name(JOB_ID)) == JOB_ID
    assert job_id_of("other-job") is None
    assert job_id_of("kt-") is None
