"""One progress model, pure: a kind's declared stages and weights give each worker an overall
fraction; a job's figure is the mean over its workers; the ETA comes from the rate since the
attempt began. The event log's script (kubetask/eventlog.py) does `JobTally.record` in Redis,
atomically; this module is its reference and what the task, views and tests compute with.

Kubeflow Trainer's progress status maps from a progress event without loss
(`trainer_status`): `progressPercentage` is `fraction * 100`, `estimatedRemainingSeconds` is
`eta_s`, `metrics` are the event's named metrics as `{name, value}` pairs, `lastUpdatedTime`
is its `timestamp`; the stage, its own count (`current`/`total`), the attempt and the
per-worker figures are kubetask's extras on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from pydantic import JsonValue

Stage = tuple[str, float]  # a stage's name and its weight (any positive number)
DEFAULT_STAGES: tuple[Stage, ...] = (("run", 1.0),)
ETA_MIN_GAIN = 0.01  # the fraction gained in this attempt before an ETA means anything
ETA_MIN_ELAPSED_S = 1.0
RUNNING_MAX = 0.99  # a worker still running is not done, even past its last count


def stage_fraction(current: float, total: float | None) -> float | None:
    """A stage's own fraction, clamped to 0..1; None when it has no total."""
    if not total or total <= 0:
        return None
    return min(max(current / total, 0.0), 1.0)


def overall_fraction(
    stages: Sequence[Stage], stage: str | None, current: float, total: float | None
) -> float | None:
    """The completed stages' weights plus the current stage's weight times its own fraction,
    over the total weight. None for a stage the kind does not declare; with one declared
    stage, any stage name counts as it."""
    weights = [max(weight, 0.0) for _, weight in stages]
    whole = sum(weights)
    if whole <= 0:
        return None
    names = [name for name, _ in stages]
    if len(stages) == 1:
        position = 0
    elif stage in names:
        position = names.index(stage)
    else:
        return None
    own = stage_fraction(current, total) or 0.0
    done = sum(weights[:position]) + weights[position] * own
    return min(max(done / whole, 0.0), 1.0)


@dataclass
class WorkerFraction:
    """One worker's fraction within its run: never goes back (a stage repeating a count, or an
    undeclared stage, keeps the figure where it was), and reaches 1 only by `finish` (its
    task succeeded): a task failing after its last count shows 99%, not 100%."""

    stages: Sequence[Stage] = DEFAULT_STAGES
    value: float = 0.0

    def update(self, stage: str | None, current: float, total: float | None) -> float:
        found = overall_fraction(self.stages, stage, current, total)
        if found is not None and found > self.value:
            self.value = max(self.value, min(found, RUNNING_MAX))
        return self.value

    def finish(self) -> float:
        self.value = 1.0
        return self.value

    def skip(self, stage: str) -> None:
        """A declared stage this run will not have (`generate` when the dataset is read):
        its weight leaves the whole, so the figure does not leap past it (and an ETA read
        from that leap is not far too short)."""
        kept = [declared for declared in self.stages if declared[0] != stage]
        if kept:
            self.stages = kept


def job_fraction(workers: Mapping[int, float], completions: int) -> float:
    """The mean of the workers' fractions; a worker not heard from counts as 0."""
    count = max(completions, 1)
    total = sum(min(max(workers.get(i, 0.0), 0.0), 1.0) for i in range(count))
    return min(total / count, 1.0)


def eta_s(*, fraction: float, base: float, elapsed_s: float) -> float | None:
    """Seconds left at the rate since the attempt began (`base`: its fraction then); None
    until it has run a while and gained enough to tell."""
    if fraction >= 1.0:
        return 0.0
    gained = fraction - base
    if elapsed_s < ETA_MIN_ELAPSED_S or gained < ETA_MIN_GAIN:
        return None
    return round((1.0 - fraction) * elapsed_s / gained, 1)


@dataclass(frozen=True)
class JobFigure:
    """What a progress event carries for the whole job."""

    fraction: float
    attempt: int
    eta_s: float | None


@dataclass(frozen=True)
class JobTally:
    """A job's progress state across its workers (kept in Redis by the event log's script).

    A worker's run is one process (one try); a run of an index that had another run before
    is a retry: the job's attempt goes up by one, and only then may the fraction go back."""

    attempt: int = 1
    fraction: float = 0.0
    base: float = 0.0  # the fraction when the attempt began
    since: float | None = None  # when the attempt began (seconds since the epoch)
    runs: Mapping[int, str] = field(default_factory=dict)
    workers: Mapping[int, float] = field(default_factory=dict)

    def record(
        self,
        *,
        index: int,
        run: str,
        worker_fraction: float | None,
        started: float,
        completions: int,
        now: float,
    ) -> tuple[JobTally, JobFigure]:
        attempt, fraction, base = self.attempt, self.fraction, self.base
        since = self.since if self.since is not None else started
        previous = self.runs.get(index)
        if previous is not None and previous != run:
            attempt, fraction, since = attempt + 1, 0.0, started
        workers = dict(self.workers)
        if worker_fraction is not None:
            workers[index] = worker_fraction
        computed = job_fraction(workers, completions)
        if previous is not None and previous != run:
            base = computed
        fraction = max(fraction, computed)
        tally = replace(
            self,
            attempt=attempt,
            fraction=fraction,
            base=base,
            since=since,
            runs={**self.runs, index: run},
            workers=workers,
        )
        eta = eta_s(fraction=fraction, base=base, elapsed_s=now - since)
        return tally, JobFigure(fraction=round(fraction, 6), attempt=attempt, eta_s=eta)


def trainer_status(
    *,
    fraction: float | None,
    eta_s: float | None,
    metrics: Mapping[str, JsonValue],
    timestamp: datetime,
) -> dict[str, JsonValue]:
    """A progress event's figures as Kubeflow Trainer's progress status (see the module)."""
    return {
        "progressPercentage": None if fraction is None else round(fraction * 100, 4),
        "estimatedRemainingSeconds": eta_s,
        "metrics": [{"name": name, "value": value} for name, value in metrics.items()],
        "lastUpdatedTime": timestamp.isoformat(),
    }
