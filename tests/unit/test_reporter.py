"""The progress reporter: conflation, the event fields, and delivery from its thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from pydantic import JsonValue

from kubetask.jobs.reporter import ProgressReporter, conflate, progress_fields

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class RecordingSink:
    """A sink that keeps every batch it is given."""

    def __init__(self, *, answer: bool = True) -> None:
        self.batches: list[list[dict[str, JsonValue]]] = []
        self._answer = answer
        self._lock = threading.Lock()

    def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool:
        with self._lock:
            self.batches.append(list(events))
        return self._answer

    @property
    def events(self) -> list[dict[str, JsonValue]]:
        with self._lock:
            return [event for batch in self.batches for event in batch]


def event(
    current: int, *, stage: str | None = "train", index: int | None = None, **metrics: JsonValue
) -> dict[str, JsonValue]:
    return {"current": current, "stage": stage, "index": index, "metrics": dict(metrics)}


def progress_threads() -> int:
    return sum(t.name == "kubetask-progress" for t in threading.enumerate())


# --- conflate -------------------------------------------------------------------------------


def test_same_stage_and_index_without_metrics_collapse_to_the_newest() -> None:
    assert conflate([event(1), event(2), event(3)]) == [event(3)]


def test_events_with_metrics_are_always_kept() -> None:
    events = [event(1, epoch=1), event(2, epoch=2), event(3, epoch=3)]
    assert conflate(events) == events


def test_a_plain_event_does_not_swallow_an_event_with_metrics() -> None:
    events = [event(1), event(2, loss=0.5), event(3), event(4)]
    assert conflate(events) == [event(1), event(2, loss=0.5), event(4)]


def test_a_stage_change_is_kept() -> None:
    events = [event(1, stage="load"), event(2, stage="load"), event(1, stage="train")]
    assert conflate(events) == [event(2, stage="load"), event(1, stage="train")]


def test_different_indexes_are_not_conflated() -> None:
    events = [event(1, index=0), event(1, index=1), event(2, index=1)]
    assert conflate(events) == [event(1, index=0), event(2, index=1)]


def test_conflate_of_nothing_is_nothing() -> None:
    assert conflate([]) == []


# --- progress_fields ------------------------------------------------------------------------


def fields(current: float, total: float | None) -> dict[str, JsonValue]:
    return progress_fields(
        job_id="j",
        current=current,
        total=total,
        stage="train",
        message="m",
        metrics={"loss": 0.1},
        index=3,
        now=T0,
    )


def test_progress_fields_are_the_contract_event() -> None:
    assert fields(5, 20) == {
        "type": "progress",
        "job_id": "j",
        "timestamp": T0.isoformat(),
        "current": 5,
        "total": 20,
        "progress": 0.25,
        "stage": "train",
        "message": "m",
        "metrics": {"loss": 0.1},
        "index": 3,
        "worker_fraction": None,
    }


@pytest.mark.parametrize(
    ("current", "total", "progress"),
    [(0, 10, 0.0), (10, 10, 1.0), (15, 10, 1.0), (-3, 10, 0.0), (3, None, None), (3, 0, None)],
)
def test_progress_is_a_fraction_clamped_to_0_1(
    current: float, total: float | None, progress: float | None
) -> None:
    assert fields(current, total)["progress"] == progress


# --- ProgressReporter -----------------------------------------------------------------------


def test_every_event_with_metrics_is_delivered_in_order_after_close() -> None:
    sink = RecordingSink()
    reporter = ProgressReporter(sink, job_id="j", min_interval_s=0.2)
    for epoch in range(1, 51):
        reporter.update(epoch, 50, stage="train", epoch=epoch, loss=1 / epoch)
    reporter.close()
    assert [e["metrics"] for e in sink.events] == [
        {"epoch": epoch, "loss": 1 / epoch} for epoch in range(1, 51)
    ]


def test_plain_updates_are_conflated_and_the_newest_is_delivered() -> None:
    sink = RecordingSink()
    reporter = ProgressReporter(sink, job_id="j", min_interval_s=0.2)
    for i in range(1, 1001):
        reporter.update(i, 1000, stage="generate")
        if i == 500:
            reporter.update(i, 1000, stage="generate", checkpoint=i)
    reporter.close()
    delivered = sink.events
    assert len(delivered) < 100
    assert delivered[-1]["current"] == 1000
    assert delivered[-1]["progress"] == 1.0
    assert {"checkpoint": 500} in [e["metrics"] for e in delivered]


def test_stage_sticks_until_changed() -> None:
    sink = RecordingSink()
    reporter = ProgressReporter(sink, job_id="j", min_interval_s=0.2)
    reporter.update(1, 3, stage="load", step=1)
    reporter.update(2, 3, step=2)
    reporter.update(3, 3, stage="train", step=3)
    reporter.update(4, 3, step=4)
    reporter.close()
    assert [e["stage"] for e in sink.events] == ["load", "load", "train", "train"]


def test_events_carry_the_job_index_and_the_clocks_time() -> None:
    sink = RecordingSink()
    reporter = ProgressReporter(sink, job_id="job-1", index=4, clock=lambda: T0)
    reporter.update(1, 2, message="half", loss=0.5)
    reporter.close()
    (only,) = sink.events
    assert only["job_id"] == "job-1"
    assert only["index"] == 4
    assert only["timestamp"] == T0.isoformat()
    assert only["message"] == "half"
    assert reporter.last == only


def test_the_thread_starts_with_the_first_update_and_stops_on_close() -> None:
    before = progress_threads()
    reporter = ProgressReporter(RecordingSink(), job_id="j")
    assert progress_threads() == before
    reporter.update(1, 2)
    assert progress_threads() == before + 1
    reporter.close()
    reporter.close()  # closing twice is harmless
    assert progress_threads() == before


def test_a_task_that_reports_only_its_end_sends_it_on_close_without_a_thread() -> None:
    before = progress_threads()
    sink = RecordingSink()
    reporter = ProgressReporter(sink, job_id="j", clock=lambda: T0)
    reporter.complete()
    assert progress_threads() == before
    assert sink.events == []  # not yet: close sends it
    reporter.close()
    (done,) = sink.events
    assert done["worker_fraction"] == 1.0
    assert progress_threads() == before


class RaisingSink:
    def __init__(self) -> None:
        self.tried = 0

    def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool:
        self.tried += 1
        raise ConnectionError("redis is gone")


def test_a_raising_sink_never_reaches_the_task_closing_without_a_thread() -> None:
    sink = RaisingSink()
    reporter = ProgressReporter(sink, job_id="j")
    reporter.complete()
    reporter.close()  # the error is logged, not raised
    assert sink.tried == 1


def test_a_failing_sink_does_not_stop_updates_or_close() -> None:
    sink = RecordingSink(answer=False)
    reporter = ProgressReporter(sink, job_id="j", min_interval_s=0.01)
    reporter.update(1, 2, loss=1.0)
    reporter.update(2, 2, loss=0.5)
    reporter.close()
    assert [e["current"] for e in sink.events] == [1, 2]


def test_without_a_sink_no_thread_starts_and_update_still_works() -> None:
    before = progress_threads()
    reporter = ProgressReporter(None, job_id="j", clock=lambda: T0)
    assert progress_threads() == before
    reporter.update(1, 4, stage="train", loss=0.3)
    reporter.update(2, 4)
    assert reporter.last is not None
    assert reporter.last["progress"] == 0.5
    assert reporter.last["stage"] == "train"
    reporter.close()
    assert progress_threads() == before


def test_a_sink_that_raises_never_reaches_the_task_and_publishing_goes_on() -> None:
    class FailsOnce:
        def __init__(self) -> None:
            self.calls = 0
            self.delivered: list[dict[str, JsonValue]] = []
            self.first_done = threading.Event()

        def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool:
            self.calls += 1
            if self.calls == 1:
                self.first_done.set()
                raise OSError("disk on fire")
            self.delivered.extend(events)
            return True

    sink = FailsOnce()
    reporter = ProgressReporter(sink, job_id="j", min_interval_s=0)
    reporter.update(1, 2)
    assert sink.first_done.wait(5)
    reporter.update(2, 2, loss=0.1)
    reporter.close()
    assert [e["current"] for e in sink.delivered] == [2]


# --- the worker's own fraction --------------------------------------------------------------


def test_each_event_carries_the_workers_fraction_over_the_declared_stages() -> None:
    stages = (("load", 1.0), ("work", 8.0), ("save", 1.0))
    reporter = ProgressReporter(None, job_id="j", clock=lambda: T0, stages=stages)
    seen = []
    for current, total, stage in [(1, 1, "load"), (4, 8, "work"), (8, 8, "work"), (0, 2, "save")]:
        reporter.update(current, total, stage=stage)
        assert reporter.last is not None
        seen.append(reporter.last["worker_fraction"])
    assert seen == [0.1, 0.5, 0.9, 0.9]  # save 0/2 does not go back to 0


def test_complete_reports_the_worker_done_with_its_stage_count_full() -> None:
    sink = RecordingSink()
    reporter = ProgressReporter(sink, job_id="j", clock=lambda: T0, min_interval_s=0.0)
    reporter.update(3, 10, stage="steps", message="step 3")
    reporter.complete()
    reporter.close()
    last = sink.events[-1]
    assert (last["worker_fraction"], last["current"], last["total"]) == (1.0, 10, 10)
    assert (last["stage"], last["message"]) == ("steps", "step 3")
