"""`GET /metrics` (api/routers/metrics.py, controller/metrics.py): the Prometheus text format,
jobs by state and kind read from a real Redis store, the hooks' counters and histograms,
and the Grafana dashboard shipped with the chart asking only for metrics that exist."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from kubetask.api.deps import get_runtime
from kubetask.api.routers import metrics as metrics_router
from kubetask.controller import metrics as metrics_module
from kubetask.controller.metrics import (
    QUEUE_LINGER_S,
    Metrics,
    StoreGauges,
    event_type,
    snapshot_of,
    time_to_state,
)
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.redis_server import RedisServer
from kubetask.controller.retention import ArtifactJanitor
from kubetask.controller.store import RedisStore
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest, JobState
from kubetask.storage import FileStore
from tests.component.chart import CHART
from tests.servers import ApiServer, own_database

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def record(
    job_id: str, kind: str, state: JobState = JobState.QUEUED, queue: str | None = None
) -> JobRecord:
    return JobRecord(
        id=job_id,
        request=JobRequest(kind=kind, queue=queue),
        created_at=NOW,
        status=JobStatus(state=state),
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from the text format."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


@dataclass
class FakeStore:
    records: dict[str, JobRecord]
    fail: bool = False

    async def unfinished(self) -> list[str]:
        if self.fail:
            raise ConnectionError("redis is down")
        return sorted(i for i, r in self.records.items() if not r.status.state.terminal)

    async def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)


@dataclass
class FakeRuntime:
    store: FakeStore


def test_unfinished_jobs_are_counted_by_state_kind_and_queue() -> None:
    snapshot = snapshot_of(
        [
            record("a", "datagen"),
            record("b", "datagen", queue="team-a"),
            record("c", "train", JobState.RUNNING),
            record("d", "train", JobState.SUCCEEDED),
        ]
    )
    assert snapshot.jobs == {("queued", "datagen"): 2, ("running", "train"): 1}
    assert snapshot.queued == {"": 1, "team-a": 1}


def test_time_to_state_uses_the_moment_the_state_was_reached() -> None:
    job = record("a", "train")
    started = JobStatus(state=JobState.RUNNING, started_at=NOW + timedelta(seconds=7))
    assert time_to_state(job, started, NOW + timedelta(minutes=5)) == 7
    done = JobStatus(state=JobState.SUCCEEDED, finished_at=NOW + timedelta(seconds=90))
    assert time_to_state(job, done, NOW + timedelta(minutes=5)) == 90
    pending = JobStatus(state=JobState.PENDING)
    assert time_to_state(job, pending, NOW + timedelta(seconds=2)) == 2
    assert time_to_state(job, pending, NOW - timedelta(seconds=2)) == 0


def test_event_types_are_read_from_the_raw_events() -> None:
    assert event_type('{"type":"progress","seq":3}') == "progress"
    assert event_type('{"type": "state", "state": "running"}') == "state"
    assert event_type("not json") == "unknown"
    assert event_type("[1, 2]") == "unknown"


def test_the_hooks_count_submissions_transitions_and_events() -> None:
    metrics = Metrics(clock=lambda: NOW + timedelta(seconds=3))
    metrics.observe_submit("datagen", 0.012, created=True)
    metrics.observe_submit("datagen", 0.001, created=False)  # an idempotent replay
    job = record("a", "datagen")
    asyncio.run(metrics.observe_transition(job, JobStatus(state=JobState.PENDING)))
    metrics.observe_event('{"type":"progress"}')
    metrics.observe_event('{"type":"progress"}')
    text = metrics.exposition().decode()
    assert value(text, "kubetask_jobs_submitted_total", kind="datagen") == 1
    assert value(text, "kubetask_submit_duration_seconds_count", kind="datagen") == 1
    assert value(text, "kubetask_submit_duration_seconds_sum", kind="datagen") == 0.012
    assert (
        value(
            text,
            "kubetask_job_transitions_total",
            kind="datagen",
            from_state="queued",
            to_state="pending",
        )
        == 1
    )
    assert (
        value(text, "kubetask_job_time_to_state_seconds_sum", kind="datagen", state="pending") == 3
    )
    assert value(text, "kubetask_events_relayed_total", type="progress") == 2


def test_every_kind_and_unfinished_state_is_reported_even_at_zero() -> None:
    text = Metrics(kinds=("datagen", "train")).exposition().decode()
    for state in ("queued", "pending", "running"):
        for kind in ("datagen", "train"):
            assert value(text, "kubetask_jobs", state=state, kind=kind) == 0
    assert value(text, "kubetask_queue_depth", queue="") == 0
    assert value(text, "kubetask_store_up") == 1


def test_the_counters_start_at_zero_so_that_the_first_increment_counts() -> None:
    """Prometheus takes a series' first sample as its baseline: a counter that appeared at 1
    would hide its first job from `increase()`."""
    text = Metrics(kinds=("datagen", "train")).exposition().decode()
    for kind in ("datagen", "train"):
        assert value(text, "kubetask_jobs_submitted_total", kind=kind) == 0
        for old, new in (("queued", "pending"), ("running", "failed"), ("pending", "cancelled")):
            labels = {"kind": kind, "from_state": old, "to_state": new}
            assert value(text, "kubetask_job_transitions_total", **labels) == 0
    assert not any(("from_state", "succeeded") in labels for _, labels in samples(text))


def test_a_new_reason_or_message_in_the_same_state_is_no_transition() -> None:
    metrics = Metrics(clock=lambda: NOW + timedelta(seconds=3), kinds=("noop",))
    job = record("a", "noop")
    suspended = JobStatus(state=JobState.QUEUED, reason="Suspended", message="no slot free")
    asyncio.run(metrics.observe_transition(job, suspended))
    text = metrics.exposition().decode()
    same = {"kind": "noop", "from_state": "queued", "to_state": "queued"}
    assert ("kubetask_job_transitions_total", tuple(sorted(same.items()))) not in samples(text)
    count = "kubetask_job_time_to_state_seconds_count"
    assert (count, (("kind", "noop"), ("state", "queued"))) not in samples(text)


def test_a_retry_reaches_running_when_it_is_seen_not_at_the_first_start() -> None:
    first = JobStatus(state=JobState.RUNNING, started_at=NOW + timedelta(seconds=1))
    retrying = record("a", "noop").model_copy(
        update={"status": JobStatus(state=JobState.PENDING, started_at=first.started_at)}
    )
    again = JobStatus(state=JobState.RUNNING, started_at=first.started_at)
    assert time_to_state(retrying, again, NOW + timedelta(seconds=9)) == 9


def test_a_queue_that_drained_shows_zero_for_a_while_then_goes() -> None:
    """A graph drops to 0 rather than end; names tenants chose do not pile up as series."""
    now = [0.0]
    collector = StoreGauges((), clock=lambda: now[0])
    assert collector.queue_depths({"team-a": 2}) == {"": 0, "team-a": 2}
    now[0] = 60
    assert collector.queue_depths({}) == {"": 0, "team-a": 0}
    now[0] = 60 + QUEUE_LINGER_S
    assert collector.queue_depths({"team-b": 1}) == {"": 0, "team-b": 1}


def test_a_store_that_hangs_is_reported_down_within_the_scrape_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prometheus gives up on a scrape after its timeout (the chart's: 10 s, as long as a
    Redis command may wait): a scrape waits less for the store, and says it is down."""

    class Hanging(FakeStore):
        async def unfinished(self) -> list[str]:
            await asyncio.sleep(3600)
            return []

    monkeypatch.setattr(metrics_module, "STORE_TIMEOUT_S", 0.2)
    metrics = Metrics()
    began = time.monotonic()
    asyncio.run(metrics.refresh(Hanging({})))  # type: ignore[arg-type]
    assert time.monotonic() - began < 2
    assert value(metrics.exposition().decode(), "kubetask_store_up") == 0
    assert metrics_module.STORE_TIMEOUT_S < 10 / 2  # well inside the chart's scrape timeout


def metrics_app(store: FakeStore) -> FastAPI:
    """An app with only the metrics router, its runtime a fake with the given store."""
    app = FastAPI()
    app.include_router(metrics_router.router)
    app.dependency_overrides[get_runtime] = lambda: FakeRuntime(store)
    return app


def get(app: FastAPI, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(call())


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(
        {
            "a": record("a", "datagen"),
            "b": record("b", "hpo", JobState.RUNNING),
            "c": record("c", "hpo", JobState.RUNNING),
            "d": record("d", "noop", queue="team-a"),
            "e": record("e", "noop", JobState.FAILED),
        }
    )


def test_get_metrics_serves_the_text_format(store: FakeStore) -> None:
    app = metrics_app(store)
    response = get(app, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    assert value(text, "kubetask_jobs", state="running", kind="hpo") == 2
    assert value(text, "kubetask_jobs", state="queued", kind="datagen") == 1
    assert value(text, "kubetask_jobs", state="queued", kind="noop") == 1
    assert value(text, "kubetask_queue_depth", queue="") == 1
    assert value(text, "kubetask_queue_depth", queue="team-a") == 1
    assert value(text, "kubetask_store_up") == 1
    store.fail = True
    down = get(app, "/metrics")
    assert down.status_code == 200
    assert value(down.text, "kubetask_store_up") == 0
    assert value(down.text, "kubetask_jobs", state="running", kind="hpo") == 2  # last known


def test_the_app_state_metrics_are_the_ones_served(store: FakeStore) -> None:
    app = metrics_app(store)
    app.state.metrics = Metrics()
    app.state.metrics.observe_submit("train", 0.5, created=True)
    text = get(app, "/metrics").text
    assert value(text, "kubetask_jobs_submitted_total", kind="train") == 1
    assert "/metrics" in get(app, "/openapi.json").json()["paths"]


def test_jobs_are_read_from_a_real_redis_store(redis_server: RedisServer) -> None:
    url = own_database(redis_server.url)

    async def scenario() -> str:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            await client.flushdb()
            store = RedisStore(client, retention_s=3600, idempotency_ttl_s=3600)
            for job in (record("j1", "datagen"), record("j2", "train", queue="gpu")):
                await store.create(job, idempotency_key=None, fingerprint=job.id)
            running = record("j3", "train")
            await store.create(running, idempotency_key=None, fingerprint="j3")
            await store.save_status(
                running, JobStatus(state=JobState.RUNNING, started_at=NOW), at=NOW
            )
            finished = record("j4", "noop")
            await store.create(finished, idempotency_key=None, fingerprint="j4")
            await store.save_status(finished, JobStatus(state=JobState.SUCCEEDED), at=NOW)
            metrics = Metrics(kinds=tuple(load_kinds()))  # as the app makes it
            await metrics.refresh(store)
            return metrics.exposition().decode()
        finally:
            await client.flushdb()
            await client.aclose()

    text = asyncio.run(scenario())
    assert value(text, "kubetask_jobs", state="queued", kind="datagen") == 1
    assert value(text, "kubetask_jobs", state="queued", kind="train") == 1
    assert value(text, "kubetask_jobs", state="running", kind="train") == 1
    assert value(text, "kubetask_jobs", state="queued", kind="noop") == 0
    assert value(text, "kubetask_queue_depth", queue="gpu") == 1


def exported_names() -> set[str]:
    names: set[str] = set()
    registry = Metrics().registry  # with the janitor's counter, as the app has it
    ArtifactJanitor(store=FileStore(Path(tempfile.gettempdir())), registry=registry)
    for family in registry.collect():
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
        }.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_the_dashboard_asks_only_for_metrics_that_exist() -> None:
    dashboard = json.loads((CHART / "files/dashboards/kubetask.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for e in exprs + queries for name in re.findall(r"kubetask_[a-z_]+", e)}
    assert used
    assert used <= exported_names(), used - exported_names()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for expr in exprs:  # every replica reports the store's counts: one of them, not their sum
        if re.search(r"kubetask_(jobs|queue_depth)\{", expr):
            assert re.search(r"max by \(namespace, service, [a-z, ]+\) \(kubetask_", expr), expr
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_running_api_counts_a_job_from_submit_to_success(api: ApiServer) -> None:
    """The real server process: the hooks in the API, the reconciler and the event hub."""
    if api.client.get("/metrics").status_code == 404:
        pytest.skip("GET /metrics is not included in api/app.py yet")
    job_id = api.submit("noop", {"steps": 3})
    assert api.wait(job_id)["state"] == "succeeded"
    deadline = time.monotonic() + 10
    while True:
        text = api.client.get("/metrics").text
        found = samples(text)
        done = (
            "kubetask_job_transitions_total",
            (("from_state", "running"), ("kind", "noop"), ("to_state", "succeeded")),
        )
        if found.get(done, 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found.get(done, 0) >= 1, text
    assert value(text, "kubetask_jobs_submitted_total", kind="noop") >= 1
    assert value(text, "kubetask_submit_duration_seconds_count", kind="noop") >= 1
    assert (
        value(text, "kubetask_job_time_to_state_seconds_count", kind="noop", state="running") >= 1
    )
    assert value(text, "kubetask_events_relayed_total", type="progress") >= 1
    assert value(text, "kubetask_store_up") == 1


def test_the_running_api_reports_every_installed_kind(api: ApiServer) -> None:
    """The app's metrics know the installed kinds (entry points): each is reported, at 0
    when it has no unfinished job."""
    reported = {
        dict(labels)["kind"]
        for name, labels in samples(api.client.get("/metrics").text)
        if name == "kubetask_jobs"
    }
    assert reported >= set(load_kinds())
