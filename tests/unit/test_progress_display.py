"""How the CLI shows the one progress model: the job's fraction with the stage's own count
beside it, the attempt, the ETA, each worker; a failed job where it stopped."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from kubetask._display import progress_text, summary
from kubetask._watch import LiveWatch
from kubetask.models import BackendRef, JobRequest, JobState, JobView, ProgressEvent, WorkerProgress

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(seq: int, **fields: object) -> ProgressEvent:
    base = {"job_id": "j", "seq": seq, "timestamp": T0 + timedelta(seconds=seq)}
    return ProgressEvent.model_validate(
        {**base, "current": 96, "total": 96, "progress": 1.0, "stage": "generate", **fields}
    )


def test_the_percentage_is_the_jobs_not_the_stages() -> None:
    """A job that failed after its first stage used to show `100% generate 96/96`."""
    assert progress_text(event(1, fraction=0.45)) == "45% generate 96/96"


def test_a_retry_shows_its_attempt() -> None:
    assert progress_text(event(1, fraction=0.1, attempt=2)) == "10% generate 96/96 (attempt 2)"


def test_the_summary_shows_the_eta_while_running_and_each_worker() -> None:
    view = JobView(
        id="j", kind="hpo", name=None, state=JobState.RUNNING, created_at=T0,
        progress=event(1, fraction=0.5, eta_s=75.0),
        workers=[WorkerProgress(index=0, fraction=0.75, stage="trial"),
                 WorkerProgress(index=1, fraction=0.25, stage="data")],
        request=JobRequest(kind="hpo", completions=2, parallelism=2),
        backend=BackendRef(backend="local", name="j"),
    )  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=100).print(summary(view, T0))
    text = out.getvalue()
    assert "eta" in text
    assert "1m15s" in text
    assert "worker 0  75% trial" in text
    assert "worker 1  25% data" in text


def test_the_watch_line_follows_the_job_as_workers_interleave() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    with LiveWatch(console, clock=lambda: 1000.0) as live:
        for seq, (index, own, job) in enumerate([(0, 0.5, 0.25), (1, 0.2, 0.35), (1, 0.6, 0.55)]):
            live.update(
                event(seq + 1, stage="trial", current=seq, total=10, index=index,
                      worker_fraction=own, fraction=job, eta_s=30.0)
            )  # fmt: skip
        lines = [line.plain for line in live.lines(100)]
        live.finish(JobState.SUCCEEDED)
    assert len(lines) == 3  # the job, then each worker
    assert lines[0].startswith("⠋ trial ")
    assert " 55% " in lines[0]  # the job's, not the last worker's
    assert "eta 30.0s" in lines[0]
    assert "[0] trial" in lines[1]
    assert " 50% " in lines[1]
    assert "[1] trial" in lines[2]
    assert " 60% " in lines[2]
