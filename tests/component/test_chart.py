"""The Helm chart (helm/kubetask), rendered, linted and schema-checked by a real Helm engine,
every object validated against the official Kubernetes schemas, and checked against what
the controller it deploys actually reads and creates."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubetask.api.runtime import compose
from kubetask.api.settings import Settings
from kubetask.controller.ids import new_job_id
from kubetask.controller.manifests import build_job
from kubetask.controller.records import JobRecord
from kubetask.controller.service import validate_request
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest
from tests.cluster.bootstrap import admin_client, restricted_namespace
from tests.cluster.control_plane import ControlPlane
from tests.component.chart import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    Obj,
    controller,
    find,
    one,
    pod_specs,
    render,
    render_files,
    settings_env,
)

EXTERNAL_REDIS = {
    "redis": {
        "enabled": False,
        "external": {
            "url": "redis://redis.data.svc:6379/3",
            "taskUrl": "redis://redis.data.svc.cluster.local:6379/3",
        },
    },
    "networkPolicy": {
        "externalRedis": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [6379]}
    },
}
GPU = {
    "tasks": {
        "gpu": {"nodeLabel": "cloud.google.com/gke-accelerator", "taintKey": "nvidia.com/gpu"},
        "images": {
            "trainer": {"repository": "registry.example/ml/trainer", "tag": "2.13-cuda"},
            "gan": {
                "repository": "registry.example/ml/gan",
                "digest": "sha256:" + "a" * 64,
            },
        },
    },
    "nodeSelector": {"pool": "system"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "redis"}},
                    },
                }
            ]
        }
    },
}
INGRESS = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
        "hosts": [{"host": "kubetask.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "kubetask-tls", "hosts": ["kubetask.example.com"]}],
    }
}
METRICS = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "ML"}},
    }
}
MINIMAL = {
    "serviceAccount": {"create": False, "name": "ml-runner"},
    "rbac": {"create": False},
    "tasks": {"serviceAccount": {"create": False, "name": ""}},
    "priorityClasses": {"create": False},
    "artifacts": {"store": "pvc", "pvc": {"create": False, "existingClaim": "shared-artifacts"}},
    "redis": {"persistence": {"enabled": False}},
    "networkPolicy": {"enabled": False},
    "podDisruptionBudget": {"enabled": False},
    "tests": {"enabled": False},
}
TUNED = {
    "fullnameOverride": "jobs-api",
    "image": {"repository": "registry.example/kubetask/controller", "digest": "sha256:" + "b" * 64},
    "imagePullSecrets": [{"name": "registry"}],
    "podDisruptionBudget": {"minAvailable": 1},
    "extraEnv": [{"name": "KUBETASK_SLOTS", "value": "4"}],
    "config": {"instance": "team-a", "graceSeconds": 30, "maxBodyBytes": 4194304},
    "priorityClasses": {
        "classes": {"batch": {"name": "ml-batch", "value": 500, "preemptionPolicy": "Never"}}
    },
    "networkPolicy": {
        "controller": {
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}],
            "extraEgress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
        },
        "tasks": {"extraEgress": [{"to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}]}]},
    },
    "service": {"type": "NodePort", "annotations": {"team": "ml"}},
}
S3_STORE = {
    "artifacts": {
        "store": "s3",
        "s3": {
            "url": "s3://ml-artifacts/kubetask",
            "endpoint": "https://s3.eu-west-1.amazonaws.com",
            "region": "eu-west-1",
            "existingSecret": "ml-artifacts-s3",
            "to": [{"ipBlock": {"cidr": "52.218.0.0/17"}}],
        },
    }
}
PVC_STORE = {"artifacts": {"store": "pvc", "pvc": {"accessModes": ["ReadWriteMany"]}}}
VALUE_SETS: dict[str, Obj] = {
    "default": {},
    "s3-store": S3_STORE,
    "pvc-store": PVC_STORE,
    "external-redis": EXTERNAL_REDIS,
    "gpu": GPU,
    "ingress": INGRESS,
    "metrics": METRICS,
    "minimal": MINIMAL,
    "tuned": TUNED,
}
CRD_KINDS = {"ServiceMonitor"}  # not in the core schemas: checked on their own below


def lint_problems(values: Obj | None = None, *, kube_version: str) -> list[str]:
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}"
    )
    problems = [m["error"] for m in report["messages"] if m["severity"] >= 2]
    return problems + list(report["errors"])


# -- lint, schema, strict validation of every object -------------------------------------
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_is_clean(name: str, kube_version: str) -> None:
    assert lint_problems(VALUE_SETS[name], kube_version=kube_version) == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_passes_strict_validation(name: str) -> None:
    objects = render(VALUE_SETS[name])
    assert objects
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_service_monitor_is_well_formed() -> None:
    monitor = one(render(METRICS), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = one(render(METRICS), "Service", RELEASE)
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


BAD_VALUES = [
    ("top-level typo", "imagee:\n  tag: v1\n", "imagee"),
    ("nested typo", "redis:\n  enabeld: false\n", "enabeld"),
    ("deep typo", "resources:\n  requests:\n    cpuu: 100m\n", "cpuu"),
    ("typo under a list", "ingress:\n  hosts:\n    - host: a\n      path: /\n", "path"),
    ("wrong type", "service:\n  port: eighty\n", "/service/port"),
    ("bad enum", "image:\n  pullPolicy: Sometimes\n", "/image/pullPolicy"),
    ("bad quantity", "artifacts:\n  pvc:\n    size: lots\n", "/artifacts/pvc/size"),
    ("bad store", "artifacts:\n  store: nfs\n", "/artifacts/store"),
    ("bad bucket URL", "artifacts:\n  s3:\n    url: https://b/\n", "/artifacts/s3/url"),
]


@pytest.mark.parametrize(("case", "text", "named"), BAD_VALUES, ids=[c for c, _, _ in BAD_VALUES])
def test_a_bad_values_file_is_refused_at_install(
    tmp_path: Path, case: str, text: str, named: str
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(text)
    values = helm.values_from_yaml(values_file.read_text())
    # What `helm install -f values.yaml --dry-run=client` does, offline.
    with (
        helm.Config(namespace=NAMESPACE) as config,
        pytest.raises(helm.HelmError, match=re.escape(named)),
    ):
        config.install(str(CHART), RELEASE, values, dry_run="client")
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    assert lint_problems(values, kube_version="1.30.0")


def test_a_good_values_file_installs_in_a_client_dry_run() -> None:
    with helm.Config(namespace=NAMESPACE) as config:
        release = config.install(str(CHART), RELEASE, INGRESS, dry_run="client")
    assert "kind: Deployment" in release["manifest"]
    assert "port-forward" not in release["notes"]  # with an Ingress, NOTES name its host
    assert "https://kubetask.example.com" in release["notes"]


def test_a_parent_chart_may_pass_its_globals() -> None:
    """As a dependency of another chart, Helm hands kubetask the parent's `global` values."""
    # not random: given tokens, and no generated MinIO credentials
    tokens = {"auth": {"tokens": [{"token": "t" * 32, "tenant": "default"}]}, **S3_STORE}
    assert render({**tokens, "global": {"imageRegistry": "registry.example"}}) == render(tokens)


def test_required_values_are_enforced() -> None:
    with pytest.raises(helm.HelmError, match=r"redis\.external\.url is required"):
        render({"redis": {"enabled": False}})
    with pytest.raises(helm.HelmError, match=r"artifacts\.pvc\.existingClaim is required"):
        render({"artifacts": {"store": "pvc", "pvc": {"create": False}}})
    with pytest.raises(helm.HelmError, match=r"artifacts\.s3\.url is required"):
        render({"artifacts": {"store": "s3", "s3": {"existingSecret": "s3"}}})
    with pytest.raises(helm.HelmError, match=r"artifacts\.s3\.existingSecret is required"):
        render({"artifacts": {"store": "s3", "s3": {"url": "s3://bucket"}}})


# -- the schema and values.yaml are complete -----------------------------------------------
def _schema_objects(node: Any, path: str) -> list[tuple[str, Obj]]:
    found: list[tuple[str, Obj]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((path, node))
        for key, child in node.items():
            found.extend(_schema_objects(child, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found.extend(_schema_objects(child, f"{path}/{i}"))
    return found


# Objects whose keys are free by nature: maps of strings, the request-priority map, the task
# images by role (a plugin kind may name its own; each image is closed), Helm's `global`, and
# Kubernetes objects that the API server (and the tests above) check.
FREE_FORM = {
    "/definitions/stringMap",
    "/properties/tasks/properties/images",
    "/properties/global",
    "/properties/priorityClasses/properties/classes",
    "/definitions/affinity/properties/nodeAffinity",
    "/definitions/affinity/properties/podAffinity",
    "/definitions/affinity/properties/podAntiAffinity",
    "/definitions/envVar/properties/valueFrom",
}


def test_the_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, node in _schema_objects(schema, ""):
        if path in FREE_FORM:
            assert node.get("additionalProperties") is not False or "properties" in node, path
            continue
        assert node.get("additionalProperties") is False, f"{path} is open to typos"


def test_the_schema_describes_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: Obj, path: str) -> None:
        for key, child in node.get("properties", {}).items():
            assert "description" in child or "$ref" in child, f"{path}.{key} has no description"
            if "properties" in child:
                walk(child, f"{path}.{key}")

    walk(schema, "")
    for name, definition in schema["definitions"].items():
        assert "description" in definition, f"definition {name} has no description"


def _keys_with_docs(text: str) -> list[tuple[str, bool]]:
    """(dotted key, documented?) for every key of values.yaml: a key is documented by the
    comment right above it, or by a documented parent (a Kubernetes object given whole)."""
    found: list[tuple[str, bool]] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented as a whole)
    comment: list[str] = []  # the comment block right above the current line
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            inherited = any(whole for _, _, whole in stack)
            dotted = ".".join([k for _, k, _ in stack] + [match.group(2)])
            found.append((dotted, bool(comment) or inherited))
            stack.append((indent, match.group(2), bool(comment) and comment[0].startswith("# --")))
        comment = []
    return found


def test_every_value_is_documented_in_values_yaml() -> None:
    keys = _keys_with_docs((CHART / "values.yaml").read_text())
    sections = {key.rsplit(".", 1)[0] for key, _ in keys if "." in key}
    values = [(key, documented) for key, documented in keys if key not in sections]
    assert len(values) > 100
    undocumented = [key for key, documented in values if not documented]
    assert undocumented == []


# -- set / not set: each optional part appears exactly when asked for ----------------------
TOGGLES = [
    ("ingress", {"ingress": {"enabled": True}}, {"ingress": {"enabled": False}}, [("Ingress", 1)]),
    (
        "service monitor",
        {"metrics": {"serviceMonitor": {"enabled": True}}},
        {"metrics": {"serviceMonitor": {"enabled": False}}},
        [("ServiceMonitor", 1)],
    ),
    (
        "dashboard",
        {"metrics": {"dashboard": {"enabled": True}}},
        {"metrics": {"dashboard": {"enabled": False}}},
        [("ConfigMap", 1)],
    ),
    (
        "in-chart redis",
        {"redis": {"enabled": True}},
        EXTERNAL_REDIS,
        [("StatefulSet", 1), ("Service", 2), ("NetworkPolicy", 1)],
    ),
    (
        "network policies",
        {"networkPolicy": {"enabled": True}},
        {"networkPolicy": {"enabled": False}},
        [("NetworkPolicy", 4)],
    ),
    (
        "pod disruption budget",
        {"podDisruptionBudget": {"enabled": True}},
        {"podDisruptionBudget": {"enabled": False}},
        [("PodDisruptionBudget", 1)],
    ),
    (
        "priority classes",
        {"priorityClasses": {"create": True}},
        {"priorityClasses": {"create": False}},
        [("PriorityClass", 3)],
    ),
    (
        "artifacts pvc",
        {"artifacts": {"store": "pvc", "pvc": {"create": True}}},
        {"artifacts": {"store": "pvc", "pvc": {"create": False, "existingClaim": "shared"}}},
        [("PersistentVolumeClaim", 1)],
    ),
    (
        "in-chart minio",
        {"artifacts": {"store": "minio"}},
        S3_STORE,
        [
            ("Deployment", 1),
            ("Service", 1),
            ("PersistentVolumeClaim", 1),
            ("Secret", 1),
            ("NetworkPolicy", 1),
        ],
    ),
    (
        "rbac",
        {"rbac": {"create": True}},
        {"rbac": {"create": False}},
        [("Role", 1), ("RoleBinding", 1)],
    ),
    (
        "service accounts",
        {},
        {
            "serviceAccount": {"create": False, "name": "ml-runner"},
            "tasks": {"serviceAccount": {"create": False}},
        },
        [("ServiceAccount", 2)],
    ),
    ("helm test", {"tests": {"enabled": True}}, {"tests": {"enabled": False}}, [("Pod", 1)]),
]


def _count(objects: list[Obj], kind: str) -> int:
    return len(find(objects, kind))


@pytest.mark.parametrize(("part", "on", "off", "kinds"), TOGGLES, ids=[t[0] for t in TOGGLES])
def test_an_optional_part_is_there_exactly_when_asked(
    part: str, on: Obj, off: Obj, kinds: list[tuple[str, int]]
) -> None:
    with_it, without = render(on), render(off)
    for kind, extra in kinds:
        assert _count(with_it, kind) - _count(without, kind) == extra, (part, kind)
    assert with_it != without


def test_the_defaults_render_the_expected_objects() -> None:
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in render())
    assert kinds == [
        "ConfigMap/kubetask",
        "Deployment/kubetask",
        "Deployment/kubetask-minio",
        "NetworkPolicy/kubetask-controller",
        "NetworkPolicy/kubetask-minio",
        "NetworkPolicy/kubetask-redis",
        "NetworkPolicy/kubetask-tasks",
        "PersistentVolumeClaim/kubetask-minio",
        "Pod/kubetask-test-readyz",
        "PodDisruptionBudget/kubetask",
        "PriorityClass/kubetask-high",
        "PriorityClass/kubetask-low",
        "PriorityClass/kubetask-normal",
        "Role/kubetask",
        "RoleBinding/kubetask",
        "Secret/kubetask-minio",
        "Secret/kubetask-tokens",
        "Service/kubetask",
        "Service/kubetask-minio",
        "Service/kubetask-redis",
        "Service/kubetask-redis-headless",
        "ServiceAccount/kubetask",
        "ServiceAccount/kubetask-task",
        "StatefulSet/kubetask-redis",
    ]


# -- RBAC: least privilege -----------------------------------------------------------------
EXPECTED_RULES = {
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create", "list", "watch"},
    ("", "configmaps"): {"create"},
}


def role_grants(role: Obj) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rbac_is_namespaced_least_privilege(name: str) -> None:
    objects = render(VALUE_SETS[name])
    assert not find(objects, "ClusterRole")
    assert not find(objects, "ClusterRoleBinding")
    for role in find(objects, "Role"):
        assert role["metadata"]["namespace"] == NAMESPACE
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"wildcard in {field}: {rule}"
            assert not {"secrets", "serviceaccounts/token"} & set(rule["resources"]), rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        assert role_grants(role) == EXPECTED_RULES
    for binding in find(objects, "RoleBinding"):
        sa_name = binding["subjects"][0]["name"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": one(objects, "Role")["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}
        ]
        assert controller(objects)["spec"]["template"]["spec"]["serviceAccountName"] == (sa_name)


def test_task_pods_get_an_account_with_no_role_and_no_token() -> None:
    objects = render()
    task_sa = one(objects, "ServiceAccount", "kubetask-task")
    assert task_sa["automountServiceAccountToken"] is False
    bound = {s["name"] for b in find(objects, "RoleBinding") for s in b["subjects"]}
    assert "kubetask-task" not in bound


# -- hardened pods ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def restricted(control_plane: ControlPlane) -> Iterator[k8s.CoreV1Api]:
    """The real API server's Pod Security admission, in a namespace that enforces the
    `restricted` standard: pods are created there as a dry run."""
    with admin_client(control_plane) as api:
        restricted_namespace(api, "chart-pod-security")
        yield k8s.CoreV1Api(api)


def admission_refusal(core: Any, spec: Obj) -> str | None:
    """Why Pod Security admission refuses a pod of this spec (None: it admits it). The
    account and priority class are left out: other admission plugins would look them up;
    a StatefulSet's claim templates become the claim volumes its controller would add."""
    probe = {k: v for k, v in spec.items() if k not in ("serviceAccountName", "priorityClassName")}
    named = {v["name"] for v in spec.get("volumes", [])}
    mounted = {m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
    probe["volumes"] = [
        *spec.get("volumes", []),
        *({"name": n, "persistentVolumeClaim": {"claimName": n}} for n in sorted(mounted - named)),
    ]
    try:
        core.create_namespaced_pod(
            "chart-pod-security", {"metadata": {"name": "probe"}, "spec": probe}, dry_run="All"
        )
    except ApiException as error:
        return str(json.loads(error.body or "{}").get("message", error))
    return None


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_pod_is_hardened(name: str, restricted: k8s.CoreV1Api) -> None:
    specs = list(pod_specs(render(VALUE_SETS[name])))
    assert specs
    loose = {**specs[0][1], "hostNetwork": True}  # what admission would refuse
    assert "violates PodSecurity" in (admission_refusal(restricted, loose) or "")
    for owner, spec in specs:
        assert admission_refusal(restricted, spec) is None, owner
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, owner
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        assert spec["enableServiceLinks"] is False, owner
        writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, owner
            assert context["readOnlyRootFilesystem"] is True, owner
            assert context["runAsNonRoot"] is True, owner
            assert context["capabilities"] == {"drop": ["ALL"]}, owner
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, owner
            assert context.get("privileged") is not True, owner
            resources = container["resources"]
            assert resources["requests"], owner
            assert resources["limits"], owner
            assert {"cpu", "memory"} <= set(resources["limits"]), owner
            for mount in container.get("volumeMounts", []):
                claim = mount["name"] in writable or mount["name"] == "data"
                assert claim or mount.get("readOnly"), (owner, mount)
        assert spec.get("hostNetwork") is not True
        assert spec.get("hostPID") is not True


def test_the_controller_runs_with_probes_resources_and_a_writable_tmp() -> None:
    objects = render()
    deployment = controller(objects)
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    env = settings_env(objects)
    assert env["KUBETASK_DATA_DIR"].startswith("/tmp/")
    assert env["KUBETASK_PORT"] == "8000"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    changed = controller(render({"config": {"graceSeconds": 11}}))
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum


# -- the artifact store ---------------------------------------------------------------------
def _claims_of(spec: Obj) -> set[str]:
    return {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec.get("volumes", [])
        if "persistentVolumeClaim" in v
    }


def test_by_default_the_store_is_the_in_chart_minio_on_a_read_write_once_volume() -> None:
    """A stock cluster's default StorageClass (kind, GKE, EKS) binds it: no ReadWriteMany
    claim anywhere, and the one claim is mounted by the MinIO pod alone."""
    objects = render()
    (claim,) = find(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "kubetask-minio"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]  # the cluster's default
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    secret = one(objects, "Secret", "kubetask-minio")  # the data is sealed with it: kept too
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    unkept = render({"artifacts": {"minio": {"persistence": {"keep": False}}}})
    assert "annotations" not in one(unkept, "Secret", "kubetask-minio")["metadata"]
    mounting = [owner for owner, spec in pod_specs(objects) if "kubetask-minio" in _claims_of(spec)]
    assert mounting == ["kubetask-minio"]
    minio = one(objects, "Deployment", "kubetask-minio")
    assert minio["spec"]["replicas"] == 1
    assert minio["spec"]["strategy"] == {"type": "Recreate"}  # never two pods on the volume
    spec = minio["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    assert init["command"] == ["mkdir", "-p", "/data/kubetask"]  # the bucket, a drive folder
    (server,) = spec["containers"]
    assert server["args"][:2] == ["server", "/data"]
    service = one(objects, "Service", "kubetask-minio")
    assert service["spec"]["selector"] == minio["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 9000
    env = settings_env(objects)
    assert env["KUBETASK_ARTIFACTS_URL"] == "s3://kubetask"
    assert env["KUBETASK_S3_ENDPOINT"] == f"http://kubetask-minio.{NAMESPACE}.svc:9000"
    assert env["KUBETASK_S3_REGION"] == "us-east-1"
    assert env["KUBETASK_ARTIFACTS_CLAIM"] == ""
    assert env["KUBETASK_TASK_S3_CREDENTIALS_SECRET"] == "kubetask-minio"
    bucket = {"artifacts": {"minio": {"bucket": "models", "persistence": {"size": "5Gi"}}}}
    other = render(bucket)
    assert settings_env(other)["KUBETASK_ARTIFACTS_URL"] == "s3://models"
    assert one(other, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_the_users_bucket_makes_no_server_volume_or_secret() -> None:
    objects = render(S3_STORE)
    assert not find(objects, "PersistentVolumeClaim")
    assert not find(objects, "Secret", "ml-artifacts-s3")
    assert [d["metadata"]["name"] for d in find(objects, "Deployment")] == ["kubetask"]
    env = settings_env(objects)
    assert env["KUBETASK_ARTIFACTS_URL"] == "s3://ml-artifacts/kubetask"
    assert env["KUBETASK_S3_ENDPOINT"] == "https://s3.eu-west-1.amazonaws.com"
    assert env["KUBETASK_S3_REGION"] == "eu-west-1"
    assert env["KUBETASK_ARTIFACTS_CLAIM"] == ""
    assert env["KUBETASK_TASK_S3_CREDENTIALS_SECRET"] == "ml-artifacts-s3"
    assert (env["KUBETASK_S3_TIMEOUT_S"], env["KUBETASK_S3_READ_IDLE_S"]) == ("30", "30")


def test_a_slow_links_store_limits_are_values() -> None:
    limits = {"artifacts": {**S3_STORE["artifacts"], "requestTimeoutS": 300, "readIdleS": 60}}
    env = settings_env(render(limits))
    assert (env["KUBETASK_S3_TIMEOUT_S"], env["KUBETASK_S3_READ_IDLE_S"]) == ("300", "60")
    minio = settings_env(render({"artifacts": {"requestTimeoutS": 0.5}}))
    assert minio["KUBETASK_S3_TIMEOUT_S"] == "0.5"
    with pytest.raises(Exception, match="requestTimeoutS"):
        render({"artifacts": {"requestTimeoutS": 0}})


def test_the_shared_volume_stays_an_option() -> None:
    objects = render(PVC_STORE)
    (claim,) = find(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    env = settings_env(objects)
    assert env["KUBETASK_ARTIFACTS_CLAIM"] == claim["metadata"]["name"]
    assert "KUBETASK_ARTIFACTS_URL" not in env
    assert "KUBETASK_TASK_S3_CREDENTIALS_SECRET" not in env
    assert "KUBETASK_S3_TIMEOUT_S" not in env
    assert not find(objects, "Secret", "kubetask-minio")
    container = controller(objects)["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in container["env"] if e["name"].startswith("AWS_")]


def test_redis_is_a_statefulset_with_append_only_persistence() -> None:
    objects = render()
    redis = one(objects, "StatefulSet")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--dir"] == "/data"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    service = one(objects, "Service", "kubetask-redis")
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    assert redis["spec"]["serviceName"] == "kubetask-redis-headless"
    ephemeral = one(render(MINIMAL), "StatefulSet")
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    assert ephemeral["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]


def _redis_flags(values: dict[str, Any] | None = None) -> dict[str, str]:
    args = one(render(values), "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    return dict(zip(args[::2], args[1::2], strict=True))


def test_redis_fsyncs_each_write_by_default_as_the_embedded_one_does() -> None:
    """A 201 promises the record is on disk: by default at once (`always`), not within the
    second (`everysec`, still a choice)."""
    assert _redis_flags()["--appendfsync"] == "always"
    assert _redis_flags({"redis": {"appendfsync": "everysec"}})["--appendfsync"] == "everysec"


# -- labels --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_carries_the_recommended_labels(name: str) -> None:
    for obj in render(VALUE_SETS[name]):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", obj["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "kubetask"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "kubetask-0.1.0"
        assert labels["app.kubernetes.io/component"] in {
            "controller",
            "redis",
            "task",
            "artifacts",
            "test",
        }


def test_long_release_names_give_valid_names_and_two_releases_do_not_collide() -> None:
    long_name = "a-very-long-release-name-for-the-machine-learning-platform-team"
    objects = render(release=long_name)
    for obj in objects:
        kubernetes_validate.validate(obj, "1.37.0", strict=True)
        assert len(obj["metadata"]["name"]) <= 63
    first, second = render(release="team-a"), render(release="team-b")
    namespaced = {(o["kind"], o["metadata"]["name"]) for o in first if o["kind"] != "PriorityClass"}
    others = {(o["kind"], o["metadata"]["name"]) for o in second}
    assert namespaced.isdisjoint(others)
    assert settings_env(first)["KUBETASK_INSTANCE"] != settings_env(second)["KUBETASK_INSTANCE"]


# -- the settings ConfigMap is what the controller reads ------------------------------------
def settings_from(objects: list[Obj], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as `kubetask-server` reads them from this environment."""
    import os

    for key in list(os.environ):
        if key.startswith("KUBETASK_"):
            monkeypatch.delenv(key)
    env = settings_env(objects)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fields = {f"KUBETASK_{name.upper()}" for name in Settings.model_fields}
    unknown = set(env) - fields
    assert unknown == set(), f"settings the controller does not read: {unknown}"
    return Settings()


def task_job(settings: Settings, request: Obj) -> Obj:
    """The Job the controller would create for `request` with these settings."""
    now = datetime.now(UTC)
    assert settings.redis_url is not None
    wiring = compose(settings, redis_url=settings.redis_url, kinds=load_kinds())
    accepted = validate_request(
        JobRequest.model_validate(request), kinds=wiring.kinds, priorities=wiring.priorities
    )
    record = JobRecord(id=new_job_id(now), request=accepted, created_at=now)
    return build_job(wiring.spec_for(record), settings.cluster())


def test_the_settings_configmap_configures_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render()
    settings = settings_from(objects, monkeypatch)
    assert settings.resolved_backend == "kubernetes"
    assert settings.host == "0.0.0.0"
    assert settings.namespace == NAMESPACE
    assert settings.instance == RELEASE
    assert settings.redis_url == f"redis://kubetask-redis.{NAMESPACE}.svc:6379/0"
    assert settings.task_redis_url == settings.redis_url
    assert settings.task_images == {
        "trainer": "kubetask/trainer:0.1.0",
        "gan": "kubetask/gan:0.1.0",
    }
    assert settings.max_body_bytes == 1048576
    assert settings.retention_s == 604800
    redis_service = one(objects, "Service", "kubetask-redis")
    assert f"//{redis_service['metadata']['name']}.{NAMESPACE}.svc:6379/" in settings.redis_url
    classes = {o["metadata"]["name"] for o in find(objects, "PriorityClass")}
    assert set(settings.priority_classes.values()) == classes
    assert settings.priority_classes == {
        "low": "kubetask-low",
        "normal": "kubetask-normal",
        "high": "kubetask-high",
    }


def test_every_task_image_role_reaches_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """tasks.images.<role>, a role a plugin kind names too, as KUBETASK_TASK_IMAGES."""
    images = {
        "trainer": {"repository": "registry.example/ml/trainer", "tag": "2.13-cuda"},
        "gan": {"repository": "registry.example/ml/gan", "digest": "sha256:" + "a" * 64},
        "audio": {"repository": "registry.example/ml/audio", "digest": "sha256:" + "c" * 64},
    }
    objects = render({"tasks": {"images": images}})
    settings = settings_from(objects, monkeypatch)
    assert settings.task_images == {
        "trainer": "registry.example/ml/trainer:2.13-cuda",
        "gan": "registry.example/ml/gan@sha256:" + "a" * 64,
        "audio": "registry.example/ml/audio@sha256:" + "c" * 64,
    }


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_jobs_the_controller_creates_fit_the_chart(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Job built from the chart's settings mounts the chart's PVC (store pvc; none with
    object storage, where it references the store's Secret), runs as the chart's task
    account, and is the pod the NetworkPolicies are written for."""
    values = VALUE_SETS[name]
    objects = render(values)
    settings = settings_from(objects, monkeypatch)
    priority = next(iter(settings.priority_classes))
    request = {
        "kind": "datagen",
        "priority": priority,
        "resources": {"gpu": 1, "gpu_type": "H100"},
    }
    job = task_job(settings, request)
    pod = job["spec"]["template"]
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert job["metadata"]["namespace"] == NAMESPACE
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    store = values.get("artifacts", {}).get("store", "minio")
    if store == "pvc":
        pvcs = [o["metadata"]["name"] for o in find(objects, "PersistentVolumeClaim")]
        assert claims == (pvcs or [values["artifacts"]["pvc"]["existingClaim"]])
    else:
        assert claims == []
        assert {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]} == {
            "/tmp",
            "/dev/shm",
        }
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in pod["spec"]["containers"][0]["env"]
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        }
        secret = settings.task_s3_credentials_secret
        if store == "s3":
            assert secret == "ml-artifacts-s3"
        else:
            assert one(objects, "Secret", secret)["metadata"]["namespace"] == NAMESPACE
        assert refs["AWS_ACCESS_KEY_ID"] == refs["AWS_SECRET_ACCESS_KEY"] == secret
    service_accounts = {o["metadata"]["name"] for o in find(objects, "ServiceAccount")}
    task_account = pod["spec"].get("serviceAccountName")
    assert task_account is None or task_account in service_accounts
    if name == "minimal":
        assert task_account is None
    class_name = pod["spec"]["priorityClassName"]
    if find(objects, "PriorityClass"):
        assert class_name in {o["metadata"]["name"] for o in find(objects, "PriorityClass")}
    gpu = values.get("tasks", {}).get("gpu", {})
    node_label = gpu.get("nodeLabel", "nvidia.com/gpu.product")
    assert pod["spec"]["nodeSelector"] == {node_label: "H100"}
    assert pod["spec"]["tolerations"][0]["key"] == gpu.get("taintKey", "nvidia.com/gpu")
    image = pod["spec"]["containers"][0]["image"]
    assert image == settings.task_images["trainer"]
    # The controller's own selectors never take in a task pod.
    labels = pod["metadata"]["labels"]
    for kind in ("Deployment", "StatefulSet"):
        for workload in find(objects, kind):
            assert not _selects(workload["spec"]["selector"]["matchLabels"], labels)
    for service in find(objects, "Service"):
        assert not _selects(service["spec"]["selector"], labels)
    policies = find(objects, "NetworkPolicy")
    if not policies:
        return
    (task_policy,) = [
        p for p in policies if _selects(p["spec"]["podSelector"]["matchLabels"], labels)
    ]
    assert task_policy["spec"]["ingress"] == []
    redis_policies = [p for p in policies if p["metadata"]["name"].endswith("-redis")]
    for policy in redis_policies:
        peers = policy["spec"]["ingress"][0]["from"]
        assert any(_selects(p["podSelector"]["matchLabels"], labels) for p in peers)


def _selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in match_labels.items())


# -- network policies ----------------------------------------------------------------------
def _egress_ports(policy: Obj) -> set[tuple[str, int | str]]:
    return {
        (p.get("protocol", "TCP"), p["port"])
        for rule in policy["spec"]["egress"]
        for p in rule.get("ports", [])
    }


def test_task_pods_reach_only_dns_redis_and_the_object_store() -> None:
    objects = render()
    tasks = one(objects, "NetworkPolicy", "kubetask-tasks")
    assert tasks["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert tasks["spec"]["ingress"] == []
    assert _egress_ports(tasks) == {("UDP", 53), ("TCP", 53), ("TCP", 6379), ("TCP", 9000)}
    for rule in tasks["spec"]["egress"]:
        assert rule["to"], "an egress rule without `to` would allow every destination"
        for peer in rule["to"]:
            assert "ipBlock" not in peer
    redis_rule = tasks["spec"]["egress"][1]
    redis_pod_labels = one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert _selects(redis_rule["to"][0]["podSelector"]["matchLabels"], redis_pod_labels)
    minio_rule = tasks["spec"]["egress"][2]
    minio_pod_labels = one(objects, "Deployment", "kubetask-minio")["spec"]["template"]
    assert _selects(
        minio_rule["to"][0]["podSelector"]["matchLabels"], minio_pod_labels["metadata"]["labels"]
    )
    external = one(render(EXTERNAL_REDIS), "NetworkPolicy", "kubetask-tasks")
    assert external["spec"]["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    for values, ports in ((S3_STORE, {("TCP", 443)}), ({"artifacts": {"store": "pvc"}}, set())):
        policy = one(render(values), "NetworkPolicy", "kubetask-tasks")
        assert _egress_ports(policy) - {("UDP", 53), ("TCP", 53), ("TCP", 6379)} == ports
    bucket = one(render(S3_STORE), "NetworkPolicy", "kubetask-tasks")["spec"]["egress"][2]
    assert bucket["to"] == [{"ipBlock": {"cidr": "52.218.0.0/17"}}]


def test_minio_takes_only_the_controller_and_the_tasks_and_calls_nothing() -> None:
    objects = render()
    minio = one(objects, "NetworkPolicy", "kubetask-minio")
    assert minio["spec"]["egress"] == []
    (rule,) = minio["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9000, "protocol": "TCP"}]
    pod_labels = one(objects, "Deployment", "kubetask-minio")["spec"]["template"]["metadata"]
    assert _selects(minio["spec"]["podSelector"]["matchLabels"], pod_labels["labels"])
    controller_labels = controller(objects)["spec"]["template"]["metadata"]["labels"]
    assert any(_selects(p["podSelector"]["matchLabels"], controller_labels) for p in rule["from"])
    assert len(rule["from"]) == 2


def test_redis_takes_only_the_controller_and_the_tasks_and_calls_nothing() -> None:
    objects = render()
    redis = one(objects, "NetworkPolicy", "kubetask-redis")
    assert redis["spec"]["egress"] == []
    (rule,) = redis["spec"]["ingress"]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    controller_labels = controller(objects)["spec"]["template"]["metadata"]["labels"]
    assert any(_selects(p["podSelector"]["matchLabels"], controller_labels) for p in rule["from"])
    assert len(rule["from"]) == 2


def test_the_controller_takes_clients_on_its_port_and_reaches_dns_redis_store_and_api() -> None:
    objects = render()
    policy = one(objects, "NetworkPolicy", "kubetask-controller")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert _egress_ports(policy) == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 6379),
        ("TCP", 9000),
        ("TCP", 443),
        ("TCP", 6443),
    }
    restricted = one(render(TUNED), "NetworkPolicy", "jobs-api-controller")
    peers = restricted["spec"]["ingress"][0]["from"]
    test_pod = one(render(TUNED), "Pod")
    assert any(
        _selects(p.get("podSelector", {}).get("matchLabels", {}), test_pod["metadata"]["labels"])
        for p in peers
        if "podSelector" in p
    )


# -- NOTES, helm test, dashboard -------------------------------------------------------------
def test_notes_tell_how_to_reach_the_api_and_submit_a_first_job() -> None:
    notes = render_files()["kubetask/templates/NOTES.txt"]
    assert "kubectl --namespace ml port-forward service/kubetask 8000:8000" in notes
    assert "curl -s -X POST $KUBETASK_URL/v1/jobs" in notes
    assert '"kind": "datagen"' in notes
    assert "kubectl --namespace ml get jobs -l app.kubernetes.io/managed-by=kubetask" in notes
    assert "helm test kubetask --namespace ml" in notes
    external = render_files(EXTERNAL_REDIS)["kubetask/templates/NOTES.txt"]
    assert "redis.data.svc" not in external  # the URL may hold a password


def test_the_helm_test_hook_calls_readyz_through_the_service() -> None:
    objects = render()
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert (
        container["image"]
        == controller(objects)["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    script = container["command"][-1]
    service = one(objects, "Service", "kubetask")
    assert f"http://kubetask:{service['spec']['ports'][0]['port']}/readyz" in script
    compile(script, "readyz", "exec")  # the inline script is valid Python


def test_the_dashboard_is_valid_grafana_json_shipped_with_the_sidecar_label() -> None:
    configmap = one(render(METRICS), "ConfigMap", "kubetask-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["kubetask.json"])
    assert dashboard == json.loads((CHART / "files/dashboards/kubetask.json").read_text())
    assert dashboard["title"]
    assert dashboard["uid"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    assert all("kubetask_" in e for e in exprs)


def test_chart_yaml_is_consistent_with_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kubetask"
    pyproject = (CHART.parents[1] / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None
    assert chart["appVersion"] == version.group(1)


def test_the_readme_install_example_renders_and_validates() -> None:
    readme = (CHART.parents[1] / "README.md").read_text()
    section = readme.split("## Install on a cluster", 1)[1].split("\n## ", 1)[0]
    command = next(
        block
        for block in section.split("```sh")[1:]
        if "--set image.repository" in block.split("```")[0]
    ).split("```")[0]
    flags = re.findall(r"--set\s+'?([^'\s]+)'?", command)
    values = helm.parse_set_string(",".join(flags))  # as helm joins repeated --set flags
    assert values["redis"]["external"]["url"]
    for obj in render(values):
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, "1.37.0", strict=True)
