"""Tenants on Kubernetes: each tenant's Jobs run in its own namespace (KUBETASK_TENANT_NAMESPACES),
watched, observed, logged and cancelled there, against the Kubernetes API test server and
its simulator; and what the controller asks of a tenant's namespace is exactly what the
chart's Role there grants."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from controller.redis_server import RedisServer
from tests.component.chart import render
from tests.component.test_chart import role_grants
from tests.component.test_chart_rbac import CONTROLLER_AGENT
from tests.kubeapi.server import KubeApiServer
from tests.kubeapi.simulator import Simulator
from tests.servers import ApiServer, own_database

TENANT_NS = "ml-team-b"
TOKENS = {"a": ("team-a", "user"), "b": ("team-b", "user")}


def token(name: str) -> str:
    return f"{name}-token-{'z' * 24}"


class Stack:
    def __init__(self, api: ApiServer, kube: KubeApiServer) -> None:
        self.api = api
        self.kube = kube
        self.as_ = {
            name: httpx.Client(
                base_url=api.base_url,
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
        with self.kube.api_client() as api:
            response: Any = k8s.BatchV1Api(api).list_namespaced_job(
                namespace,
                label_selector="app.kubernetes.io/managed-by=kubetask",
                _preload_content=False,
            )
            return {item["metadata"]["name"] for item in json.loads(response.data)["items"]}


@pytest.fixture
def stack(redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    url = own_database(redis_server.url)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps([{"token": token(n), "tenant": t, "role": r} for n, (t, r) in TOKENS.items()])
    )
    kube = KubeApiServer(namespaces=[TENANT_NS]).start()
    claims = {"kubetask-artifacts": tmp_path / "api" / "artifacts"}
    simulator = Simulator(kube, workdir=tmp_path / "kubelet", claims=claims).start()
    api = ApiServer(
        redis_url=url,
        data_dir=tmp_path / "api",
        backend="kubernetes",
        kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
        tokens_file=tokens,
        tenant_namespaces=json.dumps({"team-b": TENANT_NS}),
    )
    stack = None
    try:
        api.start()
        stack = Stack(api, kube)
        yield stack
    finally:
        if stack is not None:
            stack.close()
        api.close()
        simulator.stop()
        kube.stop()


def test_each_tenants_jobs_run_and_stop_in_its_namespace(stack: Stack) -> None:
    ours, theirs = stack.submit("a", {"steps": 2}), stack.submit("b", {"steps": 2})
    done = stack.wait("b", theirs, {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    assert done["backend"] == {
        "backend": "kubernetes",
        "name": f"kt-{theirs}",
        "namespace": TENANT_NS,
    }
    assert stack.wait("a", ours, {"succeeded"})["backend"]["namespace"] == "default"
    assert f"kt-{theirs}" in stack.jobs_in(TENANT_NS)
    assert f"kt-{ours}" in stack.jobs_in("default")
    assert f"kt-{theirs}" not in stack.jobs_in("default")
    assert stack.as_["b"].get(f"/v1/jobs/{theirs}/logs").status_code == 200
    assert stack.as_["a"].get(f"/v1/jobs/{theirs}/logs").status_code == 404

    running = stack.submit("b", {"steps": 300, "step_s": 0.1})
    stack.wait("b", running, {"running"})
    assert stack.as_["b"].delete(f"/v1/jobs/{running}").status_code == 202
    assert stack.wait("b", running, {"cancelled", "failed", "succeeded"})["state"] == "cancelled"
    assert f"kt-{running}" not in stack.jobs_in(TENANT_NS)

    used: dict[tuple[str, str], set[str]] = {}
    for request in stack.kube.requests:
        mine = request.namespace == TENANT_NS and request.verb
        if mine and request.user_agent.startswith(CONTROLLER_AGENT):
            group = "" if request.path.startswith("/api/") else request.path.split("/")[2]
            used.setdefault((group, request.resource), set()).add(request.verb)
    granted = role_grants(
        next(
            r
            for r in render({"tenants": {"namespaces": {"team-b": TENANT_NS}}})
            if r["kind"] == "Role" and r["metadata"]["namespace"] == TENANT_NS
        )
    )
    assert used, "the controller made no calls in the tenant's namespace"
    for target, verbs in used.items():
        assert verbs <= granted.get(target, set()), f"{target}: {verbs} not granted"
