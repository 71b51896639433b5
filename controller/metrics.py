"""Prometheus metrics of one controller process (`GET /metrics`).

Counted as things happen (the hooks below are called by the API and the reconciler):
  kubetask_jobs_submitted_total{kind}                          jobs accepted (201)
  kubetask_submit_duration_seconds{kind}                       POST /v1/jobs, accepted
  kubetask_job_transitions_total{kind,from_state,to_state}     state changes (not a reason's
                                                               or a message's alone)
  kubetask_job_time_to_state_seconds{kind,state}               acceptance -> reaching the state
  kubetask_events_relayed_total{type}                          events relayed to streams
Read from the store at each scrape (so they are right after a restart, too; the store's
counts, one read whatever the number of jobs):
  kubetask_jobs{state,kind}                                    unfinished jobs
  kubetask_queue_depth{queue}                                  jobs waiting (state queued),
                                                               by Kueue queue ("" for none;
                                                               a drained one at 0 for 10 min)
  kubetask_store_up                                            1 when the store answered

The counters of every installed kind (and every allowed transition) are exposed at 0 from
the start: Prometheus takes a series' first sample as its baseline, so one that appeared
only at its first increment would hide that increment from `increase()` and `rate()`.
A scrape waits at most STORE_TIMEOUT_S for the store, well inside Prometheus' scrape
timeout (the chart's: 10 s), so that a store that hangs is reported down, not missed.

Each `Metrics` has a registry of its own (never the global one), so several apps in one
process, as in the tests, do not share counters.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter as Tally
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubetask.controller.clock import Clock, utcnow
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.states import ALLOWED
from kubetask.controller.store import Counted, Store
from kubetask.models import JobState

UNFINISHED = (JobState.QUEUED, JobState.PENDING, JobState.RUNNING)
SUBMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATE_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
READ_CONCURRENCY = 16
STORE_TIMEOUT_S = 3.0
QUEUE_LINGER_S = 600.0  # a queue that drained is reported at 0 this long, then no more
CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text exposition format


@dataclass(frozen=True)
class Snapshot:
    """What the store says at one scrape."""

    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, kind) -> count
    queued: dict[str, int] = field(default_factory=dict)  # queue -> jobs waiting
    store_up: bool = True


def snapshot_of(records: Iterable[JobRecord]) -> Snapshot:
    """Count unfinished jobs by state and kind, and waiting jobs by queue."""
    jobs: Tally[tuple[str, str]] = Tally()
    queued: Tally[str] = Tally()
    for record in records:
        state = record.status.state
        if state.terminal:
            continue
        jobs[(state.value, record.request.kind)] += 1
        if state is JobState.QUEUED:
            queued[record.request.queue or ""] += 1
    return Snapshot(jobs=dict(jobs), queued=dict(queued))


def time_to_state(record: JobRecord, status: JobStatus, now: datetime) -> float:
    """Seconds from acceptance until the job reached `status.state` (`now`, when it was
    seen: a retry's running, since `started_at` is the first task's start)."""
    reached = now
    if status.state.terminal and status.finished_at is not None:
        reached = status.finished_at
    elif (
        status.state is JobState.RUNNING
        and status.started_at is not None
        and record.status.started_at is None
    ):
        reached = status.started_at
    return max((reached - record.created_at).total_seconds(), 0.0)


def event_type(data: str) -> str:
    """`progress`, `state`, ... of a raw event from Redis; `unknown` if it is not JSON."""
    try:
        fields = json.loads(data)
    except ValueError:
        return "unknown"
    kind = fields.get("type") if isinstance(fields, dict) else None
    return kind if isinstance(kind, str) else "unknown"


class StoreGauges(Collector):
    """The scrape-time gauges, from the latest snapshot; every kind and unfinished state
    is reported (zeros included) so that series do not vanish."""

    def __init__(
        self, kinds: Collection[str], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kinds = tuple(kinds)
        self.snapshot = Snapshot()
        self._clock = clock
        self._queues: dict[str, float] = {}  # queue -> when it last had jobs waiting

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        jobs = GaugeMetricFamily(
            "kubetask_jobs", "Unfinished jobs by state and kind.", labels=["state", "kind"]
        )
        kinds = sorted({*self.kinds, *(kind for _, kind in snapshot.jobs)})
        for state in UNFINISHED:
            for kind in kinds:
                jobs.add_metric([state.value, kind], snapshot.jobs.get((state.value, kind), 0))
        yield jobs
        depth = GaugeMetricFamily(
            "kubetask_queue_depth",
            "Jobs waiting in state queued, by Kueue queue name ('' for none).",
            labels=["queue"],
        )
        for queue, count in sorted(self.queue_depths(snapshot.queued).items()):
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily(
            "kubetask_store_up",
            "1 when the job store answered at this scrape.",
            value=1 if snapshot.store_up else 0,
        )

    def queue_depths(self, queued: dict[str, int]) -> dict[str, int]:
        """Each queue's waiting jobs: one that drained shows 0 for QUEUE_LINGER_S (not
        nothing: a graph drops to 0), then goes, so that names tenants chose do not pile
        up as series; "" (no queue) always."""
        now = self._clock()
        self._queues.update({queue: now for queue, count in queued.items() if count})
        for queue, seen in list(self._queues.items()):
            if now - seen > QUEUE_LINGER_S:
                del self._queues[queue]
        return {"": 0, **dict.fromkeys(self._queues, 0), **queued}


class Metrics:
    """The process's metrics; `kinds` (the installed ones) are reported at 0 before any job."""

    def __init__(self, *, clock: Clock = utcnow, kinds: Collection[str] = ()) -> None:
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self._submitted = Counter(
            "kubetask_jobs_submitted",
            "Jobs accepted by POST /v1/jobs (idempotent replays not counted).",
            ["kind"],
            registry=self.registry,
        )
        self._submit_seconds = Histogram(
            "kubetask_submit_duration_seconds",
            "Seconds to accept a parsed job request: its checks and its durable record.",
            ["kind"],
            buckets=SUBMIT_BUCKETS,
            registry=self.registry,
        )
        self._transitions = Counter(
            "kubetask_job_transitions",
            "Job state transitions.",
            ["kind", "from_state", "to_state"],
            registry=self.registry,
        )
        self._time_to_state = Histogram(
            "kubetask_job_time_to_state_seconds",
            "Seconds from a job's acceptance until it reached the state.",
            ["kind", "state"],
            buckets=STATE_BUCKETS,
            registry=self.registry,
        )
        self._events = Counter(
            "kubetask_events_relayed",
            "Job events (progress, state) relayed from Redis to the controller's streams.",
            ["type"],
            registry=self.registry,
        )
        self._store = StoreGauges(kinds)
        self.registry.register(self._store)
        for kind in kinds:  # at 0 from the start (see the module's docstring)
            self._submitted.labels(kind)
            for old, allowed in ALLOWED.items():
                for new in allowed:
                    self._transitions.labels(kind, old.value, new.value)

    # -- hooks -------------------------------------------------------------------------------
    def observe_submit(self, kind: str, seconds: float, *, created: bool) -> None:
        """After POST /v1/jobs answered; a replay (`created` False) is not a submission."""
        if created:
            self._submitted.labels(kind).inc()
            self._submit_seconds.labels(kind).observe(seconds)

    async def observe_transition(self, record: JobRecord, status: JobStatus) -> None:
        """The reconciler's transition hook: `record` as read before, `status` as written
        (a new reason or message in the same state is no transition here)."""
        if status.state is record.status.state:
            return
        kind = record.request.kind
        self._transitions.labels(kind, record.status.state.value, status.state.value).inc()
        seconds = time_to_state(record, status, self._clock())
        self._time_to_state.labels(kind, status.state.value).observe(seconds)

    def observe_event(self, data: str) -> None:
        """One raw event the event hub received from Redis."""
        self._events.labels(event_type(data)).inc()

    # -- scrape ------------------------------------------------------------------------------
    async def refresh(self, store: Store) -> None:
        """Read the counts of unfinished jobs for the scrape-time gauges (a store that
        keeps none: the unfinished jobs themselves)."""
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                if isinstance(store, Counted):
                    counts = await store.counts()
                    self._store.snapshot = Snapshot(jobs=counts.jobs, queued=counts.queued)
                    return
                ids = await store.unfinished()
                gate = asyncio.Semaphore(READ_CONCURRENCY)

                async def read(job_id: str) -> JobRecord | None:
                    async with gate:
                        return await store.get(job_id)

                records = await asyncio.gather(*(read(job_id) for job_id in ids))
        except Exception:  # a scrape reports the store down; it never fails (nor waits long)
            self._store.snapshot = Snapshot(
                jobs=self._store.snapshot.jobs,
                queued=self._store.snapshot.queued,
                store_up=False,
            )
            return
        self._store.snapshot = snapshot_of(r for r in records if r is not None)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
