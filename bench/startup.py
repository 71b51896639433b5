"""Figure 2, submit -> task process started.

kubetask: from just before `POST /v1/jobs` (a `noop` job) to the moment the task process
exists: the local backend's supervisor writes `started_at` into the pod folder's
`started.json` right after its fork+exec of `python -m kubetask.jobs noop` returned (the
same instant the job view reports as `started_at`).
Baseline: from just before `subprocess.Popen([python, "-m", "kubetask.jobs", "noop"])` to its
return, which is also right after the fork+exec of the task: the same end point, with nothing
between the caller and the process. The difference is what the API, the store, the reconciler, the
backend and the supervisor cost before a task can begin; the kubetask side is broken down
with the timestamps the job record (`created_at`) and the pod folder (`pod.json`) keep.

Each run waits for its process to exit before the next begins; runs alternate between the
two sides, after a few warm-up runs of each that are not counted.
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

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Launch:
    submitted: float  # just before the POST
    created: float  # the job record's created_at
    pod_created: float  # the backend decided to start the pod
    started: float  # the task process exists

    @property
    def total_ms(self) -> float:
        return (self.started - self.submitted) * 1000


def launch_kubetask(bench: Bench) -> Launch:
    api = bench.api
    submitted = time.time()
    response = api.client.post("/v1/jobs", json={"kind": "noop", "params": {}})
    response.raise_for_status()
    job = response.json()
    pod_dir = bench.pod_dir(job["id"])
    deadline = time.monotonic() + TIMEOUT_S
    started = read_json(pod_dir / "started.json")
    while started is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job['id']} did not start: {api.job(job['id'])}")
        time.sleep(0.005)
        started = read_json(pod_dir / "started.json")
    pod = read_json(pod_dir / "pod.json") or {}
    finished = api.wait(job["id"], timeout_s=TIMEOUT_S)
    if finished["state"] != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {finished['state']}: {finished}")
    return Launch(
        submitted=submitted,
        created=epoch(job["created_at"]),
        pod_created=epoch(str(pod["created_at"])),
        started=epoch(str(started["started_at"])),
    )


def launch_baseline(bench: Bench, run_id: str) -> float:
    """Milliseconds for Popen to return; waits for the process to exit."""
    task_env = bench.task_env(job_id=run_id, kind="noop", params="{}")
    command = python_module("kubetask.jobs", "noop")
    before = time.time()
    proc = spawn(command, task_env=task_env, cwd=bench.scratch / run_id)
    after = time.time()
    code = proc.wait(TIMEOUT_S)
    if code != 0:
        raise RuntimeError(f"baseline noop exited {code}")
    return (after - before) * 1000


def run(bench: Bench, counts: Counts) -> Figure:
    launches, baseline_ms = paired_runs(
        counts,
        lambda: launch_kubetask(bench),
        lambda run_id: launch_baseline(bench, run_id),
        prefix="bench-start",
    )
    kubetask_ms = [launch.total_ms for launch in launches]
    api_ms = [(x.created - x.submitted) * 1000 for x in launches]
    controller_ms = [(x.pod_created - x.created) * 1000 for x in launches]
    shim_ms = [(x.started - x.pod_created) * 1000 for x in launches]
    rows = latency_rows(kubetask_ms, baseline_ms)
    notes = [
        "kubetask breakdown (medians): "
        f"POST -> record created {median(api_ms):.1f} ms; "
        f"record -> pod started by the backend {median(controller_ms):.1f} ms; "
        f"pod -> task process exec'd by the supervisor {median(shim_ms):.1f} ms",
        "the task then needs ~the same interpreter + import time both ways (figure 3)",
    ]
    return Figure(
        key="startup",
        title="Submit -> task process started (exec'd)",
        kubetask="POST /v1/jobs -> started.json started_at (supervisor's fork+exec returned)",
        baseline="subprocess.Popen([python, -m, jobs, noop]) -> Popen returned (fork+exec)",
        rows=rows,
        notes=notes,
        raw={
            "kubetask_ms": rounded(kubetask_ms, 3),
            "baseline_ms": rounded(baseline_ms, 3),
            "kubetask_api_ms": rounded(api_ms, 3),
            "kubetask_controller_ms": rounded(controller_ms, 3),
            "kubetask_supervisor_ms": rounded(shim_ms, 3),
        },
    )
