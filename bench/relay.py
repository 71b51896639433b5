"""Figure 1, progress relay: how fast and how promptly a task's progress events reach a client.

kubetask: a publisher process that reports progress exactly as a task does
(`ProgressReporter` -> `RedisPublisher` -> the event-log script: seq, history, latest,
PUBLISH) into the channel of a real job (a `noop` sleeping in its task process), received
by an SSE client on `GET /v1/jobs/{id}/events` through the API process.
Baseline: raw pub/sub between two processes: the same reporter (same events, same batching
into pipelined round trips) with plain PUBLISH as its sink, received by a redis-py
subscriber in this process. What differs is only what kubetask adds on the way: the
event-log script in Redis, the API's shared subscription and fan-out, SSE over HTTP.

Both are measured twice: a burst (as fast as the publisher goes: throughput, and latency
under that load) and paced at a fixed rate (latency with no backlog). Latency is the event's
own timestamp (taken in the publisher when the event is made) to the moment the receiver has
it parsed; both processes read the same machine clock.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from itertools import pairwise

import httpx
import redis

from bench.harness import (
    REPO_ROOT,
    Bench,
    Counts,
    Figure,
    Row,
    epoch,
    percentile,
    python_module,
    rounded,
)
from kubetask import keys
from tests.servers import read_sse

TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RelayRun:
    sent: int
    sent_at: list[float]  # each received event's own timestamp
    received_at: list[float]
    gaps: int = 0  # jumps in the stream's seq: events skipped without the client being told

    @property
    def delivered(self) -> int:
        return len(self.received_at)

    @property
    def latencies_ms(self) -> list[float]:
        return [(r - s) * 1000 for s, r in zip(self.sent_at, self.received_at, strict=True)]

    @property
    def throughput(self) -> float:
        """Events received per second, from the first event made to the last one received."""
        if not self.received_at:
            return 0.0
        return self.delivered / (max(self.received_at) - min(self.sent_at))

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def start_publisher(
    mode: str, *, redis_url: str, job_id: str, count: int, rate_hz: float
) -> subprocess.Popen[str]:
    """The publisher process, connected and waiting for its go (see bench.publisher)."""
    proc = subprocess.Popen(
        python_module("bench.publisher", mode, redis_url, job_id, str(count), str(rate_hz)),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the {mode} publisher did not start (exit {proc.wait()})")
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.close()


def relay_kubetask(bench: Bench, *, count: int, rate_hz: float) -> RelayRun:
    """Publish into a live job's channel, receive through the API's SSE stream."""
    api = bench.api
    job_id = api.submit("noop", {"steps": 1, "step_s": 3600})
    proc = start_publisher(
        "kubetask", redis_url=bench.redis_url, job_id=job_id, count=count, rate_hz=rate_hz
    )
    # Start once the job's own task process has settled into its sleep, so that its start-up
    # does not share the CPU with the measurement.
    api.wait(job_id, {"running"})
    marker = bench.artifacts() / job_id / "attempts-0"
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)

    def end_stream() -> None:
        """Once everything is published, cancel the job: its terminal event ends the stream
        after every progress event (it gets a later seq)."""
        proc.wait()
        httpx.delete(f"{api.base_url}/v1/jobs/{job_id}", timeout=30)

    ender = threading.Thread(target=end_stream, daemon=True)
    sent_at: list[float] = []
    received_at: list[float] = []
    seqs: list[int] = []
    started = False
    try:
        for event in read_sse(api.client, f"/v1/jobs/{job_id}/events", {}, TIMEOUT_S):
            now = time.time()
            seqs.append(event["seq"])
            if event["type"] == "progress":
                received_at.append(now)
                sent_at.append(epoch(event["timestamp"]))
            if not started:
                # The first event (from the history) means the stream's live listener is in
                # place: the publisher may go.
                go(proc)
                ender.start()
                started = True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if started:
        ender.join(TIMEOUT_S)
    api.wait(job_id)
    gaps = sum(1 for a, b in pairwise(seqs) if b != a + 1)
    return RelayRun(sent=count, sent_at=sent_at, received_at=received_at, gaps=gaps)


def relay_raw(bench: Bench, *, count: int, rate_hz: float, job_id: str) -> RelayRun:
    """The baseline: plain PUBLISH, plain SUBSCRIBE, the same messages."""
    client = redis.Redis.from_url(bench.redis_url)
    pubsub = redis.client.PubSub(client.connection_pool)
    channel = keys.progress_channel(job_id)
    sent_at: list[float] = []
    received_at: list[float] = []
    proc: subprocess.Popen[str] | None = None
    try:
        pubsub.subscribe(channel)
        confirmed = pubsub.get_message(timeout=10)
        if confirmed is None or confirmed["type"] != "subscribe":
            raise RuntimeError(f"no subscribe confirmation: {confirmed!r}")
        proc = start_publisher(
            "raw", redis_url=bench.redis_url, job_id=job_id, count=count, rate_hz=rate_hz
        )
        go(proc)
        quiet = 0
        while len(received_at) < count and quiet < 2:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                quiet += proc.poll() is not None  # publisher gone and nothing more comes
                continue
            if message["type"] == "message":
                event = json.loads(message["data"])
                received_at.append(time.time())
                sent_at.append(epoch(event["timestamp"]))
        proc.wait(TIMEOUT_S)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        pubsub.close()
        client.close()
    return RelayRun(sent=count, sent_at=sent_at, received_at=received_at)


def run(bench: Bench, counts: Counts) -> Figure:
    # warm-up: the first stream and the first script load in each process cost extra
    relay_raw(bench, count=50, rate_hz=0, job_id="bench-raw-warmup")
    relay_kubetask(bench, count=50, rate_hz=0)

    burst_raw = relay_raw(bench, count=counts.relay_burst, rate_hz=0, job_id="bench-raw-burst")
    burst_kt = relay_kubetask(bench, count=counts.relay_burst, rate_hz=0)
    rate = counts.relay_rate_hz
    paced_raw = relay_raw(bench, count=counts.relay_paced, rate_hz=rate, job_id="bench-raw-paced")
    paced_kt = relay_kubetask(bench, count=counts.relay_paced, rate_hz=rate)

    burst, paced = counts.relay_burst, counts.relay_paced
    rows = [
        Row(f"burst of {burst}: throughput", "msgs/s", burst_kt.throughput, burst_raw.throughput),
        Row(f"burst of {burst}: latency p50", "ms", burst_kt.p(50), burst_raw.p(50)),
        Row(f"burst of {burst}: latency p99", "ms", burst_kt.p(99), burst_raw.p(99)),
        Row(f"burst of {burst}: delivered", "events", burst_kt.delivered, burst_raw.delivered),
        Row(f"{paced} at {rate:g}/s: latency p50", "ms", paced_kt.p(50), paced_raw.p(50)),
        Row(f"{paced} at {rate:g}/s: latency p99", "ms", paced_kt.p(99), paced_raw.p(99)),
        Row(f"{paced} at {rate:g}/s: delivered", "events", paced_kt.delivered, paced_raw.delivered),
    ]
    notes = []
    for name, result in (
        ("kubetask burst", burst_kt),
        ("kubetask paced", paced_kt),
        ("baseline burst", burst_raw),
        ("baseline paced", paced_raw),
    ):
        if result.delivered != result.sent:
            lost = f"{name}: {result.sent - result.delivered} of {result.sent} events lost"
            if result.gaps:
                lost += f", in {result.gaps} jump(s) of the stream's seq (no sign to the client)"
            notes.append(lost)
    return Figure(
        key="relay",
        title="Progress relay: task process -> client",
        kubetask="ProgressReporter+RedisPublisher (event log) -> API -> SSE client",
        baseline="ProgressReporter+plain PUBLISH -> redis-py SUBSCRIBE (2 processes)",
        rows=rows,
        notes=notes,
        raw={
            f"{side}_{mode}_latency_ms": rounded(result.latencies_ms, 3)
            for side, mode, result in (
                ("kubetask", "burst", burst_kt),
                ("baseline", "burst", burst_raw),
                ("kubetask", "paced", paced_kt),
                ("baseline", "paced", paced_raw),
            )
        },
    )
