"""The progress reporter a task calls: `update(current, total, message=..., stage=..., **metrics)`.

Each event carries the worker's own overall fraction (`worker_fraction`: the kind's declared
stages and weights, never going back; kubetask/progress.py), from which the event log makes
the job's figure; `complete()` reports the worker done (fraction 1) when its task succeeded.

`update` only builds the event and hands it to a background thread, so a training loop never
waits on the network. The thread starts with the first `update`: a task that reports only its
end (`complete`, then `close`) sends that in its own thread and starts none (a thread's start,
stack and hand-offs are a good part of a short forked task's cost). The thread sends at most
one batch per `min_interval_s`; in a batch, consecutive events of the same stage and index
that carry no metrics are conflated to the newest (a per-signal counter does not flood
subscribers), while every event with metrics (one per epoch, one per trial) is kept.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from pydantic import JsonValue

from kubetask.progress import DEFAULT_STAGES, Stage, WorkerFraction

MAX_PENDING = 10_000

log = logging.getLogger("kubetask.task")


class EventSink(Protocol):
    def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool: ...


def conflate(events: Sequence[dict[str, JsonValue]]) -> list[dict[str, JsonValue]]:
    """Drop events superseded by the next one: same stage and index, and neither has metrics."""
    kept: list[dict[str, JsonValue]] = []
    for event in events:
        if kept and _plain(kept[-1]) and _plain(event) and _same_run(kept[-1], event):
            kept[-1] = event
        else:
            kept.append(event)
    return kept


def _plain(event: dict[str, JsonValue]) -> bool:
    return not event.get("metrics")


def _same_run(a: dict[str, JsonValue], b: dict[str, JsonValue]) -> bool:
    return a.get("stage") == b.get("stage") and a.get("index") == b.get("index")


def progress_fields(
    *,
    job_id: str,
    current: float,
    total: float | None,
    stage: str | None,
    message: str | None,
    metrics: dict[str, JsonValue],
    index: int | None,
    now: datetime,
    worker_fraction: float | None = None,
) -> dict[str, JsonValue]:
    """The progress event as the contract defines it (without `seq`, which Redis assigns)."""
    fraction = None
    if total:
        fraction = min(max(current / total, 0.0), 1.0)
    return {
        "type": "progress",
        "job_id": job_id,
        "timestamp": now.isoformat(),
        "current": current,
        "total": total,
        "progress": fraction,
        "stage": stage,
        "message": message,
        "metrics": metrics,
        "index": index,
        "worker_fraction": worker_fraction,
    }


class ProgressReporter:
    """Collects progress from the task and publishes it from a background thread, started
    by the first `update`."""

    def __init__(
        self,
        sink: EventSink | None,
        *,
        job_id: str,
        index: int | None = None,
        min_interval_s: float = 0.1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stages: Sequence[Stage] = DEFAULT_STAGES,
    ) -> None:
        self._sink = sink
        self._job_id = job_id
        self._index = index
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._pending: deque[dict[str, JsonValue]] = deque(maxlen=MAX_PENDING)
        self._wake = threading.Condition()
        self._closed = False
        self._stage: str | None = None
        self._fraction = WorkerFraction(stages)
        self.last: dict[str, JsonValue] | None = None
        self._thread: threading.Thread | None = None

    def update(
        self,
        current: float,
        total: float | None = None,
        *,
        message: str | None = None,
        stage: str | None = None,
        **metrics: JsonValue,
    ) -> None:
        """Report progress; `stage` sticks until changed. Never blocks, never raises."""
        if stage is not None and stage != self._stage:
            log.info("stage %s%s", stage, f": {message}" if message else "")
        if stage is not None:
            self._stage = stage
        own = self._fraction.update(self._stage, current, total)
        if self._thread is None and self._sink is not None:
            self._thread = threading.Thread(target=self._run, name="kubetask-progress", daemon=True)
            self._thread.start()
        self._emit(
            progress_fields(
                job_id=self._job_id,
                current=current,
                total=total,
                stage=self._stage,
                message=message,
                metrics=metrics,
                index=self._index,
                now=self._clock(),
                worker_fraction=round(own, 6),
            )
        )

    def skip(self, stage: str) -> None:
        """A stage the kind declares that this run will not have: see `WorkerFraction.skip`."""
        self._fraction.skip(stage)

    def complete(self) -> None:
        """Report this worker done (its fraction 1): its task succeeded. The stage's count is
        full; the stage and message stay the last ones reported."""
        last = self.last or {}
        total, message = last.get("total"), last.get("message")
        done = total if isinstance(total, int | float) and total > 0 else 1
        self._fraction.finish()
        self._emit(
            progress_fields(
                job_id=self._job_id,
                current=done,
                total=done,
                stage=self._stage,
                message=message if isinstance(message, str) else None,
                metrics={},
                index=self._index,
                now=self._clock(),
                worker_fraction=1.0,
            )
        )

    def _emit(self, event: dict[str, JsonValue]) -> None:
        self.last = event
        if self._sink is None:
            return
        with self._wake:
            self._pending.append(event)
            self._wake.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is pending and stop the thread, waiting for it at most `timeout_s`;
        without a thread, send it here (bounded by the sink's own timeouts: the publisher's
        socket gives up after 2 s)."""
        if self._sink is None or self._closed:
            return
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
        elif self._pending:
            self._send(list(self._pending))
            self._pending.clear()

    def _send(self, batch: list[dict[str, JsonValue]]) -> None:
        assert self._sink is not None
        try:
            self._sink.publish(conflate(batch))
        except Exception:  # a reporting failure must never reach the task
            log.exception("progress publishing failed; events dropped")

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                batch = list(self._pending)
                self._pending.clear()
                closing = self._closed
            self._send(batch)
            if closing:
                return
            with self._wake:
                self._wake.wait_for(lambda: self._closed, self._min_interval_s)
