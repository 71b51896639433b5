"""The job view's progress: settled by the job's state, and each worker of an Indexed job."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import JsonValue

from kubetask.controller.records import settled, settled_worker
from kubetask.eventlog import WorkerRun, parse_workers, progress_args
from kubetask.models import JobState, ProgressEvent, WorkerProgress

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(fraction: float, eta_s: float | None = 12.0) -> ProgressEvent:
    return ProgressEvent(
        job_id="j", seq=4, timestamp=T0, current=96, total=96, progress=1.0, stage="generate",
        fraction=fraction, eta_s=eta_s, attempt=1,
    )  # fmt: skip


def test_a_succeeded_job_is_whole_with_nothing_left() -> None:
    shown = settled(event(0.9), JobState.SUCCEEDED)
    assert shown is not None
    assert (shown.fraction, shown.eta_s) == (1.0, 0.0)


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.CANCELLED])
def test_a_failed_or_cancelled_job_stays_where_it_stopped(state: JobState) -> None:
    shown = settled(event(0.9), state)
    assert shown is not None
    assert (shown.fraction, shown.eta_s) == (0.9, None)  # not 100%, and no time to guess


def test_a_running_job_is_shown_as_reported() -> None:
    assert settled(event(0.4), JobState.RUNNING) == event(0.4)
    assert settled(None, JobState.SUCCEEDED) is None


def test_the_workers_of_a_succeeded_job_are_whole() -> None:
    worker = WorkerProgress(index=1, fraction=0.5, stage="trial")
    assert settled_worker(worker, JobState.SUCCEEDED).fraction == 1.0
    assert settled_worker(worker, JobState.FAILED) == worker


def test_every_worker_is_listed_the_unheard_at_zero() -> None:
    raw = {"run:0": "a", "fraction:0": "0.75", "stage:0": "trial", "fraction:2": "bad"}
    assert parse_workers(raw, 3) == [
        WorkerProgress(index=0, fraction=0.75, stage="trial"),
        WorkerProgress(index=1, fraction=0.0, stage=None),
        WorkerProgress(index=2, fraction=0.0, stage=None),
    ]


def test_a_tasks_progress_event_leaves_the_jobs_figure_to_the_event_log() -> None:
    fields: dict[str, JsonValue] = {
        "type": "progress", "job_id": "j", "timestamp": T0.isoformat(), "current": 1,
        "total": 2, "stage": None, "index": None, "worker_fraction": None, "fraction": 0.9,
        "attempt": 7, "eta_s": 1.0,
    }  # fmt: skip
    body, _limit, index, run, own, stage, started, now, completions = progress_args(
        fields, WorkerRun(run="r1", started=T0.timestamp() - 5, completions=2)
    )
    assert not any(f'"{name}"' in body for name in ("fraction", "attempt", "eta_s"))
    assert body.startswith('"type":"progress"')  # the script adds the opening brace
    assert (index, run, own, stage, completions) == ("0", "r1", "", "", "2")
    assert float(now) - float(started) == 5.0
