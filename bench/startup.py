"""Figure 2, submit -> task process started.

kubetask: from just before `POST /v1/jobs` (a `noop` job) to the moment the task process
exists, as the pod folder records it (`local_folders.read_started`): a plain start's
supervisor writes `started_at` into `started.json` right after its fork+exec of
`python -m kubetask.jobs noop` returned; for a task a warm zygote forked, the zygote writes
it into `shim.json` once the task is its child.
Baseline: from just before `subprocess.Popen([python, "-m", "kubetask.jobs", "noop"])` to its
return, which is also right after the fork+exec of the task: the same end point, with nothing
between the caller and the process. The difference is what the API, the store, the reconciler, the
backend and the supervisor cost before a task can begin; the kubetask side is broken down
with the timestamps the job record (`created_at`) and the pod folder (`pod.json`) keep.

Each run waits for its process to exit before the next begins; runs alternate between the
two sides, after a few warm-up runs of each that are not counted.

`python -m bench.startup [--runs N] [--pythonpath DIR]` measures the task's own start
instead: the wall clock of a whole no-op task (`python -m kubetask.jobs noop`, `{"steps": 0}`,
with the contract's environment and a real Redis) against `python -c pass` and a bare
interpreter (`python -I -S -c pass`), the three interleaved; `--pythonpath` runs another
checkout's code (e.g. an older commit, exported with `git archive`) with the same interpreter.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
from kubetask import env
from kubetask.controller.backends.local_folders import read_started
from kubetask.controller.redis_server import RedisServer

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
    started = read_started(pod_dir)
    while started is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job['id']} did not start: {api.job(job['id'])}")
        time.sleep(0.005)
        started = read_started(pod_dir)
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


# -- the task's own start (python -m bench.startup) -----------------------------------------
TASK_START_COMMANDS: dict[str, list[str]] = {
    "noop task": [sys.executable, "-m", "kubetask.jobs", "noop"],
    "python -c pass": [sys.executable, "-c", "pass"],
    "bare python": [sys.executable, "-I", "-S", "-c", "pass"],
}


@dataclass(frozen=True)
class Timing:
    """One run of a command: wall clock from spawn to exit, and the CPU time (user + system)
    its process used, which a busy machine inflates less."""

    wall_ms: float
    cpu_ms: float


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_commands(
    commands: Mapping[str, Sequence[str]],
    *,
    environ: Mapping[str, str],
    cwd: Path,
    runs: int,
    warmup: int = 2,
) -> dict[str, list[Timing]]:
    """Each command's runs, interleaved run by run (so a busy moment of the machine falls on
    all of them), after `warmup` uncounted rounds; `RuntimeError` on a failure."""
    times: dict[str, list[Timing]] = {name: [] for name in commands}
    for i in range(warmup + runs):
        for name, command in commands.items():
            cpu_before, before = _children_cpu_s(), time.perf_counter()
            done = subprocess.run(
                list(command), check=False, env=dict(environ), cwd=cwd, capture_output=True
            )
            wall_ms = (time.perf_counter() - before) * 1000
            cpu_ms = (_children_cpu_s() - cpu_before) * 1000
            if done.returncode != 0:
                raise RuntimeError(f"{name} exited {done.returncode}: {done.stderr.decode()}")
            if i >= warmup:
                times[name].append(Timing(wall_ms=wall_ms, cpu_ms=cpu_ms))
    return times


def task_start(runs: int, pythonpath: str | None = None) -> dict[str, list[Timing]]:
    """`time_commands` over TASK_START_COMMANDS against a Redis of its own, in a temp folder."""
    with tempfile.TemporaryDirectory(prefix="kubetask-task-start-") as folder:
        root = Path(folder)
        with RedisServer(root / "redis") as redis_server:
            environ = {k: v for k, v in os.environ.items() if not k.startswith("KUBETASK_")}
            environ.update(
                {
                    env.JOB_ID: "task-start",
                    env.PARAMS: '{"steps": 0}',
                    env.REDIS_URL: redis_server.url,
                    env.ARTIFACTS: str(root / "artifacts"),
                    env.TERMINATION_LOG: str(root / "termination-log"),
                }
            )
            if pythonpath:
                environ["PYTHONPATH"] = pythonpath
            return time_commands(TASK_START_COMMANDS, environ=environ, cwd=root, runs=runs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pythonpath", help="run this checkout's kubetask instead")
    args = parser.parse_args(argv)
    times = task_start(args.runs, args.pythonpath)
    for measure in ("wall_ms", "cpu_ms"):
        figures = {name: [getattr(t, measure) for t in runs] for name, runs in times.items()}
        bare = median(figures["bare python"])
        plain = median(figures["python -c pass"])
        print(f"{measure} over {args.runs} runs each:")
        for name, values in figures.items():
            print(
                f"  {name:<16} median {median(values):7.1f}  min {min(values):7.1f}  "
                f"max {max(values):7.1f}  = {median(values) / bare:5.2f}x bare, "
                f"{median(values) / plain:5.2f}x python -c pass"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
