"""Tenants on Kubernetes: each tenant's Jobs run in its own namespace (KUBETASK_TENANT_NAMESPACES),
watched, observed, logged and cancelled there, against the real control plane; the tenant's
namespace is set up as the chart does it (its Role and RoleBinding for the controller's
ServiceAccount, the task ServiceAccount, the artifacts claim), and what the controller asks
of it (from the API server's audit log) is exactly what the chart's Role there grants."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from tests.cluster.bootstrap import ARTIFACTS_CLAIM, admin_client, bind_claim, restricted_namespace
from tests.cluster.control_plane import ControlPlane
from tests.component.chart import render
from tests.component.test_chart import role_grants
from tests.conftest import KubeStack, kubernetes_stack
from tests.servers import own_database

TOKENS = {"a": ("team-a", "user"), "b": ("team-b", "user")}


def token(name: str) -> str:
    return f"{name}-token-{'z' * 24}"


def tenant_values(namespace: str) -> dict[str, Any]:
    return {"tenants": {"namespaces": {"team-b": namespace}}}


class Stack:
    def __init__(self, kube: KubeStack, tenant_namespace: str) -> None:
        self.kube = kube
        self.tenant_namespace = tenant_namespace
        self.as_ = {
            name: httpx.Client(
                base_url=kube.api.base_url,
                timeout=30,
                headers={"Authorization": f"Bearer {token(name)}"},
            )
            for name in TOKENS
        }

    def close(self) -> None:
        for client in self.as_.values():
            client.close()

    def submit(self, who: str, params: dict[str, Any]) -> str:
        response = self.as_[who].post("/v1/jobs", json={"kind": "noop", "params": params})
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        return job_id

    def wait(self, who: str, job_id: str, states: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            job: dict[str, Any] = self.as_[who].get(f"/v1/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)

    def jobs_in(self, namespace: str) -> set[str]:
        with self.kube.client() as api:
            response: Any = k8s.BatchV1Api(api).list_namespaced_job(
                namespace,
                label_selector="app.kubernetes.io/managed-by=kubetask",
                _preload_content=False,
            )
            return {item["metadata"]["name"] for item in json.loads(response.data)["items"]}


@pytest.fixture
def stack(control_plane: ControlPlane, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    url = own_database(redis_url)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps([{"token": token(n), "tenant": t, "role": r} for n, (t, r) in TOKENS.items()])
    )
    tenant_namespace = f"ml-team-b-{uuid.uuid4().hex[:8]}"
    # the tenant's namespace exists before the install (the chart requires it), with its
    # own artifacts claim on the same folder as the release namespace's
    with admin_client(control_plane) as api:
        restricted_namespace(api, tenant_namespace)
        bind_claim(
            api,
            namespace=tenant_namespace,
            claim=ARTIFACTS_CLAIM,
            folder=tmp_path / "api" / "artifacts",
        )
    try:
        with kubernetes_stack(
            control_plane,
            url,
            tmp_path,
            values=tenant_values(tenant_namespace),  # its Role, RoleBinding, task account
            tokens_file=tokens,
            tenant_namespaces=json.dumps({"team-b": tenant_namespace}),
        ) as kube:
            stack = Stack(kube, tenant_namespace)
            try:
                yield stack
            finally:
                stack.close()
    finally:
        with admin_client(control_plane) as api:
            core: Any = k8s.CoreV1Api(api)
            core.delete_namespace(tenant_namespace, propagation_policy="Background")
            core.delete_persistent_volume(f"{tenant_namespace}-{ARTIFACTS_CLAIM}")


def test_each_tenants_jobs_run_and_stop_in_its_namespace(stack: Stack) -> None:
    tenant_ns, release_ns = stack.tenant_namespace, stack.kube.namespace
    ours, theirs = stack.submit("a", {"steps": 2}), stack.submit("b", {"steps": 2})
    done = stack.wait("b", theirs, {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    assert done["backend"] == {
        "backend": "kubernetes",
        "name": f"kt-{theirs}",
        "namespace": tenant_ns,
    }
    assert stack.wait("a", ours, {"succeeded"})["backend"]["namespace"] == release_ns
    assert f"kt-{theirs}" in stack.jobs_in(tenant_ns)
    assert f"kt-{ours}" in stack.jobs_in(release_ns)
    assert f"kt-{theirs}" not in stack.jobs_in(release_ns)
    assert stack.as_["b"].get(f"/v1/jobs/{theirs}/logs").status_code == 200
    assert stack.as_["a"].get(f"/v1/jobs/{theirs}/logs").status_code == 404

    running = stack.submit("b", {"steps": 300, "step_s": 0.1})
    stack.wait("b", running, {"running"})
    assert stack.as_["b"].delete(f"/v1/jobs/{running}").status_code == 202
    assert stack.wait("b", running, {"cancelled", "failed", "succeeded"})["state"] == "cancelled"
    assert f"kt-{running}" not in stack.jobs_in(tenant_ns)

    calls = stack.kube.controller_requests()
    refused = [r for r in calls if r.code == 403]
    assert refused == [], "the real RBAC authorizer refused calls the controller made"
    used: dict[tuple[str, str], set[str]] = {}
    for request in calls:
        if request.namespace == tenant_ns and request.resource:
            used.setdefault((request.group, request.resource), set()).add(request.verb)
    granted = role_grants(
        next(
            r
            for r in render(tenant_values(tenant_ns))
            if r["kind"] == "Role" and r["metadata"]["namespace"] == tenant_ns
        )
    )
    assert used, "the controller made no calls in the tenant's namespace"
    for target, verbs in used.items():
        assert verbs <= granted.get(target, set()), f"{target}: {verbs} not granted"


def test_a_tenant_moved_away_leaves_its_running_job_failed_in_words_naming_where_it_is(
    stack: Stack,
) -> None:
    """The mapping changed while a job ran: the record kept the namespace its Job was
    created in, no longer watched. The job ends `NamespaceNotWatched` naming it (not
    `JobDeleted`: the Job was not deleted, it runs on there) and still points there."""
    tenant_ns = stack.tenant_namespace
    running = stack.submit("b", {"steps": 600, "step_s": 0.1})
    stack.wait("b", running, {"running"})
    stack.kube.api.restart_with(tenant_namespaces="{}")  # team-b now in the release's
    ended = stack.wait("b", running, {"succeeded", "failed", "cancelled"})
    assert (ended["state"], ended["reason"]) == ("failed", "NamespaceNotWatched"), ended
    assert f"namespace {tenant_ns}" in ended["message"]
    assert ended["backend"]["namespace"] == tenant_ns
    assert f"kt-{running}" in stack.jobs_in(tenant_ns)  # it was not deleted
