"""The chart's side of authentication, tenants and limits: the tokens Secret (given,
existing, or generated) mounted where KUBETASK_TOKENS_FILE says, the limits in the
settings, and per tenant namespace the controller's Role (the same rules as at home), the
task account, the artifacts PVC and the NetworkPolicies, with the Jobs the controller
would create for each tenant landing where those are."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from kubernetes import client as k8s

from kubetask.api.auth import Principal, Role, TokenTable
from kubetask.api.runtime import compose
from kubetask.controller.backends.kubernetes import KubernetesBackend
from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.service import validate_request
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest
from tests.component.chart import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    Obj,
    controller,
    find,
    one,
    render,
)
from tests.component.test_chart import (
    EXPECTED_RULES,
    lint_problems,
    role_grants,
    settings_from,
)

TOKEN = "team-a-token-" + "x" * 20
TENANTS: Obj = {
    "tenants": {"namespaces": {"team-a": "ml-team-a", "team-b": "ml-team-b", "ops": NAMESPACE}},
    "auth": {
        "tokens": [
            {"token": TOKEN, "tenant": "team-a"},
            {"token": "ops-token-" + "y" * 20, "tenant": "ops", "role": "admin"},
        ]
    },
    "config": {"limits": {"maxActiveJobsPerTenant": 20, "maxCpu": "8", "maxMemory": "32Gi"}},
}
TENANT_NAMESPACES = ["ml-team-a", "ml-team-b"]
TOKENS = "kubetask-tokens"  # the generated tokens Secret


def generated_token(objects: list[Obj]) -> str:
    (secret,) = [o for o in find(objects, "Secret") if "tokens.json" in o["data"]]
    (entry,) = json.loads(base64.b64decode(secret["data"]["tokens.json"]))
    assert entry["role"] == "admin"
    assert entry["tenant"] == "default"
    token: str = entry["token"]
    assert len(token) >= 32
    return token


def tokens_of(objects: list[Obj]) -> TokenTable:
    secret = one(objects, "Secret", TOKENS)
    return TokenTable.parse(base64.b64decode(secret["data"]["tokens.json"]).decode())


def in_namespace(objects: list[Obj], kind: str, namespace: str) -> Obj:
    (found,) = [o for o in find(objects, kind) if o["metadata"]["namespace"] == namespace]
    return found


def mounted_tokens_file(objects: list[Obj]) -> tuple[str, str, str]:
    """(the file's path in the container, the Secret's name, its key) as the pod mounts it."""
    pod = controller(objects)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tokens"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tokens"]
    assert mount["readOnly"] is True
    assert "subPath" not in mount  # a subPath mount would never see a rotated Secret
    (item,) = volume["secret"]["items"]
    path = str(PurePosixPath(mount["mountPath"]) / item["path"])
    return path, volume["secret"]["secretName"], item["key"]


def test_by_default_one_admin_token_is_generated_and_mounted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render()
    tokens = tokens_of(objects)
    assert len(tokens) == 1
    assert tokens.tenants == {"default"}
    settings = settings_from(objects, monkeypatch)
    path, secret, key = mounted_tokens_file(objects)
    assert str(settings.tokens_file) == path
    assert (secret, key) == (TOKENS, "tokens.json")
    assert settings.host == "0.0.0.0"  # allowed only because there are tokens
    assert settings.tenant_namespaces == {}
    assert settings.max_active_jobs_per_tenant == 1000
    assert settings.max_timeout_s == 604800
    assert generated_token(objects) != generated_token(render({"fullnameOverride": "again"}))


def test_given_tokens_become_the_secret_and_limits_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render(TENANTS)
    assert tokens_of(objects).lookup(TOKEN) == Principal("team-a", Role.USER)
    settings = settings_from(objects, monkeypatch)
    assert settings.tenant_namespaces == TENANTS["tenants"]["namespaces"]
    assert settings.max_active_jobs_per_tenant == 20
    assert (settings.max_cpu, settings.max_memory) == ("8", "32Gi")


def test_an_existing_secret_is_mounted_and_none_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render({"auth": {"existingSecret": "api-tokens", "existingSecretKey": "all.json"}})
    assert not find(objects, "Secret", TOKENS)
    path, secret, key = mounted_tokens_file(objects)
    assert (secret, key) == ("api-tokens", "all.json")
    assert str(settings_from(objects, monkeypatch).tokens_file) == path


@pytest.mark.parametrize(
    ("store", "artifacts"), [("minio", "Secret"), ("pvc", "PersistentVolumeClaim")]
)
def test_each_tenant_namespace_gets_the_role_account_store_and_policy(
    store: str, artifacts: str
) -> None:
    """With the in-chart MinIO a copy of its credentials Secret (the tenant's Jobs
    reference it), with a shared volume the tenant's own claim."""
    objects = render({**TENANTS, "artifacts": {"store": store}})
    home_role = in_namespace(objects, "Role", NAMESPACE)
    controller_account = controller(objects)["spec"]["template"]["spec"]["serviceAccountName"]
    by_namespace: dict[str, set[str]] = {}
    for obj in objects:
        by_namespace.setdefault(obj["metadata"].get("namespace", ""), set()).add(obj["kind"])
    for namespace in TENANT_NAMESPACES:
        assert by_namespace[namespace] == {
            "Role",
            "RoleBinding",
            "ServiceAccount",
            artifacts,
            "NetworkPolicy",
        }
        role = in_namespace(objects, "Role", namespace)
        assert role_grants(role) == role_grants(home_role) == EXPECTED_RULES
        binding = in_namespace(objects, "RoleBinding", namespace)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": controller_account, "namespace": NAMESPACE}
        ]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert len(find(objects, "Role")) == 3  # ops runs at home: no second Role there
    if store == "minio":  # the same credentials everywhere
        copies = [o["data"] for o in find(objects, "Secret", "kubetask-minio")]
        assert len(copies) == 3
        assert all(data == copies[0] for data in copies)
    assert not find(objects, "ClusterRole")


def test_tenant_tasks_reach_redis_and_minio_across_namespaces_and_nothing_else() -> None:
    objects = render(TENANTS)
    redis_pods = one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    minio_pods = one(objects, "Deployment", "kubetask-minio")["spec"]["template"]["metadata"]
    for server in ("kubetask-redis", "kubetask-minio"):
        (rule,) = one(objects, "NetworkPolicy", server)["spec"]["ingress"]
        admitted = {
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in rule["from"]
            if "namespaceSelector" in p
        }
        assert admitted == set(TENANT_NAMESPACES), server
    for policy in find(objects, "NetworkPolicy"):
        if policy["metadata"]["namespace"] not in TENANT_NAMESPACES:
            continue
        assert policy["spec"]["ingress"] == []
        (dns, redis, store) = policy["spec"]["egress"]
        (store_peer,) = store["to"]
        assert store_peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": NAMESPACE
        }
        assert all(
            minio_pods["labels"].get(k) == v
            for k, v in store_peer["podSelector"]["matchLabels"].items()
        )
        assert store["ports"] == [{"port": 9000, "protocol": "TCP"}]
        (peer,) = redis["to"]
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": NAMESPACE
        }
        assert all(redis_pods.get(k) == v for k, v in peer["podSelector"]["matchLabels"].items())
        assert {p["port"] for p in dns["ports"]} == {53}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_the_tenant_values_lint_and_validate(kube_version: str) -> None:
    assert lint_problems(TENANTS, kube_version=kube_version) == []
    for obj in render(TENANTS):
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_a_tenants_job_lands_where_its_account_and_claim_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render(TENANTS)
    settings = settings_from(objects, monkeypatch)
    assert settings.redis_url is not None
    wiring = compose(settings, redis_url=settings.redis_url, kinds=load_kinds())
    backend = KubernetesBackend(
        api=k8s.ApiClient(),
        cluster=settings.cluster(),
        tenant_namespaces=settings.tenant_namespaces,
    )
    request = validate_request(JobRequest(kind="noop"), kinds=wiring.kinds)
    try:
        for tenant, namespace in [("team-a", "ml-team-a"), ("ops", NAMESPACE), ("x", NAMESPACE)]:
            now = datetime.now(UTC)
            record = JobRecord(id=new_job_id(now), request=request, created_at=now, tenant=tenant)
            job: Any = backend.render(wiring.spec_for(record))["job"]
            assert job["metadata"]["namespace"] == namespace
            pod = job["spec"]["template"]["spec"]
            here = [o for o in objects if o["metadata"].get("namespace") == namespace]
            assert pod["serviceAccountName"] in {
                o["metadata"]["name"] for o in find(here, "ServiceAccount")
            }
            claims = {
                v["persistentVolumeClaim"]["claimName"]
                for v in pod["volumes"]
                if "persistentVolumeClaim" in v
            }
            assert claims <= {o["metadata"]["name"] for o in find(here, "PersistentVolumeClaim")}
            assert backend.ref(record.id, tenant=tenant).namespace == namespace
    finally:
        backend._calls.shutdown(wait=False)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"auth": {"tokens": [{"token": "short", "tenant": "a"}]}}, "token"),
        ({"auth": {"tokens": [{"token": "t" * 20, "tenant": "Team_A"}]}}, "tenant"),
        ({"auth": {"tokens": [{"token": "t" * 20, "tenant": "a", "role": "root"}]}}, "role"),
        ({"auth": {"tokens": [{"tenant": "a"}]}}, "token"),
        ({"auth": {"existingSecrett": "x"}}, "existingSecrett"),
        ({"tenants": {"namespaces": {"team-a": "ML"}}}, "team-a"),
        ({"tenants": {"namespaces": {"Team A": "ml"}}}, "Team A"),
        ({"config": {"limits": {"maxCpu": "lots"}}}, "maxCpu"),
        ({"config": {"limits": {"maxPageSize": 500}}}, "maxPageSize"),
    ],
)
def test_bad_auth_tenant_and_limit_values_are_refused(values: Obj, named: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as bad:
        chart.validate_schema(values)
    assert named in str(bad.value)


def test_only_the_release_namespace_keeps_the_minio_secret() -> None:
    """The kept Secret goes with the kept MinIO volume; a tenant's copy of the store's root
    credentials must not outlive the tenant or the release."""
    objects = render(TENANTS)
    assert objects_kept(objects) == {("PersistentVolumeClaim", NAMESPACE), ("Secret", NAMESPACE)}
    assert {o["metadata"]["namespace"] for o in find(objects, "Secret", "kubetask-minio")} == {
        NAMESPACE,
        *TENANT_NAMESPACES,
    }


def objects_kept(objects: list[Obj]) -> set[tuple[str, str]]:
    """(kind, namespace) of the objects `helm uninstall` leaves behind."""
    return {
        (o["kind"], o["metadata"]["namespace"])
        for o in objects
        if o["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"
    }


# `lookup` returns nothing offline (helm-python-sdk renders without a cluster), so the upgrade
# is rendered from a copy of the chart whose one extra template calls the helper behind
# `kubetask.tokensJson` with the Secret that lookup would have found.
PROBE = (
    '{{- include "kubetask.tokensJsonFrom" '
    '(dict "ctx" . "existing" (.Files.Get "existing.json" | fromJson)) }}'
)


def tokens_on_upgrade(tmp_path: Path, existing: Obj, values: Obj) -> list[Obj]:
    chart = tmp_path / "kubetask"
    shutil.copytree(CHART, chart)
    (chart / "existing.json").write_text(json.dumps(existing))
    (chart / "templates" / "probe.txt").write_text(PROBE)
    with helm.Chart.load(chart) as loaded:
        files = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True)
    entries: list[Obj] = json.loads(files["kubetask/templates/probe.txt"])
    return entries


def test_an_upgrade_keeps_the_generated_token_and_never_removed_given_ones(
    tmp_path: Path,
) -> None:
    generated = one(render(), "Secret", TOKENS)
    given = one(render(TENANTS), "Secret", TOKENS)
    assert generated["metadata"]["annotations"] == {"kubetask.dev/generated": "true"}
    assert "annotations" not in given["metadata"]

    # the generated token survives an upgrade ...
    kept = tokens_on_upgrade(tmp_path / "1", generated, {})
    assert kept == json.loads(base64.b64decode(generated["data"]["tokens.json"]))
    # ... tokens removed from auth.tokens (--reset-values) do not: a new admin token replaces
    # them, the one NOTES.txt tells how to read
    (new,) = tokens_on_upgrade(tmp_path / "2", given, {})
    assert new["token"] not in {e["token"] for e in TENANTS["auth"]["tokens"]}
    assert (new["tenant"], new["role"]) == ("default", "admin")
    # given tokens always come from values; an install (lookup found nothing) generates one
    assert tokens_on_upgrade(tmp_path / "3", generated, TENANTS) == TENANTS["auth"]["tokens"]
    (fresh,) = tokens_on_upgrade(tmp_path / "4", {}, {})
    assert fresh["token"] != generated_token([generated])
    # a token generated by the chart before it marked its Secret stays the admin's
    unmarked = {
        **generated,
        "metadata": {k: v for k, v in generated["metadata"].items() if k != "annotations"},
    }
    assert tokens_on_upgrade(tmp_path / "5", unmarked, {}) == kept


def test_a_token_given_twice_is_refused_at_render() -> None:
    """The server would refuse to start on it ("the same token appears twice")."""
    tokens = [*TENANTS["auth"]["tokens"], {"token": TOKEN, "tenant": "team-b"}]
    with pytest.raises(
        helm.HelmError, match=r'entry 2 \(tenant "team-b"\) repeats the token'
    ) as bad:
        render({"auth": {"tokens": tokens}})
    assert TOKEN not in str(bad.value)  # the message names the entry, never the token
