"""How the CLI shows jobs: states in colour, durations, the job table, one job's summary,
and the console that prints them to a terminal or a pipe.

Pure renderers: each takes the data (and `now`) and returns rich renderables or text. Text
that comes from the server goes through `terminal_safe` first, so that a job's message can
never move the cursor, recolour or retitle the user's terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import JsonValue
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from kubetask._live_line import count_text, percent_text
from kubetask.models import JobState, JobView, KindInfo, ProgressEvent

PIPED_WIDTH = 1_000_000  # piped, no line is ever this long: none is wrapped

STATE_STYLES = {
    JobState.QUEUED: "cyan",
    JobState.PENDING: "yellow",
    JobState.RUNNING: "blue",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "bold red",
    JobState.CANCELLED: "magenta",
}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 but tab and newline
_LINE_END_SPACES = re.compile(r" +$", re.MULTILINE)


class PipeAwareConsole(Console):
    """rich's console, for a terminal or a pipe. Piped, a line is never wrapped (a script or
    a log gets each message on one line, whatever $COLUMNS says) and `show` drops the spaces
    that pad a table's cells; a closed stream is a `BrokenPipeError` for the CLI to end the
    command with, not rich's own exit 1 (which says "job failed" here)."""

    def __init__(self, *, stderr: bool = False) -> None:
        super().__init__(stderr=stderr)
        if not self.is_terminal:
            self.width = PIPED_WIDTH

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError

    def show(self, renderable: RenderableType) -> None:
        """Print `renderable` (a table); piped, its lines without trailing spaces."""
        if self.is_terminal:
            self.print(renderable)
            return
        with self.capture() as captured:
            self.print(renderable)
        self.out(unpadded(captured.get()), end="", highlight=False)


def unpadded(text: str) -> str:
    """`text` without the spaces at the end of its lines."""
    return _LINE_END_SPACES.sub("", text)


def terminal_safe(text: str) -> str:
    """`text` with each control character (ESC, BEL, CR, DEL, C1…) shown as `\\x1b`; tab and
    newline kept."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def state_text(state: JobState) -> Text:
    return Text(state.value, style=STATE_STYLES[state])


def human_duration(seconds: float) -> str:
    """3.2s, 4m05s, 2h03m, 3d04h."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def age(view: JobView, now: datetime) -> str:
    return human_duration(max(0.0, (now - view.created_at).total_seconds()))


def duration(view: JobView, now: datetime) -> str:
    """How long it has run (to its end, or to now); empty if it never started."""
    if view.started_at is None:
        return ""
    end = view.finished_at or now
    return human_duration(max(0.0, (end - view.started_at).total_seconds()))


def fraction(event: ProgressEvent) -> float | None:
    """The job's fraction (all stages, all workers); from an older server, the stage's."""
    if event.fraction is not None:
        return event.fraction
    if event.progress is not None:
        return event.progress
    if event.total:
        return max(0.0, min(1.0, event.current / event.total))
    return None


def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.4g}"


def metrics_text(metrics: Mapping[str, JsonValue]) -> str:
    """`epoch=3 loss=0.3121 val_accuracy=0.9`."""
    parts = []
    for key, value in metrics.items():
        shown = _number(value) if isinstance(value, int | float) else json.dumps(value)
        parts.append(f"{terminal_safe(key)}={shown}")
    return " ".join(parts)


def progress_text(event: ProgressEvent | None) -> str:
    """`42% train 3/10`: the job's fraction, the current stage and its own count (and the
    attempt, from the second on)."""
    if event is None:
        return ""
    share = fraction(event)
    parts = [] if share is None else [percent_text(share).strip()]
    if event.stage:
        parts.append(event.stage)
    if event.total:
        parts.append(count_text(event.current, event.total))
    if event.attempt > 1:
        parts.append(f"(attempt {event.attempt})")
    return " ".join(parts)


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def job_rows(views: Iterable[JobView], now: datetime, *, wide: bool = False) -> list[list[str]]:
    """`kubetask list`'s table as text cells, the header first (`wide`: more columns)."""
    header = ["ID", "KIND", "NAME", "STATE", "REASON", "PROGRESS", "AGE", "DURATION"]
    if wide:
        header += ["ATTEMPTS", "LABELS", "BACKEND", "MESSAGE"]
    rows = [header]
    for view in views:
        row = [
            view.id,
            view.kind,
            view.name or "",
            view.state.value,
            view.reason or "",
            progress_text(view.progress),
            age(view, now),
            duration(view, now),
        ]
        if wide:
            message = view.message or (view.error.message if view.error else "")
            row += [str(view.attempts), _labels(view.labels), view.backend.name, message]
        rows.append([" ".join(terminal_safe(cell).split()) for cell in row])  # one line each
    return rows


def jobs_table(rows: list[list[str]]) -> Table:
    """The rows (header first) for a terminal: a row never wraps; long cells end in "…"."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    right = {"AGE", "DURATION", "ATTEMPTS"}
    squeezable = {"NAME", "REASON", "PROGRESS", "LABELS", "MESSAGE"}
    for title in rows[0]:  # rich narrows the columns that may wrap; their cells never do
        table.add_column(
            title, no_wrap=title not in squeezable, justify="right" if title in right else "left"
        )
    state_at = rows[0].index("STATE")
    for row in rows[1:]:
        cells = [Text(cell, no_wrap=True, overflow="ellipsis") for cell in row]
        cells[state_at] = state_text(JobState(row[state_at]))
        table.add_row(*cells)
    return table


def plain_rows(rows: list[list[str]]) -> str:
    """The rows for a pipe: one line per row, columns aligned by spaces, never cut or
    wrapped; an empty cell is "-" so that every row has the same number of fields."""
    cells = [[cell or "-" for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in cells
    )


def kinds_table(kinds: Iterable[KindInfo]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("KIND", no_wrap=True)
    table.add_column("IMAGE", no_wrap=True)
    table.add_column("DESCRIPTION")
    for info in kinds:
        table.add_row(*(Text(terminal_safe(t)) for t in (info.kind, info.image, info.description)))
    return table


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="seconds")


def summary(view: JobView, now: datetime) -> RenderableType:
    """One job, readable: what it is, where it stands, and its result or error."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    state = state_text(view.state)
    if view.reason or view.message:
        why = " - ".join(filter(None, (view.reason, view.message)))
        state.append(f"  {terminal_safe(why)}")
    rows: list[tuple[str, str | Text]] = [
        ("id", view.id),
        ("kind", view.kind),
        ("name", view.name or ""),
        ("state", state),
        ("labels", ", ".join(f"{k}={v}" for k, v in view.labels.items())),
        ("created", f"{_when(view.created_at)} ({age(view, now)} ago)"),
        ("started", _when(view.started_at)),
        ("finished", _when(view.finished_at)),
        ("duration", duration(view, now)),
        ("attempts", str(view.attempts)),
        ("backend", f"{view.backend.backend} {view.backend.name}"),
    ]
    if view.progress is not None:
        progress = view.progress
        rows.append(("progress", progress_text(progress)))
        if progress.eta_s is not None and not view.state.terminal:
            rows.append(("eta", human_duration(progress.eta_s)))
        for worker in view.workers:
            share = percent_text(worker.fraction).strip()
            rows.append((f"worker {worker.index}", f"{share} {worker.stage or ''}".strip()))
        rows.append(("message", progress.message or ""))
        rows.append(("metrics", metrics_text(progress.metrics)))
    for name, value in rows:
        if value:
            grid.add_row(name, Text(terminal_safe(value)) if isinstance(value, str) else value)
    parts: list[RenderableType] = [grid]
    if view.result is not None:
        parts.append(Text("result", style="bold green"))
        parts.append(Text(json.dumps(view.result, indent=2)))
    if view.error is not None:
        parts.append(error_text(view))
    return Group(*parts)


def error_text(view: JobView) -> Text:
    """A failed job's error: type and message, the last frames, and what to do."""
    error = view.error
    text = Text()
    if error is None:
        return text
    text.append(terminal_safe(f"{error.type}: {error.message}\n"), style="bold red")
    for frame in error.traceback:
        text.append(terminal_safe(f"  {frame.rstrip()}\n"), style="dim")
    if error.exit_code is not None:
        text.append(f"exit code {error.exit_code}\n")
    if error.suggestion:
        text.append("suggestion: ", style="bold")
        text.append(terminal_safe(f"{error.suggestion}\n"))
    return text
