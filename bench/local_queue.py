"""The local backend's cost against the size of its queue (issue 16, item 4): how long one
submission (`LocalBackend.create`, no API) takes with 0, 1,000 and 10,000 jobs queued behind
2 busy slots, and how fast a backlog of 10 and of 1,000 no-op tasks drains (2 slots).

Run it alone: `.venv/bin/python -m bench.local_queue [--sizes 0,1000,10000] [--backlogs
10,1000]`. A diagnostic, not part of `make bench`: it prints its figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

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
