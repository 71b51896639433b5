"""The local backend's cost against the size of its queue: how long one submission
(`LocalBackend.create`, no API) takes with 10 and with 10,000 jobs queued behind 2 busy
slots, and how fast a backlog of 10 and of 1,000 no-op tasks (`python -c pass`, started
plainly) drains on 2 slots; the small store is the baseline of each row.

In `make bench` as the figure `queue`; alone, with other sizes: `.venv/bin/python -m
bench.local_queue [--sizes 0,1000,10000] [--backlogs 10,1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import Bench, Counts, Figure, Row
from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local import LocalBackend
from kubetask.controller.backends.local_folders import JobFolders

SLOTS = 2
SUBMITS = 20
SLEEP = ("python", "-c", "import time; time.sleep(600)")
NOOP = ("python", "-c", "pass")


def task(number: int, command: tuple[str, ...]) -> TaskSpec:
    job_id = f"{number:016x}"
    return TaskSpec(
        job_id=job_id,
        kind="noop",
        image="",
        command=command,
        env={env.JOB_ID: job_id},
        retries=0,
        timeout_s=None,
    )


async def submit_latency(root: Path, queued: int) -> list[float]:
    """Seconds per create with `queued` jobs waiting behind two sleeping ones."""
    folders = JobFolders(root / "jobs")
    for number in range(queued + SLOTS):
        folders.write_job(task(number, SLEEP if number < SLOTS else NOOP))
    backend = LocalBackend(root=root, slots=SLOTS)
    await backend.start()
    times = []
    try:
        for number in range(queued + SLOTS, queued + SLOTS + SUBMITS):
            began = time.perf_counter()
            await backend.create(task(number, NOOP))
            times.append(time.perf_counter() - began)
    finally:
        for number in range(SLOTS):
            await backend.delete(f"{number:016x}")
        await asyncio.sleep(0.5)
        await backend.stop()
    return times


async def drain_rate(root: Path, backlog: int) -> tuple[float, float]:
    """Jobs per second from start to the last of `backlog` no-op jobs ended, and the
    controller's own CPU per job (the tasks' processes not counted)."""
    folders = JobFolders(root / "jobs")
    for number in range(backlog):
        folders.write_job(task(number, NOOP))
    backend = LocalBackend(root=root, slots=SLOTS)
    ended: set[str] = set()
    began, cpu = time.perf_counter(), time.process_time()
    await backend.start()
    try:
        while len(ended) < backlog:
            job_id = await asyncio.wait_for(backend.changes.get(), timeout=60)
            if folders.finished(job_id) is not None:
                ended.add(job_id)
        return backlog / (time.perf_counter() - began), (time.process_time() - cpu) / backlog
    finally:
        await backend.stop()


def run(bench: Bench, counts: Counts) -> Figure:
    """The figure: each row the large store against the small one."""
    small, large = 10, 10_000
    backlog = 100 if counts.launches < 10 else 1000  # --quick: a short drain
    bench.scratch.mkdir(parents=True, exist_ok=True)
    measured: dict[int, list[float]] = {}
    for queued in (small, large):
        with tempfile.TemporaryDirectory(dir=bench.scratch) as tmp:
            measured[queued] = asyncio.run(submit_latency(Path(tmp), queued))
    drained: dict[int, tuple[float, float]] = {}
    for size in (small, backlog):
        with tempfile.TemporaryDirectory(dir=bench.scratch) as tmp:
            drained[size] = asyncio.run(drain_rate(Path(tmp), size))
    return Figure(
        key="queue",
        title="Local backend: costs against the size of its queue",
        kubetask=f"{large:,} jobs queued; a backlog of {backlog:,}",
        baseline=f"{small} jobs queued; a backlog of {small}",
        rows=[
            Row(
                "submit p50 (LocalBackend.create)",
                "ms",
                statistics.median(measured[large]) * 1000,
                statistics.median(measured[small]) * 1000,
            ),
            Row(
                "submit max",
                "ms",
                max(measured[large]) * 1000,
                max(measured[small]) * 1000,
            ),
            Row("backlog drained", "jobs/s", drained[backlog][0], drained[small][0]),
            Row(
                "controller CPU per drained job",
                "ms",
                drained[backlog][1] * 1000,
                drained[small][1] * 1000,
            ),
        ],
        notes=[f"{SUBMITS} submissions per size, {SLOTS} slots, tasks started plainly"],
        raw={
            "submit_ms": {str(k): [round(t * 1000, 3) for t in v] for k, v in measured.items()},
            "drain": {str(k): [round(v[0], 2), round(v[1] * 1000, 3)] for k, v in drained.items()},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,1000,10000")
    parser.add_argument("--backlogs", default="10,1000")
    args = parser.parse_args()
    for queued in (int(n) for n in args.sizes.split(",") if n):
        with tempfile.TemporaryDirectory() as tmp:
            times = asyncio.run(submit_latency(Path(tmp), queued))
        print(
            f"submit with {queued:>6} queued: p50 {statistics.median(times) * 1000:8.2f} ms, "
            f"max {max(times) * 1000:8.2f} ms"
        )
    for backlog in (int(n) for n in args.backlogs.split(",") if n):
        with tempfile.TemporaryDirectory() as tmp:
            rate, cpu = asyncio.run(drain_rate(Path(tmp), backlog))
        print(
            f"drain of a backlog of {backlog:>5}: {rate:7.1f} jobs/s, "
            f"controller CPU {cpu * 1000:6.2f} ms/job"
        )


if __name__ == "__main__":
    main()
