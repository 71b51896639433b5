"""Figure: a task's start from a warm zygote against a plain start, on the local backend.

Both sides start one pod exactly as the local backend's supervisor does (local_supervisor.py)
with the container contract's environment and a real Redis: kubetask asks the image's warm
zygote (local_zygotes.py) to fork the pod's task (the zygote supervises it); the baseline
starts the supervisor as a new interpreter (`python -I -S shim.py`), which starts
`python -m kubetask.jobs <kind>`. Measured: from just before the start is asked for to the
moment the task's first progress event arrives on the job's pub/sub channel (the task has
imported its kind, read its params, connected to Redis and reported). `train` (torch) and
`noop` (a light kind: forked from the image's light zygote, which holds no torch); each
run's task is killed once it has reported. Runs alternate between the sides,
after warm-up runs that are not counted. The zygote's resident memory is in the notes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from bench.harness import Bench, Counts, Figure, Row, median, percentile, resident_mib, rounded
from kubetask import keys
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_folders import read_started
from kubetask.controller.backends.local_supervisor import SHIM
from kubetask.controller.backends.local_zygotes import Zygotes

TIMEOUT_S = 60.0
KINDS = {"train": '{"epochs": 1}', "noop": '{"steps": 1}'}


def spec(job_id: str, kind: str) -> TaskSpec:
    return TaskSpec(
        job_id=job_id,
        kind=kind,
        image="trainer",
        command=("python", "-m", "kubetask.jobs", kind),
        env={},
        retries=0,
        timeout_s=None,
        grace_s=1.0,
    )


def first_event_ms(bench: Bench, job_id: str, start: Callable[[], object]) -> float:
    """Milliseconds from calling `start()` to the job's first event on its channel; then
    the pod is killed (the task's group) and its exit awaited."""
    client = redis.Redis.from_url(bench.redis_url)
    subscription = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    subscription.subscribe(keys.progress_channel(job_id))
    try:
        began = time.perf_counter()
        supervisor = start()
        deadline = time.monotonic() + TIMEOUT_S
        while subscription.get_message(timeout=1.0) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{job_id}: no progress event in {TIMEOUT_S} s")
        took = (time.perf_counter() - began) * 1000
    finally:
        subscription.close()
        client.close()
    stop(bench, job_id, supervisor)
    return took


def stop(bench: Bench, job_id: str, supervisor: object) -> None:
    pod_dir = bench.scratch / job_id
    started = read_started(pod_dir)
    if started is None:
        raise RuntimeError(f"{job_id}: the pod's folder records no start")
    with contextlib.suppress(ProcessLookupError):  # a noop may be done already
        os.killpg(int(str(started["pid"])), signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT_S
    while not (pod_dir / "exit.json").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{job_id}: the supervisor recorded no exit")
        time.sleep(0.01)
    if isinstance(supervisor, subprocess.Popen):
        supervisor.wait(TIMEOUT_S)


def forked(bench: Bench, zygotes: Zygotes, kind: str, job_id: str) -> float:
    environment = bench.task_env(job_id=job_id, kind=kind, params=KINDS[kind])
    pod_dir = bench.scratch / job_id

    def start() -> int:
        read, write = os.pipe()
        pid = zygotes.start_pod(spec(job_id, kind), pod_dir, environment, stdout=write)
        os.close(write)
        os.close(read)
        if pid is None:
            raise RuntimeError("the zygote did not start the pod")
        return pid

    return first_event_ms(bench, job_id, start)


def plain(bench: Bench, kind: str, job_id: str) -> float:
    environment = bench.task_env(job_id=job_id, kind=kind, params=KINDS[kind])
    pod_dir = bench.scratch / job_id
    command = [sys.executable, "-m", "kubetask.jobs", kind]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", SHIM, str(pod_dir), "1", "--", *command],
            env=environment,
            cwd=pod_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    return first_event_ms(bench, job_id, start)


def all_ready(zygotes: Zygotes) -> bool:
    """Whether the zygote of each kind is ready; each one that is not is asked to start."""
    ready = {kind: zygotes.ready(spec("warm", kind)) for kind in KINDS}
    return all(ready.values())


def run(bench: Bench, counts: Counts) -> Figure:
    zygotes = Zygotes(bench.scratch / "zygotes", python=sys.executable, system=os.environ)
    try:
        warming = time.perf_counter()
        deadline = time.monotonic() + 120
        while not all_ready(zygotes):
            if time.monotonic() > deadline:
                raise RuntimeError("the zygotes never became ready")
            time.sleep(0.05)
        warm_s = time.perf_counter() - warming
        pids = zygotes.running
        rows: list[Row] = []
        raw: dict[str, list[float]] = {}
        runs = max(3, counts.launches // 2)
        for kind in KINDS:
            ours: list[float] = []
            theirs: list[float] = []
            for i in range(counts.warmup + runs):
                mine = forked(bench, zygotes, kind, f"bench-zygote-{kind}-{i}")
                other = plain(bench, kind, f"bench-plain-{kind}-{i}")
                if i >= counts.warmup:
                    ours.append(mine)
                    theirs.append(other)
            rows.append(Row(f"{kind} start -> first event p50", "ms", median(ours), median(theirs)))
            rows.append(
                Row(
                    f"{kind} start -> first event p99",
                    "ms",
                    percentile(ours, 99),
                    percentile(theirs, 99),
                )
            )
            raw[f"{kind}_zygote_ms"] = ours
            raw[f"{kind}_plain_ms"] = theirs
        memory = resident_mib(pids["trainer"])
        light_memory = resident_mib(pids["trainer (light)"])
    finally:
        zygotes.close()
    notes = [
        f"{kind}: zygote {min(raw[f'{kind}_zygote_ms']):.1f}-{max(raw[f'{kind}_zygote_ms']):.1f}"
        f" ms, plain {min(raw[f'{kind}_plain_ms']):.0f}-{max(raw[f'{kind}_plain_ms']):.0f} ms"
        f" (min-max over {runs} runs)"
        for kind in KINDS
    ]
    notes.append(
        f"the trainer zygote: ready {warm_s:.1f} s after it was asked for (it imports the "
        f"runtime and every trainer kind's runner), {memory:.0f} MiB resident, shared "
        "copy-on-write with the tasks it forks; one per image role, started by its first pod"
    )
    notes.append(
        f"noop is a light kind: its zygote imports the runtime and the light kinds' runners "
        f"only (no torch), {light_memory:.0f} MiB resident"
    )
    return Figure(
        key="zygote",
        title="Task start until its first progress event: warm zygote vs plain start",
        kubetask="the image's zygote (its light one for noop) forks the pod's task, once, and "
        "supervises it",
        baseline="a new interpreter for the supervisor, then `python -m kubetask.jobs <kind>`",
        rows=rows,
        notes=notes,
        raw={key: rounded(values, 3) for key, values in raw.items()},
    )
