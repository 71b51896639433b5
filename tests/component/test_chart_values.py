"""Values the chart must refuse at render (before anything is applied), values that must not
change what the NetworkPolicies name, and the chart's documentation (values.yaml, the
README's cleanup after `helm uninstall`) against what the chart renders."""

from __future__ import annotations

import re

import helm_python as helm
import pytest

from tests.component.chart import CHART, Obj, find, one, render, settings_env
from tests.component.test_chart import role_grants, settings_from, task_job


def test_the_minio_policies_name_its_pods_port_whatever_the_service_port() -> None:
    """A NetworkPolicy matches the destination pod's port: the Service's port (80 here) is
    never what the MinIO pod listens on."""
    objects = render({"artifacts": {"minio": {"service": {"port": 80}}}})
    (service_port,) = one(objects, "Service", "kubetask-minio")["spec"]["ports"]
    assert (service_port["port"], service_port["targetPort"]) == (80, "s3")
    pod = one(objects, "Deployment", "kubetask-minio")["spec"]["template"]["spec"]
    (container_port,) = pod["containers"][0]["ports"]
    assert (container_port["name"], container_port["containerPort"]) == ("s3", 9000)
    assert settings_env(objects)["KUBETASK_S3_ENDPOINT"].endswith(".svc:80")  # clients: Service

    (ingress,) = one(objects, "NetworkPolicy", "kubetask-minio")["spec"]["ingress"]
    assert ingress["ports"] == [{"port": 9000, "protocol": "TCP"}]
    for name in ("kubetask-tasks", "kubetask-controller"):
        store = one(objects, "NetworkPolicy", name)["spec"]["egress"][2]
        assert store["ports"] == [{"port": 9000, "protocol": "TCP"}], name
    tenants = render(
        {
            "artifacts": {"minio": {"service": {"port": 80}}},
            "tenants": {"namespaces": {"team-a": "ml-team-a"}},
        }
    )
    (across,) = [
        p for p in find(tenants, "NetworkPolicy") if p["metadata"]["namespace"] == "ml-team-a"
    ]
    assert across["spec"]["egress"][2]["ports"] == [{"port": 9000, "protocol": "TCP"}]


def test_an_existing_controller_account_must_be_named() -> None:
    """Without a name the Role would be bound to the namespace's `default` account, which
    every pod there runs as unless told otherwise."""
    with pytest.raises(helm.HelmError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False}})
    objects = render({"serviceAccount": {"create": False, "name": "ml-runner"}})
    assert not find(objects, "ServiceAccount", "ml-runner")
    (subject,) = one(objects, "RoleBinding")["subjects"]
    assert subject["name"] == "ml-runner"


@pytest.mark.parametrize(
    "label",
    [
        "nvidia.com/gpu.product",
        "cloud.google.com/gke-accelerator",
        "gpu",
        "k8s.amazonaws.com/accelerator",
        "a/" + "x" * 63,
        "Accelerator_Type.v1",
    ],
)
def test_a_label_key_is_taken_as_the_gpu_node_label(label: str) -> None:
    objects = render({"tasks": {"gpu": {"nodeLabel": label, "taintKey": label}}})
    assert settings_env(objects)["KUBETASK_GPU_NODE_LABEL"] == label


@pytest.mark.parametrize(
    "label",
    [
        "not a label!",
        "",
        "nvidia.com/",
        "/gpu",
        "-gpu",
        "gpu.",
        "Nvidia.com/gpu",  # the prefix is a DNS subdomain: lower case
        "a/b/c",
        "x" * 64,
    ],
)
def test_what_is_not_a_label_key_is_refused(label: str) -> None:
    """Kubernetes would refuse the task pods' nodeSelector (or toleration) on it."""
    for gpu in ({"nodeLabel": label}, {"taintKey": label}):
        with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as bad:
            chart.validate_schema({"tasks": {"gpu": gpu}})
        assert f"/tasks/gpu/{next(iter(gpu))}" in str(bad.value)


def test_an_ingress_needs_a_host() -> None:
    """An Ingress without rules is refused by the API server, after the rest was applied."""
    with pytest.raises(helm.HelmValuesError, match="/ingress/hosts"):
        render({"ingress": {"enabled": True, "hosts": []}})
    assert not find(render({"ingress": {"enabled": False, "hosts": []}}), "Ingress")
    assert find(render({"ingress": {"enabled": True}}), "Ingress")  # the default host


def test_values_yaml_names_the_verbs_the_role_grants() -> None:
    """The rbac.create comment: each resource with exactly its rule's verbs."""
    text = (CHART / "values.yaml").read_text()
    block = re.search(r"^rbac:\n((?:  #.*\n)+)  create:", text, re.M)
    assert block
    comment = " ".join(line.strip().lstrip("# ") for line in block.group(1).splitlines())
    role: Obj = one(render(), "Role")
    for rule in role["rules"]:
        (resource,) = rule["resources"]
        assert f"{resource} ({', '.join(rule['verbs'])})" in comment, resource
    assert len(role_grants(role)) == len(role["rules"])


@pytest.mark.parametrize("key", ["enabled", "size"])
def test_values_yaml_says_the_redis_volume_is_set_at_install(key: str) -> None:
    """A StatefulSet's volumeClaimTemplates cannot change on upgrade."""
    text = (CHART / "values.yaml").read_text()
    redis = text[text.index("\nredis:") :]
    above = redis[: redis.index(f"\n    {key}: ", redis.index("\n  persistence:"))]
    assert "Install-time only" in above.rsplit("# --", 1)[1]


@pytest.mark.parametrize(("values", "instance"), [({}, "kt"), ({"config": {"instance": "a"}}, "a")])
def test_the_cleanup_after_uninstall_names_what_is_left(
    values: Obj, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's commands: the selector takes the controller's Jobs (and their pods and
    params ConfigMaps, which carry the same labels) and nothing of the chart's; the names are
    those of `<fullname>` objects, e.g. `kt-kubetask-...` for release kt."""
    objects = render(values, release="kt")
    job = task_job(settings_from(objects, monkeypatch), {"kind": "noop"})
    selector = {"app.kubernetes.io/managed-by": "kubetask", "app.kubernetes.io/instance": instance}
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert selector.items() <= labels.items()
    assert not [o for o in objects if selector.items() <= o["metadata"]["labels"].items()]
    redis = one(objects, "StatefulSet")
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert (
        f"{claim['metadata']['name']}-{redis['metadata']['name']}-0" == "data-kt-kubetask-redis-0"
    )
    assert one(objects, "PersistentVolumeClaim", "kt-kubetask-minio")
    assert one(objects, "Secret", "kt-kubetask-minio")
    assert one(objects, "Pod", "kt-kubetask-test-readyz")
