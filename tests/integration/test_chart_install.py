"""The chart, installed into the real API server by Helm's own engine (helm-python-sdk): with
its default values every object is accepted (RBAC, Pod Security `restricted`, PriorityClasses,
NetworkPolicies, the in-chart MinIO's Deployment, ReadWriteOnce claim and generated
Secret...); with object storage (`artifacts.store: s3`, the test MinIO on 127.0.0.1) the
controller — run here with the settings the chart installed and the chart's ServiceAccount
token — takes a REST `datagen` job to `succeeded` on the process node, the task pod mounting
no shared volume and reading its credentials from the Secret, its outputs in the bucket;
`kubectl describe job` tells the story. And the storage trap of the shared-volume choice: a
claim that cannot bind leaves pods Pending (shown as the job's reason), and the install
refuses ReadWriteMany on a StorageClass that offers only ReadWriteOnce."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from kubernetes import client as k8s

from kubetask.storage import store_from_url
from tests.cluster.bootstrap import admin_client, restricted_namespace, service_account_kubeconfig
from tests.cluster.control_plane import ControlPlane
from tests.component.chart import CHART
from tests.s3.server import S3Server
from tests.servers import ApiServer, own_database

KUBECTL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl")
RELEASE = "kubetask"
CLAIM = f"{RELEASE}-artifacts"
LOCAL = {"HOST", "PORT", "DATA_DIR", "REDIS_URL", "TASK_REDIS_URL", "TOKENS_FILE"}
S3_SECRET = "kubetask-s3"  # the user's Secret with the bucket's credentials


def static_volume(api: k8s.ApiClient, *, name: str, folder: Path, namespace: str) -> None:
    """What an operator gives a cluster without dynamic provisioning: a PersistentVolume
    (here a local folder, ReadWriteOnce, as most storage is) reserved for the chart's claim."""
    folder.mkdir(parents=True, exist_ok=True)
    core: Any = k8s.CoreV1Api(api)
    core.create_persistent_volume(
        {
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "50Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": namespace, "name": CLAIM},
            },
        }
    )


@pytest.fixture
def namespace(control_plane: ControlPlane, tmp_path: Path) -> Iterator[str]:
    name = f"kt-chart-{uuid.uuid4().hex[:8]}"
    with admin_client(control_plane) as api:
        restricted_namespace(api, name)
        static_volume(api, name=name, folder=tmp_path / "artifacts", namespace=name)
    yield name
    with admin_client(control_plane) as api:
        k8s.CoreV1Api(api).delete_namespace(name)
        k8s.CoreV1Api(api).delete_persistent_volume(name)


def install(plane: ControlPlane, namespace: str, values: dict[str, Any] | None = None) -> Any:
    """`helm install`; only the default install makes the (cluster-wide) PriorityClasses."""
    values = values if values is None else {"priorityClasses": {"create": False}, **values}
    with helm.Config(kubeconfig_path=str(plane.kubeconfig), namespace=namespace) as config:
        return config.install(str(CHART), RELEASE, values or {}, namespace=namespace)


def installed_settings(api: k8s.ApiClient, namespace: str) -> dict[str, str]:
    """The controller's settings as the chart installed them (its ConfigMap), less what
    only makes sense inside the cluster (its address, Redis's in-cluster name)."""
    data = k8s.CoreV1Api(api).read_namespaced_config_map(RELEASE, namespace).data or {}
    return {
        name.removeprefix("KUBETASK_").lower(): value
        for name, value in data.items()
        if name.removeprefix("KUBETASK_") not in LOCAL
    }


def test_the_default_chart_installs_with_the_in_chart_minio(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The default store: MinIO on a ReadWriteOnce claim, its credentials generated once
    (an upgrade keeps them), the controller and the Jobs pointed at it. (Its pod cannot run
    on the process node, which runs only task images: the rendering tests cover it.)"""
    release = install(control_plane, namespace)
    assert release["status"] == "deployed"
    with admin_client(control_plane) as api:
        core: Any = k8s.CoreV1Api(api)
        claims = core.list_namespaced_persistent_volume_claim(namespace).items
        secret = core.read_namespaced_secret(f"{RELEASE}-minio", namespace).data
        settings = installed_settings(api, namespace)
        apps: Any = k8s.AppsV1Api(api)
        minio = apps.read_namespaced_deployment(f"{RELEASE}-minio", namespace)
    assert [(c.metadata.name, c.spec.access_modes) for c in claims] == [
        (f"{RELEASE}-minio", ["ReadWriteOnce"])
    ]
    assert set(secret) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert minio.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == (
        f"{RELEASE}-minio"
    )
    assert settings["artifacts_url"] == "s3://kubetask"
    assert settings["s3_endpoint"] == f"http://{RELEASE}-minio.{namespace}.svc:9000"
    assert settings["artifacts_claim"] == ""
    assert settings["task_s3_credentials_secret"] == f"{RELEASE}-minio"
    with helm.Config(kubeconfig_path=str(control_plane.kubeconfig), namespace=namespace) as config:
        upgraded = config.upgrade(str(CHART), RELEASE, {}, namespace=namespace)
    assert upgraded["status"] == "deployed"
    with admin_client(control_plane) as api:
        kept = k8s.CoreV1Api(api).read_namespaced_secret(f"{RELEASE}-minio", namespace).data
    assert kept == secret


def test_the_chart_with_object_storage_runs_a_job_whose_outputs_land_in_the_bucket(
    control_plane: ControlPlane,
    *,
    namespace: str,
    redis_url: str,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = s3_server.make_bucket(f"chart-{uuid.uuid4().hex[:12]}")
    url = f"s3://{bucket}/kubetask"
    keys = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    values = {
        "artifacts": {
            "store": "s3",
            "s3": {
                "url": url,
                "endpoint": s3_server.endpoint,
                "region": s3_server.region,
                "existingSecret": S3_SECRET,
                "to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}],
                "ports": [s3_server.port],
            },
        }
    }
    with admin_client(control_plane) as api:
        core: Any = k8s.CoreV1Api(api)
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": S3_SECRET}, "stringData": keys}
        )
        release = install(control_plane, namespace, values)
        assert release["status"] == "deployed"
        assert core.list_namespaced_persistent_volume_claim(namespace).items == []
        settings = installed_settings(api, namespace)
        kubeconfig = service_account_kubeconfig(
            control_plane,
            api,
            namespace=namespace,
            account=RELEASE,
            path=tmp_path / "controller.kubeconfig",
        )
    assert settings["artifacts_url"] == url
    # in the cluster the controller reads these from the Secret (secretKeyRef)
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    controller = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=tmp_path / "api",
        **{**settings, "kubeconfig": str(kubeconfig)},
    )
    controller.start()
    try:
        small = {"n_per_class": 4, "length": 256, "sample_rate": 2000}
        job = controller.wait(controller.submit("datagen", small), timeout_s=120)
        listed = controller.client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]
    finally:
        controller.close()
    assert job["state"] == "succeeded", job
    assert job["backend"]["namespace"] == namespace
    assert "dataset.npz" in {item["path"] for item in listed}  # the API reads the bucket
    store = store_from_url(url, endpoint=s3_server.endpoint, region=s3_server.region, env=keys)
    assert f"{job['id']}/dataset.npz" in {entry.path for entry in store.list(job["id"])}
    assert not (tmp_path / "artifacts" / job["id"]).exists()  # nothing through a volume
    with admin_client(control_plane) as api:
        batch: Any = k8s.BatchV1Api(api)
        pod = batch.read_namespaced_job(f"kt-{job['id']}", namespace).spec.template.spec
    assert [v.name for v in pod.volumes if v.persistent_volume_claim] == []
    refs = {
        e.name: e.value_from.secret_key_ref.name
        for e in pod.containers[0].env
        if e.value_from and e.value_from.secret_key_ref
    }
    assert refs["AWS_ACCESS_KEY_ID"] == refs["AWS_SECRET_ACCESS_KEY"] == S3_SECRET
    kubectl = [KUBECTL, "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace]
    described = subprocess.run(
        [*kubectl, "describe", "job", f"kt-{job['id']}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "SuccessfulCreate" in described  # the Job controller's Events
    assert re.search(r"Normal\s+Succeeded\s+.*kubetask", described), described  # and ours


def test_a_claim_that_cannot_bind_is_the_jobs_pending_reason(
    control_plane: ControlPlane, namespace: str, redis_url: str, tmp_path: Path
) -> None:
    """ReadWriteMany asked where only a ReadWriteOnce volume exists: the claim stays
    Pending, and so does every task pod; the job says why, in the scheduler's words."""
    shared = {"store": "pvc", "pvc": {"accessModes": ["ReadWriteMany"]}}
    install(control_plane, namespace, {"artifacts": shared})
    with admin_client(control_plane) as api:
        settings = installed_settings(api, namespace)
        kubeconfig = service_account_kubeconfig(
            control_plane, api, namespace=namespace, account=RELEASE, path=tmp_path / "kc"
        )
    controller = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=tmp_path / "api",
        **{**settings, "kubeconfig": str(kubeconfig)},
    )
    controller.start()
    try:
        job_id = controller.submit("datagen", start_timeout_s=20)
        stuck = controller.wait(job_id, {"pending"}, timeout_s=30)
        while stuck["reason"] != "Unschedulable" and stuck["state"] == "pending":
            stuck = controller.job(job_id)
        assert "unbound" in stuck["message"]
        assert "PersistentVolumeClaim" in stuck["message"]
        ended = controller.wait(job_id, timeout_s=40)
    finally:
        controller.close()
    assert (ended["state"], ended["reason"]) == ("failed", "StartTimeout")


def test_the_install_refuses_read_write_many_where_the_storage_offers_only_read_write_once(
    control_plane: ControlPlane, namespace: str
) -> None:
    storage_class = f"local-path-{namespace}"
    with admin_client(control_plane) as api:
        storage: Any = k8s.StorageV1Api(api)
        storage.create_storage_class(
            {
                "metadata": {"name": storage_class},
                "provisioner": "rancher.io/local-path",
                "volumeBindingMode": "WaitForFirstConsumer",
            }
        )
    try:
        shared: dict[str, Any] = {"store": "pvc", "pvc": {"storageClass": storage_class}}
        many = {
            "store": "pvc",
            "pvc": {"storageClass": storage_class, "accessModes": ["ReadWriteMany"]},
        }
        with pytest.raises(helm.HelmError, match="offers only ReadWriteOnce"):
            install(control_plane, namespace, {"artifacts": many})
        release = install(control_plane, namespace, {"artifacts": shared})
        assert release["status"] == "deployed"  # ReadWriteOnce, the default, is fine
    finally:
        with admin_client(control_plane) as api:
            k8s.StorageV1Api(api).delete_storage_class(storage_class)
