"""What only the kubernetes backend does, against the real control plane (kube-apiserver,
the Job controller, the scheduler; tests/cluster/) whose process node agent runs each pod's
container as a local process. The controller runs as the chart's ServiceAccount."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import yaml
from kubernetes import client as k8s

from kubetask import keys
from kubetask.controller.redis_server import RedisServer, free_port
from tests.cluster.bootstrap import throttle
from tests.cluster.control_plane import ControlPlane
from tests.conftest import KubeStack, kubernetes_stack
from tests.integration.test_real_cluster import job_pods
from tests.servers import ApiServer, own_database

KUBECTL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl")


def kubectl(stack: KubeStack, *args: str) -> str:
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(stack.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def jobs_in_cluster(stack: KubeStack) -> list[dict[str, Any]]:
    with stack.client() as api:
        response: Any = k8s.BatchV1Api(api).list_namespaced_job(
            stack.namespace,
            label_selector="app.kubernetes.io/managed-by=kubetask",
            _preload_content=False,
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items


def test_kubectl_shows_the_jobs_and_the_request(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 2}, labels={"team": "vision"})
    api.wait(job_id)
    names = kubectl(
        kube_stack, "get", "jobs", "-l", "app.kubernetes.io/managed-by=kubetask", "-o", "name"
    )
    assert f"job.batch/kt-{job_id}" in names.split()
    manifest = yaml.safe_load(kubectl(kube_stack, "get", "job", f"kt-{job_id}", "-o", "yaml"))
    request = json.loads(manifest["metadata"]["annotations"]["kubetask.io/request"])
    assert request["kind"] == "noop"
    assert request["labels"] == {"team": "vision"}
    assert manifest["metadata"]["labels"]["kubetask.io/job-id"] == job_id


def test_a_jobs_times_are_its_task_containers_and_its_jobs_not_the_syncs(
    kube_stack: KubeStack,
) -> None:
    """started_at: when the pod's container began (the kubelet's startedAt); finished_at:
    when the Job controller decided the success (SuccessCriteriaMet, written a moment
    before Complete: the earlier of the two); both kept within [created_at, now] (the API
    server's times are whole seconds)."""
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 2})
    job = api.wait(job_id)
    assert job["state"] == "succeeded", job
    (pod,) = json.loads(
        kubectl(kube_stack, "get", "pods", "-l", f"job-name=kt-{job_id}", "-o", "json")
    )["items"]
    began = datetime.fromisoformat(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["startedAt"]
    )
    manifest = json.loads(kubectl(kube_stack, "get", "job", f"kt-{job_id}", "-o", "json"))
    decided = min(
        datetime.fromisoformat(c["lastTransitionTime"])
        for c in manifest["status"]["conditions"]
        if c["type"] in ("Complete", "SuccessCriteriaMet")
    )
    created = datetime.fromisoformat(job["created_at"])
    started = max(began, created)
    assert datetime.fromisoformat(job["started_at"]) == started
    assert datetime.fromisoformat(job["finished_at"]) == max(decided, started)


def test_an_event_is_recorded_on_the_job_at_each_transition(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 2})
    api.wait(job_id)
    deadline = time.monotonic() + 10
    while True:
        with kube_stack.client() as client:
            events = k8s.CoreV1Api(client).list_namespaced_event(
                kube_stack.namespace, field_selector=f"involvedObject.name=kt-{job_id}"
            )
        reasons = [e.reason for e in events.items if e.source and e.source.component == "kubetask"]
        if "Succeeded" in reasons or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "Running" in reasons
    assert reasons[-1] == "Succeeded"


def test_dry_run_renders_the_job_manifest(kube_stack: KubeStack) -> None:
    response = kube_stack.api.client.post(
        "/v1/jobs", params={"dry_run": "true"}, json={"kind": "noop", "retries": 4}
    )
    assert response.status_code == 200
    job = response.json()["object"]["job"]
    assert (job["kind"], job["spec"]["backoffLimit"]) == ("Job", 4)
    assert jobs_in_cluster(kube_stack) == []


def test_a_job_whose_ttl_ran_out_while_no_controller_ran_ends_in_its_true_state(
    kube_stack: KubeStack,
) -> None:
    """Its tasks' stored outcomes say it succeeded: the Job being gone does not fail it."""
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 10, "step_s": 0.1})
    api.wait(job_id, {"running"})
    api.stop()  # the controller is away while the task ends and the Job expires
    with redis.Redis.from_url(api.redis_url) as client:
        deadline = time.monotonic() + 30
        while not client.exists(keys.outcome(job_id, 0)):
            assert time.monotonic() < deadline, "the task never stored its outcome"
            time.sleep(0.1)
    kubectl(kube_stack, "delete", "job", f"kt-{job_id}", "--wait=false")  # as its TTL would
    api.start()
    job = api.wait(job_id)
    assert (job["state"], job["reason"]) == ("succeeded", "Completed")
    assert job["result"]["steps"] == 10  # the task's own result


def test_a_job_deleted_behind_kubetasks_back_fails_with_a_clear_reason(
    kube_stack: KubeStack,
) -> None:
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 300, "step_s": 0.1})
    api.wait(job_id, {"running"})
    kubectl(kube_stack, "delete", "job", f"kt-{job_id}", "--wait=false")
    job = api.wait(job_id)
    assert (job["state"], job["reason"]) == ("failed", "JobDeleted")
    assert "outside kubetask" in job["error"]["suggestion"]


def test_cancel_deletes_the_job_and_its_pods(kube_stack: KubeStack) -> None:
    """...and its log is kept all the same: the pods of a deleted Job vanish once stopped,
    their log with them, so it is read as they stop (a 410 for every cancelled job)."""
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 300, "step_s": 0.1})
    api.wait(job_id, {"running"})
    deadline = time.monotonic() + 30
    while "starting" not in api.client.get(f"/v1/jobs/{job_id}/logs").text:
        assert time.monotonic() < deadline, "the task never said it started"
        time.sleep(0.2)
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 202
    assert api.wait(job_id)["state"] == "cancelled"
    deadline = time.monotonic() + 15
    while jobs_in_cluster(kube_stack) or job_pods(kube_stack, job_id):
        assert time.monotonic() < deadline, "the Job and its pods were not deleted"
        time.sleep(0.1)
    deadline = time.monotonic() + 30  # the log as archived, the pods being gone
    while (kept := api.client.get(f"/v1/jobs/{job_id}/logs")).status_code != 200 or (
        "starting" not in kept.text
    ):
        assert time.monotonic() < deadline, (kept.status_code, kept.text)
        time.sleep(0.2)


def test_unschedulable_then_start_timeout(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job_id = api.submit("noop", resources={"gpu": 1, "gpu_type": "H100"}, start_timeout_s=2)
    deadline = time.monotonic() + 10
    while (job := api.job(job_id))["reason"] != "Unschedulable":  # after the scheduler tried
        assert job["state"] in ("queued", "pending"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["state"] == "pending"
    assert "node" in job["message"]
    job = api.wait(job_id)
    assert (job["state"], job["reason"]) == ("failed", "StartTimeout")
    assert job["started_at"] is None


def test_a_queue_creates_the_job_suspended_until_admitted(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job_id = api.submit("noop", queue="team-a")
    queued = api.wait(job_id, {"queued"})
    time.sleep(0.5)
    assert api.job(job_id)["state"] == "queued"
    assert queued["reason"] in ("Accepted", "Suspended")
    with kube_stack.client() as client:  # what Kueue does on admission
        k8s.BatchV1Api(client).patch_namespaced_job(
            f"kt-{job_id}", kube_stack.namespace, {"spec": {"suspend": False}}
        )
    assert api.wait(job_id)["state"] == "succeeded"


def test_a_purge_deletes_the_finished_jobs_job_and_pods_too(kube_stack: KubeStack) -> None:
    """Its Job (the params in it) and pods (their logs) would stay until the Job's TTL."""
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 1})
    assert api.wait(job_id)["state"] == "succeeded"
    assert kubectl(kube_stack, "get", "job", f"kt-{job_id}", "-o", "name").strip()
    gone = api.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert gone.status_code == 204, gone.text
    deadline = time.monotonic() + 15
    while kubectl(kube_stack, "get", "job", f"kt-{job_id}", "--ignore-not-found", "-o", "name"):
        assert time.monotonic() < deadline, "the Job was not deleted"
        time.sleep(0.1)


def test_large_params_travel_in_a_configmap_owned_by_the_job(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job = api.wait(api.submit("noop", {"payload": "p" * 100_000}))
    assert job["state"] == "succeeded", job
    assert job["result"]["payload_chars"] == 100_000
    # 800 KB of UTF-8: as \u escapes it was 2.4 MB, over what a ConfigMap holds
    job = api.wait(api.submit("noop", {"payload": "é" * 400_000}))
    assert job["state"] == "succeeded", job
    assert job["result"]["payload_chars"] == 400_000


def test_params_too_large_for_a_configmap_fail_the_job_at_once_and_leave_no_job(
    control_plane: ControlPlane, redis_server: RedisServer, tmp_path: Path
) -> None:
    """An operator allowed bodies larger than a ConfigMap holds: the API server refuses the
    params' ConfigMap, the job fails saying why, and its Job (made first) is deleted."""
    url = own_database(redis_server.url)
    with kubernetes_stack(control_plane, url, tmp_path, max_body_bytes=4 << 20) as stack:
        job_id = stack.api.submit("noop", {"payload": "é" * 600_000})  # 1.2 MB of UTF-8
        job = stack.api.wait(job_id, timeout_s=60)
        assert (job["state"], job["reason"]) == ("failed", "CreateRejected"), job
        assert "refused" in job["message"], job["message"][:300]
        deadline = time.monotonic() + 30
        while jobs_in_cluster(stack) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jobs_in_cluster(stack) == []


def test_an_indexed_job_reports_each_completion(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job = api.wait(api.submit("noop", {"steps": 1}, completions=2, parallelism=2))
    assert job["state"] == "succeeded"
    assert [r["steps"] for r in job["result"]["completions"]] == [1, 1]


def test_the_result_comes_from_the_termination_message_when_redis_lost_it(
    control_plane: ControlPlane, redis_url: str, tmp_path: Path
) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # tasks cannot reach Redis at all
    url = own_database(redis_url)
    with kubernetes_stack(control_plane, url, tmp_path, task_redis_url=unreachable) as stack:
        job = stack.api.wait(stack.api.submit("noop", {"steps": 2}))
        assert job["state"] == "succeeded"
        assert job["result"]["steps"] == 2


def test_nothing_is_lost_through_dropped_connections_compaction_and_429s(
    kube_stack: KubeStack,
) -> None:
    """The API server itself throttles the controller (API Priority and Fairness: 429 with
    Retry-After), its connections are cut, etcd is compacted: every job still ends right."""
    api = kube_stack.api
    throttle(
        kube_stack.plane, namespace=kube_stack.namespace, account=kube_stack.installation.account
    )
    ids = [api.submit("noop", {"steps": 3, "step_s": 0.05}) for _ in range(6)]
    for _ in range(3):
        time.sleep(0.3)
        kube_stack.proxy.drop()
        kube_stack.plane.compact()
    assert [api.wait(i, timeout_s=90)["state"] for i in ids] == ["succeeded"] * 6
    assert len(jobs_in_cluster(kube_stack)) == 6


def test_restarts_never_duplicate_a_job(kube_stack: KubeStack) -> None:
    api: ApiServer = kube_stack.api
    ids = [api.submit("noop", {"steps": 5, "step_s": 0.1}) for _ in range(3)]
    api.kill()
    api.start()
    api.kill()
    api.start()
    assert {api.wait(i)["state"] for i in ids} == {"succeeded"}
    names = sorted(j["metadata"]["name"] for j in jobs_in_cluster(kube_stack))
    assert names == sorted(f"kt-{i}" for i in ids)
