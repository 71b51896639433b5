"""Figures for the kubernetes backend, against the Kubernetes API test server (no pods run:
the bench plays the Job controller itself).

1. Submissions: N requests over REST until N Jobs exist in the API server, against a raw
   `create_namespaced_job` loop of the same Jobs, both with the same number of threads.
2. Status lag: a Job's `Complete` condition written through the status subresource until
   an SSE client receives the `succeeded` state event, against a raw watch client seeing
   the same status change.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from bench.harness import Bench, Counts, Figure, Row, median, percentile
from controller.backends.base import TaskSpec
from controller.manifests import ClusterSettings, build_job, job_name, selector
from tests.kubeapi.server import KubeApiServer
from tests.servers import ApiServer, read_sse

THREADS = 8
NAMESPACE = "default"


@dataclass
class KubeBench:
    kube: KubeApiServer
    api: ApiServer
    core: k8s.ApiClient


@contextlib.contextmanager
def kube_servers(redis_url: str) -> Iterator[KubeBench]:
    root = Path(tempfile.mkdtemp(prefix="kubetask-bench-kube-"))
    kube = KubeApiServer().start()
    url = redis_url.rsplit("/", 1)[0] + "/13"
    api = ApiServer(
        redis_url=url,
        data_dir=root / "api",
        backend="kubernetes",
        kubeconfig=str(kube.kubeconfig(root / "kubeconfig")),
        keepalive_s=15,
        resync_s=30,
    )
    client = kube.api_client()
    try:
        api.start()
        yield KubeBench(kube, api, client)
    finally:
        api.close()
        client.close()  # type: ignore[no-untyped-call]
        kube.stop()
        shutil.rmtree(root, ignore_errors=True)


def _count_jobs(bench: KubeBench, labels: str) -> int:
    response: Any = k8s.BatchV1Api(bench.core).list_namespaced_job(
        NAMESPACE, label_selector=labels, _preload_content=False
    )
    return len(json.loads(response.data)["items"])


def _timed(threads: int, count: int, one: Callable[[int], None]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - start


def submissions(bench: KubeBench, count: int) -> tuple[float, float]:
    """(kubetask, raw) submissions per second."""
    tag = f"sub{time.monotonic_ns()}"

    def post(i: int) -> None:
        response = bench.api.client.post(
            "/v1/jobs", json={"kind": "noop", "labels": {"bench": tag}, "queue": "bench"}
        )
        assert response.status_code == 201, response.text

    start = time.perf_counter()
    _timed(THREADS, count, post)
    labels = f"{selector(ClusterSettings())},bench={tag}"
    while _count_jobs(bench, labels) < count:  # accepted -> created by the reconciler
        time.sleep(0.05)  # the test server shares this process: poll lightly
    ours = count / (time.perf_counter() - start)

    template = TaskSpec(
        job_id="0" * 16,
        kind="noop",
        image="kubetask/trainer:latest",
        command=("python", "-m", "jobs", "noop"),
        env={},
        retries=0,
        timeout_s=None,
        labels={"bench": f"raw{tag}"},
        queue="bench",
    )
    batch = k8s.BatchV1Api(bench.core)

    def create(i: int) -> None:
        manifest: Any = build_job(replace(template, job_id=f"raw{i:013d}"), ClusterSettings())
        batch.create_namespaced_job(NAMESPACE, manifest, _preload_content=False)

    raw = count / _timed(THREADS, count, create)
    return ours, raw


def _complete(bench: KubeBench, name: str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": t, "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now}
        for t in ("SuccessCriteriaMet", "Complete")
    ]
    k8s.BatchV1Api(bench.core).patch_namespaced_job_status(
        name,
        NAMESPACE,
        {
            "status": {
                "startTime": now,
                "completionTime": now,
                "succeeded": 1,
                "conditions": conditions,
            }
        },
        _preload_content=False,
    )


def status_lag(bench: KubeBench, count: int) -> tuple[list[float], list[float]]:
    """Milliseconds from the status write to the SSE state event, and to a raw watch."""
    ours: list[float] = []
    raw: list[float] = []
    for _ in range(count):
        job_id = bench.api.submit("noop", labels={"bench": "lag"})
        name = job_name(job_id)
        while _count_jobs(bench, f"kubetask.io/job-id={job_id}") == 0:
            time.sleep(0.005)
        seen: dict[str, float] = {}
        ready = threading.Barrier(3)

        def follow_sse(
            job_id: str = job_id, seen: dict[str, float] = seen, ready: threading.Barrier = ready
        ) -> None:
            events = read_sse(bench.api.client, f"/v1/jobs/{job_id}/events", {}, 60)
            ready.wait()
            for event in events:
                if event.get("state") == "succeeded":
                    seen["sse"] = time.perf_counter()
                    return

        def follow_watch(
            name: str = name, seen: dict[str, float] = seen, ready: threading.Barrier = ready
        ) -> None:
            api = k8s.BatchV1Api(bench.core)
            current: Any = api.read_namespaced_job(name, NAMESPACE, _preload_content=False)
            rv = json.loads(current.data)["metadata"]["resourceVersion"]
            stream: Any = api.list_namespaced_job(
                NAMESPACE,
                field_selector=f"metadata.name={name}",
                watch=True,
                resource_version=rv,
                timeout_seconds=30,
                _preload_content=False,
            )
            ready.wait()
            for line in stream:
                event = json.loads(line)
                conditions = event["object"].get("status", {}).get("conditions") or []
                if any(c["type"] == "Complete" for c in conditions):
                    seen["watch"] = time.perf_counter()
                    break
            stream.release_conn()

        threads = [threading.Thread(target=f) for f in (follow_sse, follow_watch)]
        for thread in threads:
            thread.start()
        ready.wait()
        time.sleep(0.05)  # both streams are open and past their history
        written = time.perf_counter()
        _complete(bench, name)
        for thread in threads:
            thread.join(30)
        ours.append((seen["sse"] - written) * 1000)
        raw.append((seen["watch"] - written) * 1000)
    return ours, raw


def run(bench: Bench, counts: Counts) -> Figure:
    submitted = 40 if counts.launches < 20 else 200
    lags = 10 if counts.launches < 20 else 30
    with kube_servers(bench.redis_url) as kube:
        ours_rate, raw_rate = submissions(kube, submitted)
        ours_lag, raw_lag = status_lag(kube, lags)
    return Figure(
        key="kube",
        title="Kubernetes backend (Kubernetes API test server)",
        kubetask=f"{THREADS} threads POST /v1/jobs until the Jobs exist; "
        "status write -> SSE state event",
        baseline=f"{THREADS} threads of raw create_namespaced_job; status write -> raw watch",
        rows=[
            Row(f"submissions ({submitted})", "jobs/s", ours_rate, raw_rate),
            Row(f"status lag p50 ({lags})", "ms", median(ours_lag), median(raw_lag)),
            Row(
                f"status lag p99 ({lags})", "ms", percentile(ours_lag, 99), percentile(raw_lag, 99)
            ),
        ],
        notes=[
            "kubetask's figure includes storing the record and the reconciler creating the Job "
            "and recording an Event on it (two API writes per job against the raw loop's one)",
            "the API server is the in-process test server, not a real kube-apiserver",
        ],
    )
