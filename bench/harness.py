"""What every figure shares: the servers (a real Redis-protocol server and the API process,
with its controller and local backend), the task environment a bare baseline process gets,
the statistics, and the result types that the table and results.json are made from."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import JsonValue

from kubetask import env
from kubetask.controller.redis_server import RedisServer, free_port
from tests.servers import ApiServer

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Counts:
    """How much each figure measures; `--quick` shrinks them."""

    relay_burst: int
    relay_paced: int
    relay_rate_hz: float
    launches: int
    warmup: int
    burst: int = 200  # no-op jobs in the celery figure's burst; 1,000 with --full

    @classmethod
    def for_run(cls, *, quick: bool, full: bool = False) -> Counts:
        burst = 1000 if full else 200
        if quick:
            return cls(
                relay_burst=1000,
                relay_paced=200,
                relay_rate_hz=1000,
                launches=5,
                warmup=1,
                burst=burst,
            )
        return cls(
            relay_burst=5000,
            relay_paced=2000,
            relay_rate_hz=1000,
            launches=20,
            warmup=2,
            burst=burst,
        )


@dataclass
class Bench:
    """The servers a figure measures against, and a scratch folder for its baselines."""

    redis_url: str
    api: ApiServer
    scratch: Path
    redis_pid: int | None = None  # the server's process, for CPU accounting

    def task_env(self, *, job_id: str, kind: str, params: str) -> dict[str, str]:
        """The container contract's environment, as the local backend gives it to a task."""
        folder = self.scratch / job_id
        folder.mkdir(parents=True, exist_ok=True)
        task_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETASK_")}
        task_env.update(
            {
                env.JOB_ID: job_id,
                env.KIND: kind,
                env.PARAMS: params,
                env.REDIS_URL: self.redis_url,
                env.ARTIFACTS: str(self.scratch / "artifacts"),
                env.TERMINATION_LOG: str(folder / "termination-log"),
                "HOME": str(folder),
            }
        )
        return task_env

    def pod_dir(self, job_id: str) -> Path:
        return self.api.data_dir / "local" / "jobs" / job_id / "pods" / "0-1"

    def artifacts(self) -> Path:
        return self.api.data_dir / "artifacts"


@contextlib.contextmanager
def servers() -> Iterator[Bench]:
    """Redis on a free port and the API process against it, in a temp folder; on the way out
    every server and every task process is stopped and the folder removed."""
    root = Path(tempfile.mkdtemp(prefix="kubetask-bench-"))
    redis_server = RedisServer(root / "redis", port=free_port())
    api: ApiServer | None = None
    try:
        url = redis_server.start()
        api = ApiServer(
            redis_url=url,
            data_dir=root / "api",
            keepalive_s=15,
            resync_s=30,
            max_submits_per_minute=100_000,  # the tenant's fair-use caps are not measured
            max_active_jobs_per_tenant=100_000,
        )
        api.start()
        yield Bench(redis_url=url, api=api, scratch=root / "baseline", redis_pid=redis_server.pid)
    finally:
        if api is not None:
            api.close()
        redis_server.stop()
        shutil.rmtree(root, ignore_errors=True)


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def spawn(
    command: Sequence[str], *, task_env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(command),
        env=task_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def epoch(timestamp: str) -> float:
    """An ISO 8601 timestamp (as events and records carry) in seconds since the epoch."""
    return datetime.fromisoformat(timestamp).timestamp()


def read_json(path: Path) -> dict[str, JsonValue] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- statistics ----------------------------------------------------------------------------
def paired_runs(
    counts: Counts,
    kubetask: Callable[[], T],
    baseline: Callable[[str], float],
    *,
    prefix: str,
) -> tuple[list[T], list[float]]:
    """Alternate a kubetask run and a baseline run, dropping the warm-up pairs."""
    measured: list[T] = []
    baseline_ms: list[float] = []
    for i in range(counts.warmup + counts.launches):
        ours = kubetask()
        theirs = baseline(f"{prefix}-{i}")
        if i >= counts.warmup:
            measured.append(ours)
            baseline_ms.append(theirs)
    return measured, baseline_ms


def latency_rows(kubetask_ms: Sequence[float], baseline_ms: Sequence[float]) -> list[Row]:
    """Median and p90 of paired runs, in milliseconds."""
    n = len(kubetask_ms)
    return [
        Row(f"median of {n}", "ms", median(kubetask_ms), median(baseline_ms)),
        Row(f"p90 of {n}", "ms", percentile(kubetask_ms, 90), percentile(baseline_ms, 90)),
    ]


def resident_mib(pid: int) -> float:
    """A process's resident memory (NaN if /proc does not say)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# -- results -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One measured quantity both ways. `ratio` is kubetask / baseline."""

    metric: str
    unit: str
    kubetask: float
    baseline: float

    @property
    def ratio(self) -> float:
        if self.baseline == 0 or math.isnan(self.baseline) or math.isnan(self.kubetask):
            return math.nan
        return self.kubetask / self.baseline

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "metric": self.metric,
            "unit": self.unit,
            "kubetask": _finite(self.kubetask),
            "baseline": _finite(self.baseline),
            "ratio": _finite(self.ratio),
        }


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    kubetask: str  # what the kubetask side measures, in words
    baseline: str  # what the baseline measures, in words
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    raw: dict[str, JsonValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "key": self.key,
            "title": self.title,
            "kubetask": self.kubetask,
            "baseline": self.baseline,
            "rows": [row.to_json() for row in self.rows],
            "notes": list(self.notes),
            "raw": self.raw,
        }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def rounded(values: Sequence[float], digits: int = 6) -> list[JsonValue]:
    return [round(v, digits) for v in values]
