"""Celery beside kubetask, in the same run, on the same Redis server (issue 16, item 6).

Celery: `celery[redis]` (CELERY_PIN) in a virtualenv of its own (bench/out/celery-venv,
made on first use and reused), a prefork worker with concurrency 2 (this machine's cores),
broker and result backend in a database of its own (CELERY_DATABASE) on the bench's Redis
server: the same binary and settings (append-only, `appendfsync always`) the API uses.
The client is bench/celery_app.py run by that venv's python (it prints JSON).
kubetask: the API process the harness starts (API + controller + local backend, one OS
process per task), through HTTP as a user would.

Five figures, each measured over ROUNDS rounds (the row holds the median over rounds, a note
the min and max):
1. no-op round trip: `apply_async().get()` against `POST /v1/jobs` (noop, steps=0) -> the
   terminal event on the job's SSE stream (figure 3's `noop_kubetask`); p50 and p99;
2. a burst of `counts.burst` no-op jobs sent by CLIENT_THREADS threads -> every result seen
   (Celery: `AsyncResult.get`; kubetask: polling `GET /v1/jobs/{id}`), jobs per second;
3. enqueues per second, timed inside that burst: until the last `apply_async` returned
   against until the last `POST` was answered 201 (the record on disk);
4. CPU per no-op job in that burst, every process of each side in all (bench/cpu.py): the
   API, its zygotes and their tasks, Redis and the client threads, against Celery's worker
   (parent and pool), Redis and its client process (its own count of the burst);
5. progress push: a task reporting PROGRESS_EVENTS events at PROGRESS_RATE_HZ, each stamped
   when made, to the client holding it parsed. Celery: `update_state` (SET + PUBLISH on the
   task's meta channel) -> a redis-py subscriber; kubetask: figure 1's paced relay
   (ProgressReporter -> event log -> API -> SSE client).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from pydantic import JsonValue

from bench import cpu
from bench.harness import REPO_ROOT, Bench, Counts, Figure, Row, median, percentile, rounded
from bench.noop_e2e import noop_kubetask
from bench.relay import relay_kubetask
from tests.servers import TERMINAL

CELERY_PIN = "celery[redis]==5.7.0"
VENV = REPO_ROOT / "bench" / "out" / "celery-venv"
APP_DIR = REPO_ROOT / "bench"  # celery_app.py is imported from here by the worker
WORKER_LOG = VENV.parent / "celery-worker.log"
CELERY_DATABASE = 10  # apart from the API's (0) and the submissions figure's (9)
CONCURRENCY = 2
CLIENT_THREADS = 4
ROUNDS = 3
ROUND_TRIPS = 20  # per round
PROGRESS_EVENTS = 200
PROGRESS_RATE_HZ = 100.0
TIMEOUT_S = 300.0


# -- pure helpers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class OverRounds:
    """One quantity measured once per round: the median of the rounds, and their range."""

    values: tuple[float, ...]

    @property
    def mid(self) -> float:
        return median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def spread(value: OverRounds) -> str:
    """`low-high`, with the table's precision (no decimals from 100 on)."""
    digits = 0 if value.high >= 100 else 1 if value.high >= 10 else 2
    return f"{value.low:,.{digits}f}-{value.high:,.{digits}f}"


def range_note(metric: str, ours: OverRounds, celery: OverRounds) -> str:
    n = len(ours.values)
    return f"{metric}, min-max over {n} rounds: kubetask {spread(ours)}, Celery {spread(celery)}"


def per_round(samples: Sequence[Sequence[float]], q: float) -> OverRounds:
    """The q-th percentile of each round's samples."""
    return OverRounds(tuple(percentile(list(s), q) for s in samples))


# -- Celery: its venv, its worker, its client -------------------------------------------------
def celery_python() -> Path:
    """The python of the bench's Celery venv; created and filled on first use."""
    python = VENV / "bin" / "python"
    marker = VENV / "installed.txt"
    if marker.exists() and marker.read_text().strip() == CELERY_PIN and python.exists():
        return python
    print(f"    installing {CELERY_PIN} into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", CELERY_PIN],
        check=True,
    )
    marker.write_text(CELERY_PIN + "\n")
    return python


def _celery_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"PYTHONPATH": str(APP_DIR), "CELERY_BENCH_REDIS_URL": redis_url})
    return env


@contextmanager
def celery_worker(python: Path, redis_url: str) -> Iterator[int]:
    """A prefork worker of CONCURRENCY processes (its parent's pid); stopped (warm
    shutdown) on the way out."""
    command = [str(python), "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork"]
    command += [f"--concurrency={CONCURRENCY}", "--loglevel=WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with WORKER_LOG.open("wb") as log:
        proc = subprocess.Popen(
            command,
            env=_celery_env(redis_url),
            cwd=APP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def celery_client(python: Path, redis_url: str, *args: str) -> dict[str, JsonValue]:
    """Run one measurement of bench/celery_app.py in the Celery venv; its JSON answer."""
    done = subprocess.run(
        [str(python), str(APP_DIR / "celery_app.py"), *args],
        env=_celery_env(redis_url),
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"celery client {args} exited {done.returncode}:\n{done.stderr[-3000:]}")
    answer: dict[str, JsonValue] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _floats(value: JsonValue) -> list[float]:
    assert isinstance(value, list)
    return [float(v) for v in value if isinstance(v, int | float)]


def _float(value: JsonValue) -> float:
    assert isinstance(value, int | float)
    return float(value)


# -- kubetask ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Burst:
    count: int
    enqueued_s: float
    done_s: float
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per job, by part of the side


def kubetask_trees(bench: Bench) -> dict[str, int]:
    """The kubetask side's processes: the API (its controller, shims and plainly started
    tasks), each zygote (with the tasks it forked) and Redis."""
    assert bench.api.process is not None
    assert bench.redis_pid is not None
    api = bench.api.process.pid
    zygotes = [pid for pid in cpu.children_of(cpu.read_stats(), api) if cpu.is_zygote(pid)]
    return {"API": api, "Redis": bench.redis_pid} | {f"zygote {pid}": pid for pid in zygotes}


def kubetask_parts(per_job: dict[str, float], client_ms: float) -> dict[str, float]:
    """Per-tree figures as the note names them: the zygotes' trees are the task processes
    (a zygote's own share is the forks and the exits it records)."""
    tasks = sum(ms for name, ms in per_job.items() if name.startswith("zygote "))
    return {
        "API": per_job["API"],
        "tasks and zygotes": tasks,
        "Redis": per_job["Redis"],
        "client": client_ms,
    }


def burst_kubetask(bench: Bench, count: int) -> Burst:
    """`count` noop jobs POSTed by CLIENT_THREADS threads, each with its own connection
    (opened before the clock starts, as the Celery client's are)."""
    base_url = bench.api.base_url
    ids: list[list[str]] = [[] for _ in range(CLIENT_THREADS)]
    gate = threading.Barrier(CLIENT_THREADS + 1)

    def send(k: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            client.get("/readyz").raise_for_status()  # the connection open, untimed
            gate.wait()
            for _ in range(count // CLIENT_THREADS + (k < count % CLIENT_THREADS)):
                response = client.post("/v1/jobs", json={"kind": "noop", "params": {"steps": 0}})
                response.raise_for_status()
                ids[k].append(response.json()["id"])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    trees = kubetask_trees(bench)
    gate.wait()
    before, client_before = cpu.tree_seconds(cpu.read_stats(), trees), time.process_time()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    enqueued = time.perf_counter() - began
    deadline = time.monotonic() + TIMEOUT_S
    for job_id in (job_id for some in ids for job_id in some):
        while (state := bench.api.job(job_id)["state"]) not in TERMINAL:
            if time.monotonic() > deadline:
                raise RuntimeError(f"burst job {job_id} still {state}")
            time.sleep(0.02)
        if state != "succeeded":
            raise RuntimeError(f"burst job {job_id} ended {state}")
    done = time.perf_counter() - began
    after, client_after = cpu.tree_seconds(cpu.read_stats(), trees), time.process_time()
    sent = sum(len(some) for some in ids)
    if sent != count:
        raise RuntimeError(f"only {sent} of {count} burst jobs were accepted")
    per_job = cpu.per_job_ms(before, after, count)
    parts = kubetask_parts(per_job, (client_after - client_before) * 1000 / count)
    return Burst(count=count, enqueued_s=enqueued, done_s=done, cpu_ms=parts)


# -- the figure -------------------------------------------------------------------------------
@dataclass
class Side:
    """One side's raw measurements, a list per round."""

    roundtrip_ms: list[list[float]]
    bursts: list[Burst]
    progress_ms: list[list[float]]

    def rows(self) -> dict[str, OverRounds]:
        return {
            "rt50": per_round(self.roundtrip_ms, 50),
            "rt99": per_round(self.roundtrip_ms, 99),
            "done": OverRounds(tuple(b.count / b.done_s for b in self.bursts)),
            "enq": OverRounds(tuple(b.count / b.enqueued_s for b in self.bursts)),
            "cpu": OverRounds(tuple(sum(b.cpu_ms.values()) for b in self.bursts)),
            "pp50": per_round(self.progress_ms, 50),
            "pp99": per_round(self.progress_ms, 99),
        }

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "roundtrip_ms": [rounded(r, 3) for r in self.roundtrip_ms],
            "bursts": [
                {
                    "count": b.count,
                    "enqueued_s": round(b.enqueued_s, 4),
                    "done_s": round(b.done_s, 4),
                    "cpu_ms_per_job": {part: round(ms, 3) for part, ms in b.cpu_ms.items()},
                }
                for b in self.bursts
            ],
            "progress_ms": [rounded(r, 3) for r in self.progress_ms],
        }


def measure_celery(redis_url: str, redis_pid: int, burst: int) -> Side:
    python = celery_python()
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    side = Side([], [], [])
    try:
        with celery_worker(python, redis_url) as worker:
            celery_client(python, redis_url, "roundtrip", "5")  # the worker is up; warm
            trees = {"worker": worker, "Redis": redis_pid}
            for _ in range(ROUNDS):
                trips = celery_client(python, redis_url, "roundtrip", str(ROUND_TRIPS))
                side.roundtrip_ms.append(_floats(trips["ms"]))
                before = cpu.tree_seconds(cpu.read_stats(), trees)
                sent = celery_client(python, redis_url, "burst", str(burst), str(CLIENT_THREADS))
                per_job = cpu.per_job_ms(before, cpu.tree_seconds(cpu.read_stats(), trees), burst)
                per_job["client"] = _float(sent["client_cpu_s"]) * 1000 / burst
                side.bursts.append(
                    Burst(burst, _float(sent["enqueued_s"]), _float(sent["done_s"]), per_job)
                )
                pushed = celery_client(
                    python, redis_url, "progress", str(PROGRESS_EVENTS), str(PROGRESS_RATE_HZ)
                )
                side.progress_ms.append(_floats(pushed["ms"]))
    finally:
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()
    return side


def measure_kubetask(bench: Bench, burst: int) -> Side:
    noop_kubetask(bench)  # warm
    side = Side([], [], [])
    for _ in range(ROUNDS):
        side.roundtrip_ms.append([noop_kubetask(bench).total_ms for _ in range(ROUND_TRIPS)])
        side.bursts.append(burst_kubetask(bench, burst))
        relayed = relay_kubetask(bench, count=PROGRESS_EVENTS, rate_hz=PROGRESS_RATE_HZ)
        side.progress_ms.append(relayed.latencies_ms)
    return side


METRICS = {
    "rt50": ("no-op round trip p50", "ms"),
    "rt99": ("no-op round trip p99", "ms"),
    "done": ("burst -> all done", "jobs/s"),
    "enq": ("submissions accepted (enqueues)", "1/s"),
    "cpu": ("CPU per job in the burst, all", "ms"),
    "pp50": ("progress push p50", "ms"),
    "pp99": ("progress push p99", "ms"),
}


def parts(side: Side) -> str:
    """The side's CPU per job by part, each the median over the rounds."""
    names = side.bursts[0].cpu_ms if side.bursts else {}
    return "; ".join(
        f"{name} {median([b.cpu_ms.get(name, 0.0) for b in side.bursts]):.2f} ms" for name in names
    )


def build_figure(ours: Side, celery: Side, burst: int) -> Figure:
    mine, theirs = ours.rows(), celery.rows()
    rows = [
        Row(METRICS[key][0], METRICS[key][1], mine[key].mid, theirs[key].mid) for key in METRICS
    ]
    notes = [range_note(METRICS[key][0], mine[key], theirs[key]) for key in METRICS]
    notes.append(
        f"burst: {burst} no-op jobs from {CLIENT_THREADS} client threads; round trips: "
        f"{ROUND_TRIPS} per round; progress: {PROGRESS_EVENTS} events at {PROGRESS_RATE_HZ:g}/s"
    )
    for name, side in (("kubetask", ours), ("Celery", celery)):
        notes.append(f"{name} CPU per job in the burst, by part (median of rounds): {parts(side)}")
    notes.append(
        "both sides on one server with the embedded default's settings (appendonly yes, "
        "appendfsync always): every Celery broker and backend write is fsynced too"
    )
    for name, side in (("kubetask", ours), ("Celery", celery)):
        lost = [PROGRESS_EVENTS - len(r) for r in side.progress_ms if len(r) != PROGRESS_EVENTS]
        if lost:
            notes.append(f"{name} progress events lost per round: {lost} of {PROGRESS_EVENTS}")
    return Figure(
        key="celery",
        title=f"kubetask against Celery, same Redis server (median of {ROUNDS} rounds)",
        kubetask="the harness's API + local backend (one OS process per task), over HTTP",
        baseline=(
            f"{CELERY_PIN}, prefork worker x{CONCURRENCY}, Redis broker + result backend "
            f"(database {CELERY_DATABASE} of the same server), its own venv"
        ),
        rows=rows,
        notes=notes,
        raw={"kubetask": ours.to_json(), "celery": celery.to_json()},
    )


def run(bench: Bench, counts: Counts) -> Figure:
    url = bench.redis_url.rsplit("/", 1)[0] + f"/{CELERY_DATABASE}"
    assert bench.redis_pid is not None
    celery = measure_celery(url, bench.redis_pid, counts.burst)
    ours = measure_kubetask(bench, counts.burst)
    return build_figure(ours, celery, counts.burst)
