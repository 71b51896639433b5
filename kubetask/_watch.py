"""`kubetask watch`: a live line for the job (its stage, a bar and percentage of the whole
job, the stage's own count, the job's ETA, then message and metrics in what width is left),
one more per worker of an Indexed job (its own fraction), state changes as lines above them,
a note on stderr when the stream is resumed after a dropped connection, and a last frame that
says how it ended.

Events only change what is shown; the lines are drawn at a steady rate (REFRESH_PER_SECOND),
each from `_live_line.layout` at the terminal's width, so a burst of events never makes them
flicker and a field never moves. On a terminal they redraw in place; piped, the last frame is
printed once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from kubetask._display import (
    STATE_STYLES,
    fraction,
    human_duration,
    metrics_text,
    state_text,
    terminal_safe,
)
from kubetask._live_line import LineParts, Widths, count_text, layout
from kubetask._sse import GapEvent, JobEvent
from kubetask.models import JobState, ProgressEvent, StateEvent

REFRESH_PER_SECOND = 4
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
OUTCOME_MARKERS = {JobState.SUCCEEDED: "✔", JobState.FAILED: "✘", JobState.CANCELLED: "■"}
INTERRUPTED = "interrupted"


@dataclass
class Eta:
    """Time left for one bar, from the rate since its stage began (timestamps of events):
    for events of an older server, which carry no job fraction nor ETA of their own."""

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


@dataclass(frozen=True)
class Bar:
    """What one task's line shows, as of its latest event."""

    label: str
    stage: str | None
    share: float | None
    count: str
    detail: str
    eta_at: float | None  # the monotonic time it should end at, while that is known


def next_bar(
    previous: Bar | None,
    event: ProgressEvent,
    left: float | None,
    now: float,
    *,
    worker: bool = False,
) -> Bar:
    """The bar after `event`: the job's, or with `worker` its worker's own. A detail (message,
    metrics) stays until a new one comes, and an ETA until a new one comes (per stage, for
    an older server's events), so the line never blanks between two events."""
    stage = terminal_safe(event.stage or "progress")
    per_index = worker or (event.fraction is None and event.index is not None)
    label = f"[{event.index}] {stage}" if per_index else stage
    share = event.worker_fraction if worker else fraction(event)
    detail = terminal_safe("  ".join(filter(None, (event.message, metrics_text(event.metrics)))))
    eta_at = None if left is None or worker else now + left
    if previous is not None:
        detail = detail or previous.detail
        same_estimate = event.fraction is not None or previous.stage == event.stage
        if eta_at is None and not worker and same_estimate:
            eta_at = previous.eta_at
    return Bar(label, event.stage, share, count_text(event.current, event.total), detail, eta_at)


class LiveWatch:
    """Shows a job's events as they come; use as a context manager around the stream, and
    call `finish` with how it ended (a job state, or INTERRUPTED) before leaving it."""

    def __init__(
        self,
        console: Console,
        *,
        notes: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.notes = console if notes is None else notes
        self._clock = clock
        self._bars: dict[int | None, Bar] = {}
        self._etas: dict[int | None, Eta] = {}
        self._widths = Widths()
        self._outcome: JobState | str | None = None
        self._live = Live(
            self,
            console=console,
            auto_refresh=True,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveWatch:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._outcome is None and exc_type is KeyboardInterrupt:
            self._outcome = INTERRUPTED
        self._live.stop()
        if self._bars and not self.console.is_terminal:
            self.console.line()  # a file gets the last frame once, as whole lines

    def finish(self, outcome: JobState | str) -> None:
        """The last frame shows this outcome instead of a spinner and an ETA."""
        self._outcome = outcome

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
        """A line (plain text, never markup) on `notes`; above the bars where both are one
        screen (printed there, it would break their redrawing in place)."""
        line = Text(terminal_safe(message), style="yellow")
        same_screen = self.console.is_terminal and self.notes.is_terminal
        (self.console if same_screen else self.notes).print(line)

    def lines(self, width: int) -> list[Text]:
        """The bars as of now, laid out for `width` cells."""
        now = self._clock()
        marker, style, eta_override = self._marker(now)
        lines = []
        for _, bar in sorted(
            self._bars.items(), key=lambda item: (item[0] is not None, item[0] or 0)
        ):
            if eta_override is not None:
                eta = eta_override
            elif bar.eta_at is None or (bar.share or 0.0) >= 1.0:
                eta = ""
            else:
                eta = f"eta {human_duration(max(0.0, bar.eta_at - now))}"
            parts = LineParts(marker, bar.label, bar.share, bar.count, eta, bar.detail, style)
            lines.append(layout(parts, width, self._widths))
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)

    def _marker(self, now: float) -> tuple[str, str, str | None]:
        if self._outcome is None:
            return SPINNER[int(now * REFRESH_PER_SECOND * 2) % len(SPINNER)], "blue", None
        if isinstance(self._outcome, JobState):
            style = STATE_STYLES[self._outcome]
            return OUTCOME_MARKERS.get(self._outcome, "•"), style, self._outcome.value
        return "⏸", "yellow", self._outcome

    def _show_progress(self, event: ProgressEvent) -> None:
        now = self._clock()
        if event.fraction is None:  # an older server: a bar per task and stage, as it was
            left = self._etas.setdefault(event.index, Eta()).update(event)
            bars = {event.index: next_bar(self._bars.get(event.index), event, left, now)}
        else:  # the job's bar, and a worker's own beside it
            bars = {None: next_bar(self._bars.get(None), event, event.eta_s, now)}
            if event.index is not None and event.worker_fraction is not None:
                previous = self._bars.get(event.index)
                bars[event.index] = next_bar(previous, event, None, now, worker=True)
        self._bars = {**self._bars, **bars}  # whole: the refresh thread reads it
        self._widths = Widths(
            label=max(self._widths.label, *(len(bar.label) for bar in bars.values())),
            count=max(self._widths.count, len(count_text(event.total or 0, event.total))),
            eta=max(self._widths.eta, len("eta 00m00s")),
        )

    def _show_state(self, event: StateEvent) -> None:
        line = Text(f"{event.timestamp.astimezone():%H:%M:%S} ")
        line.append_text(state_text(event.state))
        why = " - ".join(filter(None, (event.reason, event.message)))
        if why:
            line.append(f"  {terminal_safe(why)}", style="dim")
        if event.attempts > 1:
            line.append(f"  (attempt {event.attempts})", style="dim")
        self.console.print(line)

    def _show_gap(self, event: GapEvent) -> None:
        self.note(f"events {event.from_seq}..{event.to_seq} are no longer kept")
