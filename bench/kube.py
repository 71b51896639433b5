"""Figures for the kubernetes backend, against the real control plane (tests/cluster: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and the process node agent, started
for this figure), kubetask installed in a namespace of its own as the chart's ServiceAccount.

1. Submissions: N requests over REST until N Jobs exist in the API server, against a raw
   `create_namespaced_job` loop of the same Jobs (as the same ServiceAccount), both with the
   same number of threads, in paired rounds (the median and the spread of the ratios). The
   Jobs wait in a queue (created suspended): no pod runs.
2. Status lag: a noop Job runs; from the Job controller's status write that makes it
   successful (its time from the API server's audit log) until an SSE client receives the
   `succeeded` state event, against a raw watch client seeing the same status change.
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
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from bench.harness import Bench, Counts, Figure, Row, median, percentile, rounded
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.manifests import ClusterSettings, build_job, job_name, selector
from tests.cluster.bootstrap import Installation, install
from tests.cluster.control_plane import ControlPlane
from tests.servers import ApiServer, read_sse

THREADS = 8
NAMESPACE = "kubetask-bench"
RESYNC_S = 30  # the API's resync period here (its default)
SUCCESS = ("SuccessCriteriaMet", "Complete")  # either one: kubetask's `succeeded`


@dataclass
class KubeBench:
    plane: ControlPlane
    installation: Installation
    api: ApiServer
    core: k8s.ApiClient  # the controller's ServiceAccount, as kubetask's controller calls


def _client(kubeconfig: Path) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = THREADS + 2
    return k8s.ApiClient(configuration)


@contextlib.contextmanager
def kube_servers(redis_url: str) -> Iterator[KubeBench]:
    root = Path(tempfile.mkdtemp(prefix="kubetask-bench-kube-"))
    plane = ControlPlane(root / "cluster").start()
    client: k8s.ApiClient | None = None
    api: ApiServer | None = None
    try:
        installation = install(
            plane,
            namespace=NAMESPACE,
            folder=root / "install",
            artifacts=root / "api" / "artifacts",
        )
        api = ApiServer(
            redis_url=redis_url.rsplit("/", 1)[0] + "/13",
            data_dir=root / "api",
            backend="kubernetes",
            kubeconfig=str(installation.kubeconfig),
            namespace=NAMESPACE,
            keepalive_s=15,
            resync_s=RESYNC_S,
            max_submits_per_minute=100_000,  # rounds of a few hundred POSTs in a minute
            max_active_jobs_per_tenant=100_000,  # each round's Jobs stay queued
        )
        client = _client(installation.kubeconfig)
        api.start()
        yield KubeBench(plane, installation, api, client)
    finally:
        if api is not None:
            api.close()
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]
        plane.stop()
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


class _Arrivals:
    """Waits for `count` Jobs with `labels` to exist, told by one watch: the observer costs
    the API server one event per Job (polling with a LIST would cost it, and this process,
    every Job so far on each poll, billed to the side being measured)."""

    def __init__(self, bench: KubeBench, labels: str, count: int) -> None:
        api: Any = k8s.BatchV1Api(bench.core)
        self._stream = api.list_namespaced_job(  # no resourceVersion: those that exist, then new
            NAMESPACE,
            label_selector=labels,
            watch=True,
            timeout_seconds=300,
            _preload_content=False,
        )
        self._count = count
        self._all_there = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        arrived = 0
        for line in self._stream:
            arrived += line.startswith(b'{"type":"ADDED"')
            if arrived >= self._count:
                self._all_there.set()
                break
        self._stream.release_conn()

    def wait(self, timeout_s: float) -> None:
        if not self._all_there.wait(timeout_s):
            raise TimeoutError(f"{self._count} Jobs not all created in {timeout_s} s")
        self._thread.join()


def _queued_events(bench: KubeBench) -> int:
    """How many of kubetask's Events say a job is queued (one per job of the rounds)."""
    response: Any = k8s.CoreV1Api(bench.core).list_namespaced_event(
        NAMESPACE, field_selector="reason=Queued", _preload_content=False
    )
    return len(json.loads(response.data)["items"])


def all_marked(bench: KubeBench, labels: str, count: int) -> bool:
    """Whether the Job controller has marked all `count` Jobs with `labels` Suspended."""
    response: Any = k8s.BatchV1Api(bench.core).list_namespaced_job(
        NAMESPACE, label_selector=labels, _preload_content=False
    )
    marked = [
        job
        for job in json.loads(response.data)["items"]
        if any(c["type"] == "Suspended" for c in job.get("status", {}).get("conditions") or [])
    ]
    return len(marked) >= count


def settle(done: Callable[[], bool], timeout_s: float = 120) -> None:
    """Wait until `done()`: after a side's measured window, for the work its Jobs still
    cause (the Job controller marking them Suspended, kubetask's Events), which done in the
    other side's window would be billed to it; before a measurement, for a quiet plane."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the control plane did not settle in {timeout_s} s")
        time.sleep(1.0)  # each look LISTs the round's Jobs: not too often


def _submitted(bench: KubeBench, count: int) -> float:
    """kubetask's submissions per second: `count` POSTs until their Jobs exist."""
    tag = f"sub{time.monotonic_ns()}"
    labels = f"{selector(ClusterSettings())},bench={tag}"
    events_before = _queued_events(bench)
    arrivals = _Arrivals(bench, labels, count)

    def post(i: int) -> None:
        response = bench.api.client.post(
            "/v1/jobs", json={"kind": "noop", "labels": {"bench": tag}, "queue": "bench"}
        )
        assert response.status_code == 201, response.text

    start = time.perf_counter()
    _timed(THREADS, count, post)
    arrivals.wait(timeout_s=120)  # accepted -> created by the reconciler
    rate = count / (time.perf_counter() - start)
    settle(
        lambda: all_marked(bench, labels, count) and _queued_events(bench) >= events_before + count
    )
    return rate


def _created(bench: KubeBench, count: int, round_: int) -> float:
    """The raw loop's creates per second (Jobs named for the round: each round makes new
    ones)."""
    tag = f"sub{time.monotonic_ns()}"
    template = TaskSpec(
        job_id="0" * 16,
        kind="noop",
        image="kubetask/trainer:latest",
        command=("python", "-m", "kubetask.jobs", "noop"),
        env={},
        retries=0,
        timeout_s=None,
        labels={"bench": f"raw{tag}"},
        queue="bench",
    )
    batch: Any = k8s.BatchV1Api(bench.core)
    # the same Jobs, of another installation: kubetask's informers do not watch them (its
    # controller would spend CPU on every one, the raw loop's time)
    cluster = ClusterSettings(namespace=NAMESPACE, instance="raw")

    def create(i: int) -> None:
        manifest = build_job(replace(template, job_id=f"raw{round_:03d}{i:010d}"), cluster)
        batch.create_namespaced_job(NAMESPACE, manifest, _preload_content=False)

    rate = count / _timed(THREADS, count, create)
    settle(lambda: all_marked(bench, f"{selector(cluster)},bench=raw{tag}", count))
    return rate


def submissions(bench: KubeBench, count: int, rounds: int) -> tuple[list[float], list[float]]:
    """(kubetask, raw) submissions per second in each round; the two sides take turns
    going first, so that a busy spell of the machine falls on both."""
    ours: list[float] = []
    raw: list[float] = []
    for round_ in range(rounds):
        if round_ % 2 == 0:
            ours.append(_submitted(bench, count))
            raw.append(_created(bench, count, round_))
        else:
            raw.append(_created(bench, count, round_))
            ours.append(_submitted(bench, count))
    return ours, raw


def _status_written(bench: KubeBench, name: str, seen: float) -> float:
    """When the API server received the last status write of Job `name` before `seen`
    (epoch seconds): the write that made it successful, as the raw watch saw it."""
    writes = [
        r.at
        for r in bench.plane.requests()
        if r.resource == "jobs/status"
        and r.namespace == NAMESPACE
        and r.name == name
        and r.verb in ("update", "patch")
        and r.at <= seen
    ]
    return max(writes)


def _one_lag(bench: KubeBench) -> tuple[float, float]:
    """(SSE, raw watch) milliseconds after the success status write, for one noop Job."""
    job_id = bench.api.submit("noop", {"steps": 4, "step_s": 0.25}, labels={"bench": "lag"})
    name = job_name(job_id)
    while _count_jobs(bench, f"kubetask.io/job-id={job_id}") == 0:
        time.sleep(0.005)
    seen: dict[str, float] = {}
    ready = threading.Barrier(3)

    def follow_sse() -> None:
        events = read_sse(bench.api.client, f"/v1/jobs/{job_id}/events", {}, 60)
        ready.wait()
        for event in events:
            if event.get("state") == "succeeded":
                seen["sse"] = time.time()
                return

    def follow_watch() -> None:
        api: Any = k8s.BatchV1Api(bench.core)
        current = api.read_namespaced_job(name, NAMESPACE, _preload_content=False)
        rv = json.loads(current.data)["metadata"]["resourceVersion"]
        stream = api.list_namespaced_job(
            NAMESPACE,
            field_selector=f"metadata.name={name}",
            watch=True,
            resource_version=rv,
            timeout_seconds=60,
            _preload_content=False,
        )
        ready.wait()
        for line in stream:
            event = json.loads(line)
            conditions = event["object"].get("status", {}).get("conditions") or []
            if any(c["type"] in SUCCESS and c["status"] == "True" for c in conditions):
                seen["watch"] = time.time()
                break
        stream.release_conn()

    threads = [threading.Thread(target=f) for f in (follow_sse, follow_watch)]
    for thread in threads:
        thread.start()
    ready.wait()  # both streams are open before the task can finish (it runs about 1 s)
    for thread in threads:
        thread.join(60)
    written = _status_written(bench, name, seen["watch"])
    return (seen["sse"] - written) * 1000, (seen["watch"] - written) * 1000


def status_lag(bench: KubeBench, count: int) -> tuple[list[float], list[float]]:
    """Milliseconds from the success status write to the SSE state event, and to a raw
    watch."""
    ours: list[float] = []
    raw: list[float] = []
    for _ in range(count):
        sse, watch = _one_lag(bench)
        ours.append(sse)
        raw.append(watch)
    return ours, raw


def run(bench: Bench, counts: Counts) -> Figure:
    submitted = 40 if counts.launches < 20 else 200
    rounds = 2 if counts.launches < 20 else 3
    lags = 10 if counts.launches < 20 else 30
    with kube_servers(bench.redis_url) as kube:
        ours_lag, raw_lag = status_lag(kube, lags)  # first: before the rounds' queued Jobs
        ours_rates, raw_rates = submissions(kube, submitted, rounds)
    ratios = [o / r for o, r in zip(ours_rates, raw_rates, strict=True)]
    return Figure(
        key="kube",
        title="Kubernetes backend (real control plane, process node agent)",
        kubetask=f"{THREADS} threads POST /v1/jobs until the Jobs exist; "
        "Job controller's success status write -> SSE state event",
        baseline=f"{THREADS} threads of raw create_namespaced_job; "
        "the same status write -> raw watch",
        rows=[
            Row(
                f"submissions ({submitted}), median of {rounds}",
                "jobs/s",
                median(ours_rates),
                median(raw_rates),
            ),
            Row("submissions, median paired ratio", "x", median(ratios), 1.0),
            Row(f"status lag p50 ({lags})", "ms", median(ours_lag), median(raw_lag)),
            Row(
                f"status lag p99 ({lags})", "ms", percentile(ours_lag, 99), percentile(raw_lag, 99)
            ),
        ],
        notes=[
            f"submissions, paired ratio per round: min {min(ratios):.2f}, max {max(ratios):.2f}",
            "kubetask's figure includes storing the record and the reconciler creating the Job "
            "(one API write per job, as the raw loop; the Event of each transition is written "
            "in the background, letting Job creates go first)",
            "both sides authenticate as the chart's ServiceAccount (a TokenRequest token)",
            "the status write's time is when kube-apiserver received it (its audit log); the "
            "control plane, the node agent and both clients share this machine's CPUs",
        ],
        raw={
            "submissions_kubetask": rounded(ours_rates, 1),
            "submissions_baseline": rounded(raw_rates, 1),
        },
    )
