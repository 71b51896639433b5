"""The Job-controller/kubelet simulator runs each Job's containers as local processes and
reports pod status and Job conditions as Kubernetes does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.kubeapi.scheduler import SimNode
from tests.kubeapi.server import KubeApiServer
from tests.kubeapi.simulator import Simulator
from tests.kubeapi.waiting import wait_for, watch_events

Obj = dict[str, Any]
FAIL_ON_2 = {
    "rules": [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
}


def job(
    name: str, code: str, *, container: Obj | None = None, pod: Obj | None = None, **spec: Any
) -> Obj:
    """A Job whose one container runs `python -c code`."""
    main = {
        "name": "main",
        "image": "python:3.11",
        "command": ["python", "-c", code],
        **(container or {}),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [main], **(pod or {})}},
        },
    }


class Cluster:
    """A server, its simulator and official clients, for one test."""

    def __init__(self, server: KubeApiServer, sim: Simulator, api: Any) -> None:
        self.server, self.sim = server, sim
        self.batch: Any = client.BatchV1Api(api)
        self.core: Any = client.CoreV1Api(api)

    def submit(self, manifest: Obj) -> Any:
        return self.batch.create_namespaced_job("default", manifest)

    def condition(self, name: str, kind: str, timeout_s: float = 15) -> Any:
        """Wait for a True condition of that type on the Job; return the Job."""

        def has(found: Any) -> bool:
            return any(c.type == kind and c.status == "True" for c in found.status.conditions or [])

        return wait_for(
            lambda: self.batch.read_namespaced_job(name, "default"),
            has,
            timeout_s=timeout_s,
            what=f"{kind} on job {name}",
        )

    def history(self, since: str, pod: str) -> list[Obj]:
        """The watch events of one pod after a resourceVersion (up to the first bookmark)."""
        return watch_events(
            self.core.list_namespaced_pod,
            "default",
            resource_version=since,
            field_selector=f"metadata.name={pod}",
            deserialize=False,
        )

    def pods(self, name: str) -> list[Any]:
        found = self.core.list_namespaced_pod("default", label_selector=f"job-name={name}")
        return sorted(found.items, key=lambda p: p.metadata.creation_timestamp)

    def events(self, name: str) -> list[tuple[str, str]]:
        found = self.core.list_namespaced_event(
            "default", field_selector=f"involvedObject.name={name}"
        )
        return [(e.reason, e.message) for e in found.items]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with (
        KubeApiServer(bookmark_interval_s=0.2) as server,
        Simulator(
            server, workdir=tmp_path / "sim", max_grace_s=2, nodes=[SimNode(labels={"pool": "cpu"})]
        ) as sim,
        server.api_client() as api,
    ):
        yield Cluster(server, sim, api)


def test_a_job_completes_and_its_log_is_readable(cluster: Cluster) -> None:
    cluster.submit(job("hello", "print('hi')"))
    done = cluster.condition("hello", "Complete")
    status = done.status
    assert (status.succeeded, status.active, status.failed) == (1, None, None)
    assert status.start_time
    assert status.completion_time
    assert [c.type for c in status.conditions] == ["SuccessCriteriaMet", "Complete"]
    assert status.conditions[1].reason == "CompletionsReached"
    [pod] = cluster.pods("hello")
    assert pod.status.phase == "Succeeded"
    assert pod.metadata.finalizers is None  # the job-tracking finalizer is gone once counted
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert cluster.core.read_namespaced_pod_log(pod.metadata.name, "default") == "hi\n"
    assert ("Completed", "Job completed") in cluster.events("hello")


def test_failures_are_retried_up_to_the_backoff_limit(cluster: Cluster) -> None:
    cluster.submit(job("flaky", "import sys; print('boom'); sys.exit(3)", backoffLimit=2))
    failed = cluster.condition("flaky", "Failed")
    assert failed.status.failed == 3
    reasons = [(c.type, c.reason) for c in failed.status.conditions]
    assert reasons == [
        ("FailureTarget", "BackoffLimitExceeded"),
        ("Failed", "BackoffLimitExceeded"),
    ]
    pods = cluster.pods("flaky")
    assert [p.status.phase for p in pods] == ["Failed"] * 3
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")


def test_exit_code_2_fails_the_job_at_once(cluster: Cluster) -> None:
    cluster.submit(
        job(
            "invalid",
            "import sys; sys.exit(2)",
            backoffLimit=5,
            podFailurePolicy=FAIL_ON_2,
            podReplacementPolicy="Failed",
        )
    )
    failed = cluster.condition("invalid", "Failed")
    [pod] = cluster.pods("invalid")
    condition = failed.status.conditions[-1]
    assert (condition.reason, failed.status.failed) == ("PodFailurePolicy", 1)
    assert condition.message == (
        f"Container main for pod default/{pod.metadata.name} failed "
        "with exit code 2 matching FailJob rule at index 0"
    )


def test_an_indexed_job_runs_every_index(cluster: Cluster) -> None:
    code = "import os; print('index', os.environ['JOB_COMPLETION_INDEX'])"
    cluster.submit(job("fan", code, completions=2, parallelism=2, completionMode="Indexed"))
    done = cluster.condition("fan", "Complete")
    assert (done.status.succeeded, done.status.completed_indexes) == (2, "0-1")
    logs = {}
    for pod in cluster.pods("fan"):
        index = pod.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        assert pod.metadata.labels["batch.kubernetes.io/job-completion-index"] == index
        assert pod.metadata.name.startswith(f"fan-{index}-")
        logs[index] = cluster.core.read_namespaced_pod_log(pod.metadata.name, "default")
    assert logs == {"0": "index 0\n", "1": "index 1\n"}


def test_the_active_deadline_stops_a_running_job(cluster: Cluster) -> None:
    cluster.submit(job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1))
    [pod] = wait_for(lambda: cluster.pods("slow"), bool)
    failed = cluster.condition("slow", "Failed")
    assert [(c.type, c.reason) for c in failed.status.conditions] == [
        ("FailureTarget", "DeadlineExceeded"),
        ("Failed", "DeadlineExceeded"),
    ]
    assert failed.status.failed == 1
    assert cluster.pods("slow") == []  # the Job controller deleted it, as Kubernetes does
    assert ("Killing", "Stopping container main") in cluster.events(pod.metadata.name)


def test_a_suspended_job_runs_nothing_until_resumed(cluster: Cluster) -> None:
    cluster.submit(job("queued", "print('now')", suspend=True))
    suspended = cluster.condition("queued", "Suspended")
    assert suspended.status.conditions[0].reason == "JobSuspended"
    assert suspended.status.start_time is None
    assert cluster.pods("queued") == []
    cluster.batch.patch_namespaced_job("queued", "default", {"spec": {"suspend": False}})
    done = cluster.condition("queued", "Complete")
    resumed = next(c for c in done.status.conditions if c.type == "Suspended")
    assert (resumed.status, resumed.reason) == ("False", "JobResumed")


def test_an_eviction_is_not_counted_as_a_failure(cluster: Cluster) -> None:
    code = (  # the first pod waits to be evicted; its replacement succeeds at once
        "import os, pathlib, time; mark = pathlib.Path(os.environ['SHARED']) / 'seen'\n"
        "if not mark.exists():\n    mark.write_text('1'); time.sleep(60)"
    )
    shared = {
        "env": [{"name": "SHARED", "value": "/shared"}],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    volumes = [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}]
    since = cluster.submit(
        job(
            "evicted",
            code,
            container=shared,
            pod={"volumes": volumes},
            backoffLimit=0,
            podFailurePolicy=FAIL_ON_2,
            podReplacementPolicy="Failed",
        )
    )
    first = wait_for(
        lambda: cluster.pods("evicted"),
        lambda pods: bool(pods) and pods[0].status.phase == "Running",
    )[0]
    wait_for((cluster.sim.claim_dir("shared") / "seen").exists, bool)
    cluster.sim.evict("default", first.metadata.name)
    done = cluster.condition("evicted", "Complete")
    assert (done.status.succeeded, done.status.failed) == (1, None)
    [replacement] = cluster.pods("evicted")  # the evicted pod was deleted
    assert replacement.metadata.name != first.metadata.name
    last = cluster.history(since.metadata.resource_version, first.metadata.name)[-1]
    assert last["type"] == "DELETED"
    assert last["object"]["status"]["phase"] == "Failed"
    disruption = [
        c for c in last["object"]["status"]["conditions"] if c["type"] == "DisruptionTarget"
    ]
    assert [c["reason"] for c in disruption] == ["EvictionByEvictionAPI"]


def test_suspending_a_running_job_deletes_its_pods(cluster: Cluster) -> None:
    cluster.submit(job("paused", "import time; time.sleep(60)", parallelism=2, completions=2))
    wait_for(
        lambda: cluster.batch.read_namespaced_job("paused", "default"),
        lambda j: j.status.active == 2 and j.status.ready == 2,
    )
    cluster.batch.patch_namespaced_job("paused", "default", {"spec": {"suspend": True}})
    suspended = wait_for(
        lambda: cluster.batch.read_namespaced_job("paused", "default"),
        lambda j: j.status.conditions and not j.status.terminating,
    )
    assert [(c.type, c.reason) for c in suspended.status.conditions] == [
        ("Suspended", "JobSuspended")
    ]
    assert suspended.status.active is None
    assert cluster.pods("paused") == []


def test_on_failure_restarts_and_init_containers(cluster: Cluster) -> None:
    init = {
        "initContainers": [
            {"name": "setup", "image": "python:3.11", "command": ["python", "-c", "print('ready')"]}
        ],
        "restartPolicy": "OnFailure",
    }
    cluster.submit(
        job("crashy", "import sys; print('crash'); sys.exit(1)", pod=init, backoffLimit=1)
    )
    failed = cluster.condition("crashy", "Failed")
    assert failed.status.conditions[-1].reason == "BackoffLimitExceeded"
    events = cluster.events("crashy")
    pod_name = next(m.split(": ")[1] for r, m in events if r == "SuccessfulCreate")
    assert ("BackOff", f"Back-off restarting failed container main in pod {pod_name}") in (
        cluster.events(pod_name)
    )


def test_logs_tail_follow_and_oom(cluster: Cluster) -> None:
    cluster.submit(job("chatty", "import time; print('a\\nb\\nc', flush=True); time.sleep(60)"))
    pod = wait_for(
        lambda: cluster.pods("chatty"), lambda p: bool(p) and p[0].status.phase == "Running"
    )[0]
    name = pod.metadata.name
    assert (
        wait_for(lambda: cluster.core.read_namespaced_pod_log(name, "default", tail_lines=2), bool)
        == "b\nc\n"
    )
    path = f"/api/v1/namespaces/default/pods/{name}/log"
    with (
        httpx.Client(base_url=cluster.server.url, timeout=10) as http,
        http.stream("GET", path, params={"follow": "true"}) as response,
    ):
        lines = response.iter_lines()
        assert [next(lines) for _ in range(3)] == ["a", "b", "c"]
        assert cluster.sim.oom_kill("default", name)
        assert list(lines) == []  # the stream ends with the container
    [pod] = wait_for(lambda: cluster.pods("chatty"), lambda p: p[0].status.phase == "Failed")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_pending_reasons_unschedulable_and_missing_image(cluster: Cluster) -> None:
    cluster.sim.missing_images.add("registry.example/missing:1")
    cluster.submit(job("gpu", "print(1)", pod={"nodeSelector": {"pool": "gpu"}}))
    cluster.submit(job("noimage", "print(1)", container={"image": "registry.example/missing:1"}))

    def scheduled(pod: Any) -> Any:
        return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)

    [pod] = wait_for(lambda: cluster.pods("gpu"), lambda p: bool(p) and scheduled(p[0]))
    condition = scheduled(pod)
    assert (condition.status, condition.reason) == ("False", "Unschedulable")
    assert condition.message.startswith(
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )

    def waiting(pods: list[Any]) -> str:
        statuses = pods[0].status.container_statuses if pods else None
        state = statuses[0].state.waiting if statuses else None
        return str(state.reason) if state else ""

    wait_for(lambda: cluster.pods("noimage"), lambda p: waiting(p) == "ErrImagePull")
    wait_for(lambda: cluster.pods("noimage"), lambda p: waiting(p) == "ImagePullBackOff")
    cluster.sim.missing_images.clear()
    cluster.condition("noimage", "Complete")


def test_volumes_env_and_the_termination_message(cluster: Cluster, tmp_path: Path) -> None:
    cluster.core.create_namespaced_config_map(
        "default",
        {"metadata": {"name": "params"}, "data": {"params.json": '{"lr": 0.1}', "mode": "fast"}},
    )
    code = (
        "import os, pathlib; "
        "out = pathlib.Path(os.environ['ARTIFACTS']) / 'model.txt'; "
        "out.parent.mkdir(parents=True, exist_ok=True); out.write_text('weights'); "
        "params = pathlib.Path('/etc/kubetask/params.json'.replace('/etc/kubetask', "
        "os.environ['PARAMS_DIR'])).read_text(); "
        "pathlib.Path(os.environ['KUBETASK_TERMINATION_LOG']).write_text("
        "params + ' ' + os.environ['MODE'] + ' ' + os.getcwd())"
    )
    container = {
        "env": [
            {"name": "ARTIFACTS", "value": "/artifacts/run-1"},
            {"name": "PARAMS_DIR", "value": "/etc/kubetask"},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "params", "key": "mode"}}},
        ],
        "workingDir": "/scratch",
        "volumeMounts": [
            {"name": "artifacts", "mountPath": "/artifacts"},
            {"name": "params", "mountPath": "/etc/kubetask"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    volumes = [
        {"name": "artifacts", "persistentVolumeClaim": {"claimName": "store"}},
        {"name": "params", "configMap": {"name": "params"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    cluster.submit(job("files", code, container=container, pod={"volumes": volumes}))
    cluster.condition("files", "Complete")
    assert (cluster.sim.claim_dir("store") / "run-1" / "model.txt").read_text() == "weights"
    [pod] = cluster.pods("files")
    message = pod.status.container_statuses[0].state.terminated.message
    folder = cluster.sim.pod_dir("default", pod.metadata.name)
    assert folder is not None
    assert message == f'{{"lr": 0.1}} fast {folder / "volumes" / "scratch"}'


def test_deleting_a_running_job_stops_its_processes(cluster: Cluster) -> None:
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    cluster.submit(job("doomed", code))
    pod = wait_for(
        lambda: cluster.pods("doomed"), lambda p: bool(p) and p[0].status.phase == "Running"
    )[0]
    pid = int(
        wait_for(lambda: cluster.core.read_namespaced_pod_log(pod.metadata.name, "default"), bool)
    )
    cluster.batch.delete_namespaced_job("doomed", "default", propagation_policy="Background")
    wait_for(lambda: cluster.pods("doomed"), lambda p: p == [], what="the pod to go")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert ("Killing", "Stopping container main") in cluster.events(pod.metadata.name)


def test_ttl_after_finished_deletes_the_job(cluster: Cluster) -> None:
    cluster.submit(job("brief", "print(1)", ttlSecondsAfterFinished=0))
    wait_for(
        lambda: [j.metadata.name for j in cluster.batch.list_namespaced_job("default").items],
        lambda names: names == [],
        what="the TTL to delete the job",
    )
    assert cluster.pods("brief") == []


def test_stop_kills_what_still_runs(tmp_path: Path) -> None:
    with KubeApiServer() as server, server.api_client() as api:
        sim = Simulator(server, workdir=tmp_path).start()
        batch: Any = client.BatchV1Api(api)
        core: Any = client.CoreV1Api(api)
        batch.create_namespaced_job(
            "default",
            job("forever", "import os, time; print(os.getpid(), flush=True); time.sleep(600)"),
        )
        pod = wait_for(
            lambda: core.list_namespaced_pod("default").items,
            lambda p: bool(p) and p[0].status.phase == "Running",
        )[0]
        pid = int(
            wait_for(lambda: core.read_namespaced_pod_log(pod.metadata.name, "default"), bool)
        )
        sim.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert sys.executable  # the container ran the test's interpreter


def test_pods_that_pod_security_forbids_are_failed_creates(cluster: Cluster) -> None:
    cluster.core.create_namespace(
        {
            "metadata": {
                "name": "secure",
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            }
        }
    )
    cluster.batch.create_namespaced_job("secure", job("loose", "print(1)"))
    events = wait_for(
        lambda: cluster.core.list_namespaced_event("secure").items,
        lambda found: any(e.reason == "FailedCreate" for e in found),
    )
    failed = next(e for e in events if e.reason == "FailedCreate")
    assert failed.type == "Warning"
    assert 'is forbidden: violates PodSecurity "restricted:latest"' in failed.message
    assert cluster.core.list_namespaced_pod("secure").items == []


def test_kubectl_creates_waits_for_and_reads_a_job(cluster: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "job.json"
    manifest.write_text(json.dumps(job("by-kubectl", "print('from kubectl')")))
    config = cluster.server.kubeconfig(tmp_path / "kubeconfig")
    kubectl = [
        str(Path(sys.executable).parent / "kubectl"),
        "--kubeconfig",
        str(config),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*kubectl, *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("create", "-f", str(manifest)).strip() == "job.batch/by-kubectl created"
    run("wait", "--for=condition=complete", "job/by-kubectl", "--timeout=20s")
    assert run("logs", "job/by-kubectl") == "from kubectl\n"
    assert "Created pod: by-kubectl-" in run("describe", "job", "by-kubectl")
