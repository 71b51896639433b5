"""The kubernetes backend's cost against the size of its queue, on the real control plane:
with 10 jobs queued (the baseline) and with N (2,000; 10,000 with `--full`), each a Job held
by its spec (`suspend: true`, as for a queue), once the control plane has settled:

- one client's submission latency (POST /v1/jobs -> 201), spread over a resync period;
- the API process's CPU in one idle resync period (its reconciler looks at every unfinished
  job each `resync_s`: work that grows with the queue, on purpose, so that nothing depends
  on a change having been seen);
- its resident memory (the informers' cache holds every Job).

A noop job submitted right after the N queued ones says how long the Job controller took to
come to its Job: it marks each suspended Job `Suspended` (one status write each, at
kube-controller-manager's default client rate of 20 writes/s) in the order they came, before
it makes the pod of a Job created after them. That is the control plane's figure, not
kubetask's: the Job itself was created at once.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s

from bench.harness import Bench, Counts, Figure, Row, cpu_s, percentile, resident_mib, rounded
from bench.kube import (
    NAMESPACE,
    RESYNC_S,
    THREADS,
    KubeBench,
    all_marked,
    kube_servers,
    settle,
)
from kubetask.controller.manifests import job_name

POSTS = 100  # one client, spread over a resync period, per measurement
QUEUED = {"kind": "noop", "queue": "bench", "labels": {"bench": "queued"}}


def _queue(bench: KubeBench, count: int) -> None:
    def post(i: int) -> None:
        response = bench.api.client.post("/v1/jobs", json=QUEUED)
        assert response.status_code == 201, response.text

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(post, range(count)))


def _measure(bench: KubeBench) -> tuple[list[float], float, float]:
    """(submission latencies in ms, the API's CPU ms in one idle resync period, its RSS).
    The submissions are spread over one resync period (so some meet the resync, as a
    user's would), and queued too: each measurement adds POSTS to the queue."""
    latencies = []
    for _ in range(POSTS):
        began = time.perf_counter()
        response = bench.api.client.post("/v1/jobs", json=QUEUED)
        latencies.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 201, response.text
        time.sleep(max(0.0, RESYNC_S / POSTS - (time.perf_counter() - began)))
    assert bench.api.process is not None
    pid = bench.api.process.pid
    time.sleep(2)  # the last submissions' Jobs and Events
    before = cpu_s(pid)
    time.sleep(RESYNC_S)
    return latencies, (cpu_s(pid) - before) * 1000, resident_mib(pid)


def _probe_s(bench: KubeBench) -> tuple[float, float]:
    """(seconds until its Job existed, until its pod was made) for a noop job submitted now."""
    batch: Any = k8s.BatchV1Api(bench.core)
    submitted = time.time()
    job_id = bench.api.submit("noop", {})
    name = job_name(job_id)
    while not batch.list_namespaced_job(NAMESPACE, field_selector=f"metadata.name={name}").items:
        time.sleep(0.05)
    created = time.time() - submitted
    bench.api.wait(job_id, timeout_s=3600)
    pods: Any = k8s.CoreV1Api(bench.core).list_namespaced_pod(
        NAMESPACE, label_selector=f"job-name={name}"
    )
    pod_made = min(p.metadata.creation_timestamp.timestamp() for p in pods.items)
    return created, pod_made - submitted  # the pod's time is in whole seconds


def run(bench: Bench, counts: Counts) -> Figure:
    queued = 500 if counts.launches < 20 else 10 * counts.burst  # 2,000; 10,000 with --full
    with kube_servers(bench.redis_url) as kube:
        _queue(kube, 10)
        settle(lambda: all_marked(kube, "bench=queued", 10))
        small_latency, small_cpu, small_rss = _measure(kube)
        _queue(kube, queued - 10 - POSTS)
        job_s, pod_s = _probe_s(kube)  # waits for the Job controller to come to it
        settle(lambda: all_marked(kube, "bench=queued", queued), timeout_s=3600)
        big_latency, big_cpu, big_rss = _measure(kube)
    return Figure(
        key="kube-queue",
        title="Kubernetes backend against its queue (real control plane)",
        kubetask=f"{queued:,} jobs queued (suspended Jobs), the control plane settled",
        baseline="10 jobs queued",
        rows=[
            Row(
                f"submission p50 ({POSTS} in {RESYNC_S} s)",
                "ms",
                statistics.median(big_latency),
                statistics.median(small_latency),
            ),
            Row(
                "submission p99",
                "ms",
                percentile(big_latency, 99),
                percentile(small_latency, 99),
            ),
            Row(f"API CPU per idle resync ({RESYNC_S} s)", "ms", big_cpu, small_cpu),
            Row("API resident memory", "MiB", big_rss, small_rss),
        ],
        notes=[
            f"a noop job submitted right after the {queued:,}: its Job existed after "
            f"{job_s:.2f} s, its pod after {pod_s:.0f} s (the Job controller marks each "
            "suspended Job first, one status write each at kube-controller-manager's default "
            "20 writes/s)",
            "the resync period's CPU is the reconciler looking at every unfinished job (its "
            "record in Redis, its Job in the informers' cache)",
        ],
        raw={
            "latency_ms_queued": rounded(big_latency, 2),
            "latency_ms_baseline": rounded(small_latency, 2),
        },
    )
