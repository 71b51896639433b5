"""Which artifact store a task pod gets: the shared volume, or none with object storage."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.manifests import ClusterSettings, build_job

JOB_ID = "0mwrqv9ahqo4oug3"
BASE = TaskSpec(
    job_id=JOB_ID,
    kind="datagen",
    image="registry.example/kubetask/trainer:1.0",
    command=("python", "-m", "kubetask.jobs", "datagen"),
    env={env.JOB_ID: JOB_ID, env.KIND: "datagen", env.PARAMS: "{}"},
    retries=0,
    timeout_s=None,
)
OBJECT_STORE = {env.ARTIFACTS_URL: "s3://ml-artifacts/kt", env.S3_ENDPOINT: "http://minio:9000"}


def claims_and_mounts(job: dict[str, Any]) -> tuple[list[str], set[str]]:
    pod = job["spec"]["template"]["spec"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    return claims, {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}


def test_a_folder_store_mounts_the_claim_at_artifacts() -> None:
    claims, mounts = claims_and_mounts(
        build_job(BASE, ClusterSettings(artifacts_claim="shared-artifacts"))
    )
    assert claims == ["shared-artifacts"]
    assert "/artifacts" in mounts


def test_object_storage_mounts_no_shared_volume_even_with_a_claim_set() -> None:
    spec = replace(BASE, env={**BASE.env, **OBJECT_STORE})
    for claim in ("kubetask-artifacts", None, ""):
        job = build_job(spec, ClusterSettings(artifacts_claim=claim))
        claims, mounts = claims_and_mounts(job)
        assert claims == []
        assert mounts == {"/tmp", "/dev/shm"}  # the scratch folder it stages through is /tmp
        variables = {
            e["name"]: e.get("value")
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert variables[env.ARTIFACTS_URL] == "s3://ml-artifacts/kt"


def test_an_unset_claim_mounts_nothing() -> None:
    claims, mounts = claims_and_mounts(build_job(BASE, ClusterSettings(artifacts_claim="")))
    assert claims == []
    assert "/artifacts" not in mounts
