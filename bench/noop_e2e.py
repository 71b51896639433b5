"""Figure 3, a no-op job end to end.

kubetask: from just before `POST /v1/jobs` (`noop`, steps=0) to the client holding the
terminal `succeeded` event, read from the job's SSE stream (`GET /v1/jobs/{id}/events`,
opened right after the POST; it replays the history, so nothing is missed).
Baseline: from just before `subprocess.Popen([python, "-m", "kubetask.jobs", "noop"])` to its exit,
with the same environment a task gets (the same Redis, so it also stores its outcome there).

The kubetask side is broken down with the job view's timestamps, which are the backend's:
submit -> started (the controller and the zygote, until the task's start as the zygote
recorded it), started -> finished (the task process, until the local Job controller wrote
its verdict on the exit), and finished -> seen by the client (the state derived, its event
published and streamed).
Runs alternate between the two sides, after a few warm-up runs of each that are not counted,
once the image's zygote forks the tasks (until then they start plainly: `startup` measures
that).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.harness import (
    Bench,
    Counts,
    Figure,
    epoch,
    latency_rows,
    median,
    paired_runs,
    python_module,
    read_json,
    rounded,
    spawn,
)
from tests.servers import read_sse

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class EndToEnd:
    submitted: float
    started: float
    finished: float
    seen: float

    @property
    def total_ms(self) -> float:
        return (self.seen - self.submitted) * 1000


def forked_from_a_zygote(bench: Bench, job_id: str) -> bool:
    shim = read_json(bench.pod_dir(job_id) / "shim.json") or {}
    return shim.get("zygote") is True


def warm(bench: Bench) -> None:
    """Run no-op jobs until one is forked by the image's warm zygote."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        api = bench.api
        response = api.client.post("/v1/jobs", json={"kind": "noop", "params": {"steps": 0}})
        response.raise_for_status()
        job_id: str = response.json()["id"]
        if api.wait(job_id)["state"] != "succeeded":
            raise RuntimeError(f"job {job_id} did not succeed")
        if forked_from_a_zygote(bench, job_id):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no zygote forked a task in {TIMEOUT_S} s")
        time.sleep(0.2)


def noop_kubetask(bench: Bench) -> EndToEnd:
    api = bench.api
    submitted = time.time()
    response = api.client.post("/v1/jobs", json={"kind": "noop", "params": {"steps": 0}})
    response.raise_for_status()
    job_id: str = response.json()["id"]
    last: dict[str, object] = {}
    for event in read_sse(api.client, f"/v1/jobs/{job_id}/events", {}, TIMEOUT_S):
        last = event
    seen = time.time()
    if last.get("state") != "succeeded":
        raise RuntimeError(f"job {job_id} ended with {last}")
    job = api.job(job_id)
    return EndToEnd(
        submitted=submitted,
        started=epoch(job["started_at"]),
        finished=epoch(job["finished_at"]),
        seen=seen,
    )


def noop_baseline(bench: Bench, run_id: str) -> float:
    task_env = bench.task_env(job_id=run_id, kind="noop", params='{"steps":0}')
    command = python_module("kubetask.jobs", "noop")
    before = time.time()
    proc = spawn(command, task_env=task_env, cwd=bench.scratch / run_id)
    code = proc.wait(TIMEOUT_S)
    after = time.time()
    if code != 0:
        raise RuntimeError(f"baseline noop exited {code}")
    return (after - before) * 1000


def run(bench: Bench, counts: Counts) -> Figure:
    warm(bench)
    runs, baseline_ms = paired_runs(
        counts,
        lambda: noop_kubetask(bench),
        lambda run_id: noop_baseline(bench, run_id),
        prefix="bench-noop",
    )
    kubetask_ms = [r.total_ms for r in runs]
    to_start = [(r.started - r.submitted) * 1000 for r in runs]
    task = [(r.finished - r.started) * 1000 for r in runs]
    to_seen = [(r.seen - r.finished) * 1000 for r in runs]
    rows = latency_rows(kubetask_ms, baseline_ms)
    notes = [
        "kubetask breakdown (medians): "
        f"submit -> started {median(to_start):.1f} ms; "
        f"started -> finished (the task) {median(task):.1f} ms; "
        f"finished -> succeeded seen by the client {median(to_seen):.1f} ms",
    ]
    return Figure(
        key="noop",
        title="No-op job end to end",
        kubetask="POST /v1/jobs (noop, forked by the warm zygote) -> 'succeeded' seen on SSE",
        baseline="subprocess.Popen([python, -m, jobs, noop]) -> exit, same env",
        rows=rows,
        notes=notes,
        raw={
            "kubetask_ms": rounded(kubetask_ms, 3),
            "baseline_ms": rounded(baseline_ms, 3),
            "kubetask_submit_to_started_ms": rounded(to_start, 3),
            "kubetask_task_ms": rounded(task, 3),
            "kubetask_finished_to_seen_ms": rounded(to_seen, 3),
        },
    )
