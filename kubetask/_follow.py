"""Following one job to its end (`submit --wait`, `watch`): the live lines, the outcome and
the exit code that says it; Ctrl-C stops the watching, never the job."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import IntEnum

import typer
from rich.console import Console
from rich.text import Text

from kubetask import _display
from kubetask._watch import INTERRUPTED, LiveWatch
from kubetask.client import JobHandle
from kubetask.errors import StreamLost
from kubetask.models import JobState, JobView


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    CANCELLED = 3
    ERROR = 4
    TIMEOUT = 5
    INTERRUPTED = 130
    CLOSED_OUTPUT = 141  # stdout closed (`| head -1`): 128 + SIGPIPE, as a shell tool's


EXIT_FOR_STATE = {
    JobState.SUCCEEDED: ExitCode.OK,
    JobState.FAILED: ExitCode.FAILED,
    JobState.CANCELLED: ExitCode.CANCELLED,
}


def follow(
    console: Console,
    handle: JobHandle,
    *,
    notes: Console,
    timeout: float | None,
    server: str | None,
) -> ExitCode:
    """Show a job live until it ends (notes on the stream, such as a reconnect, on `notes`);
    its exit code. Ctrl-C stops watching, not the job, and says how to watch it again or
    cancel it."""
    view = handle.view()
    title = f"{view.kind}" + (f" {view.name}" if view.name else "")
    header = Text("job ")  # Text, never markup: a name such as "[red]x" shows as it is
    header.append(_display.terminal_safe(view.id), style="bold")
    header.append(_display.terminal_safe(f" ({title}):"))
    console.print(header, _display.state_text(view.state))
    if not view.state.terminal:
        try:
            with LiveWatch(console, notes=notes) as live:
                try:
                    for event in handle.events(timeout=timeout, on_reconnect=live.reconnecting):
                        live.update(event)
                except StreamLost as exc:
                    live.note(f"{exc}; polling instead")
                view = handle.wait(timeout)
                live.finish(view.state)
        except KeyboardInterrupt:
            typer.echo(interrupted_hint(view.id, server), err=True)
            return ExitCode.INTERRUPTED
    return outcome(console, view)


def interrupted_hint(job_id: str, server: str | None) -> str:
    where = f" --server {server}" if server else ""
    return (
        f"{INTERRUPTED}: job {job_id} goes on running on the server; "
        f"`kubetask{where} watch {job_id}` follows it again, "
        f"`kubetask{where} cancel {job_id}` stops it"
    )


def outcome(console: Console, view: JobView) -> ExitCode:
    line = _display.state_text(view.state)
    took = _display.duration(view, datetime.now(UTC))
    if took:
        line.append(f" in {took}")
    console.print(line)
    if view.result is not None:
        typer.echo(json.dumps(view.result, indent=2))
    if view.error is not None:
        console.print(_display.error_text(view), end="")
    return EXIT_FOR_STATE.get(view.state, ExitCode.ERROR)
