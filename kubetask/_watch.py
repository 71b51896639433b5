"""`kubetask watch`: a live progress bar per task (stage, count, message, metrics, ETA), state
changes as lines above it, and a note when the stream is resumed after a dropped connection.

On a terminal the bars redraw in place; piped, the final bars are printed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.text import Text

from kubetask._display import fraction, human_duration, metrics_text, state_text
from kubetask._sse import GapEvent, JobEvent
from kubetask.models import ProgressEvent, StateEvent

BAR_TOTAL = 1000  # bars run on fractions; the count is shown as text


@dataclass
class Eta:
    """Time left for one bar, from the rate since its stage began (timestamps of events)."""

    stage: str | None = None
    start: tuple[float, float] | None = None  # (event time, fraction) when the stage began

    def update(self, event: ProgressEvent) -> float | None:
        """Seconds left as of this event, or None while the rate is unknown."""
        share = fraction(event)
        if share is None:
            return None
        moment = event.timestamp.timestamp()
        if self.start is None or event.stage != self.stage or share < self.start[1]:
            self.stage, self.start = event.stage, (moment, share)
            return None
        elapsed, done = moment - self.start[0], share - self.start[1]
        if elapsed <= 0 or done <= 0:
            return None
        return (1.0 - share) * elapsed / done


class EtaColumn(ProgressColumn):
    """`eta 1m05s`, counting down from the last estimate."""

    def render(self, task: Task) -> Text:
        eta_at = task.fields.get("eta_at")
        if task.finished or not isinstance(eta_at, float):
            return Text("")
        return Text(f"eta {human_duration(max(0.0, eta_at - time.monotonic()))}", style="cyan")


class LiveWatch:
    """Shows a job's events as they come; use as a context manager around the stream."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}", markup=False),
            EtaColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            console=console,
        )
        self._bars: dict[int | None, TaskID] = {}
        self._etas: dict[int | None, Eta] = {}

    def __enter__(self) -> LiveWatch:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, event: JobEvent) -> None:
        if isinstance(event, ProgressEvent):
            self._show_progress(event)
        elif isinstance(event, StateEvent):
            self._show_state(event)
        else:
            self._show_gap(event)

    def reconnecting(self, last_seq: int, reason: str) -> None:
        """The `on_reconnect` hook of `JobHandle.events`."""
        self.note(f"connection lost ({reason}); resuming after event {last_seq}")

    def note(self, message: str) -> None:
        """A line above the bars (plain text, never markup)."""
        self._progress.console.print(Text(message, style="yellow"))

    def _show_progress(self, event: ProgressEvent) -> None:
        bar = self._bars.get(event.index)
        if bar is None:
            bar = self._progress.add_task("", total=BAR_TOTAL, count="", detail="", eta_at=None)
            self._bars[event.index] = bar
        left = self._etas.setdefault(event.index, Eta()).update(event)
        share = fraction(event)
        stage = event.stage or "progress"
        count = f"{event.current:g}/{event.total:g}" if event.total else f"{event.current:g}"
        detail = "  ".join(filter(None, (event.message, metrics_text(event.metrics))))
        self._progress.update(
            bar,
            description=stage if event.index is None else f"[{event.index}] {stage}",
            completed=None if share is None else share * BAR_TOTAL,
            count=count,
            detail=detail,
            eta_at=None if left is None else time.monotonic() + left,
        )

    def _show_state(self, event: StateEvent) -> None:
        line = Text(f"{event.timestamp.astimezone():%H:%M:%S} ")
        line.append_text(state_text(event.state))
        why = " - ".join(filter(None, (event.reason, event.message)))
        if why:
            line.append(f"  {why}", style="dim")
        if event.attempts > 1:
            line.append(f"  (attempt {event.attempts})", style="dim")
        self._progress.console.print(line)

    def _show_gap(self, event: GapEvent) -> None:
        self.note(f"events {event.from_seq}..{event.to_seq} are no longer kept")
