"""`kubetask artifacts ls|get` and `kubetask upload`: a job's files and the caller's uploads.

The commands are registered on the app by `register` (cli.py hands over its error guard);
they reach the server through the invocation's session (`ctx.obj`, cli.py's `Session`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn, Protocol, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from kubetask._calls import remote_path
from kubetask._cli_app import Command, Group
from kubetask._cli_args import ArgumentError
from kubetask._display import plain_rows, terminal_safe
from kubetask._files import OnProgress
from kubetask._suggest import close_to
from kubetask.client import Client
from kubetask.errors import InvalidRequest, KubetaskError, NotFound, RequestTooLarge
from kubetask.models import Artifact

BAR_FROM_BYTES = 1024 * 1024  # smaller files arrive before a bar would be worth drawing
STDOUT = "-"
COMPLETION_TIMEOUT_S = 3.0
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


class _Session(Protocol):
    """What these commands use of cli.py's `Session`."""

    out: Console

    def client(self, server: str | None = None) -> Client: ...


Guard = Callable[[Callable[..., None]], Callable[..., None]]

JobIdArg = Annotated[str, typer.Argument(metavar="ID", help="The job's id.")]
ServerOpt = Annotated[str | None, typer.Option("--server", "-s", help="API URL.")]


def human_size(size: int) -> str:
    """512 B, 1.5 KiB, 3.2 MiB, 1.0 GiB."""
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def artifact_rows(artifacts: Iterable[Artifact]) -> list[list[str]]:
    """`artifacts ls`'s table as text cells, the header first (times in UTC)."""
    rows = [["PATH", "SIZE", "MODIFIED"]]
    for artifact in artifacts:
        modified = artifact.modified.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        rows.append([terminal_safe(artifact.path), human_size(artifact.size), modified])
    return rows


def artifacts_table(rows: list[list[str]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in rows[0]:
        table.add_column(title, no_wrap=True, justify="right" if title == "SIZE" else "left")
    for row in rows[1:]:
        table.add_row(*(Text(cell) for cell in row))
    return table


def shows_bar(size: int | None, *, terminal: bool) -> bool:
    """A progress bar for a large download, and only for a person watching."""
    return terminal and size is not None and size > BAR_FROM_BYTES


def upload_hint(stored: str, ref: str) -> str:
    return f"stored as {stored}; use it as a task input with {ref}"


@contextmanager
def _progress_bar(name: str) -> Iterator[OnProgress]:
    """A callback for a download or an upload that draws a bar on stderr once the size says
    it is large and stderr is a terminal; nothing otherwise."""
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task: list[TaskID] = []  # the bar, once it is drawn

    def update(done: int, size: int | None) -> None:
        if not task:
            if not shows_bar(size, terminal=console.is_terminal):
                return
            progress.start()
            task.append(progress.add_task(name, total=size))
        progress.update(task[0], completed=done)

    try:
        yield update
    finally:
        if task:  # never started: stopping it would still print a blank line
            progress.stop()


def complete_path(ctx: typer.Context, incomplete: str) -> list[str]:
    """Tab completion of `artifacts get ID <TAB>`: the job's files that start with what is
    typed (asked of the server given so far; nothing when it cannot answer quickly)."""
    root = ctx.find_root().params
    server = ctx.params.get("server") or root.get("server")
    job_id = ctx.params.get("job_id")
    if not job_id:
        return []
    try:
        with Client(server, token=root.get("token"), timeout=COMPLETION_TIMEOUT_S) as client:
            paths = [a.path for a in client.artifacts(str(job_id))]
    except KubetaskError:
        return []
    return [path for path in paths if path.startswith(incomplete)]


def _session(ctx: typer.Context) -> _Session:
    return cast(_Session, ctx.obj)


def list_artifacts(
    ctx: typer.Context,
    job_id: JobIdArg,
    output: Annotated[Format, typer.Option("--output", "-o", help="text or json.")] = Format.TEXT,
    server: ServerOpt = None,
) -> None:
    """A job's files: path, size and when each was written (piped: plain lines)."""
    session = _session(ctx)
    artifacts = session.client(server).artifacts(job_id)
    if output is Format.JSON:
        typer.echo(json.dumps([a.model_dump(mode="json") for a in artifacts], indent=2))
        return
    if not artifacts:
        typer.echo(f"job {job_id} has no files yet", err=True)
        return
    rows = artifact_rows(artifacts)
    if session.out.is_terminal:
        session.out.print(artifacts_table(rows))
    else:
        typer.echo(plain_rows(rows), nl=False)


def get_artifact(
    ctx: typer.Context,
    job_id: JobIdArg,
    path: Annotated[
        str,
        typer.Argument(
            metavar="PATH", help="The file, as `artifacts ls` shows.", autocompletion=complete_path
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="A file or a folder (default: its name here); - for stdout."
        ),
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Download one of a job's files (streamed; a progress bar for large ones)."""
    _usable("PATH", path)
    client = _session(ctx).client(server)
    try:
        with _progress_bar(Path(path).name) as on_progress:
            if output == STDOUT:
                stdout = typer.get_binary_stream("stdout")
                client.download_into(job_id, path, stdout, on_progress=on_progress)
                stdout.flush()
                return
            target = client.download(job_id, path, output, on_progress=on_progress)
    except NotFound as exc:
        _suggest_path(client, job_id, path, exc)
    except BrokenPipeError:
        raise  # stdout closed by its reader (`-o - | head -c 10`): not a bad --output
    except OSError as exc:  # the local side: no such folder, no permission, disk full
        raise ArgumentError(f"--output {output or '.'}: {exc.strerror or exc}") from None
    typer.echo(str(target))


def _usable(name: str, path: str) -> None:
    """A usage error (exit 2, nothing sent) for a path the API would refuse: absolute, with
    a '..', or empty."""
    try:
        remote_path(path)
    except InvalidRequest as exc:
        raise ArgumentError(f"{name} {path!r}: {exc.detail}") from None


def _suggest_path(client: Client, job_id: str, path: str, exc: NotFound) -> NoReturn:
    """Re-raise `exc`, with "did you mean …?" when the job has a file of a close name."""
    try:
        names = [a.path for a in client.artifacts(job_id)]
    except KubetaskError:
        raise exc from None
    match = close_to(path, names)
    if match is None:
        raise exc
    raise NotFound(exc.status, exc.title, f"{exc.detail} (did you mean {match}?)") from None


def upload(
    ctx: typer.Context,
    local: Annotated[
        Path,
        typer.Argument(
            metavar="LOCAL", exists=True, dir_okay=False, readable=True, help="The file to send."
        ),
    ],
    remote: Annotated[
        str | None,
        typer.Argument(metavar="REMOTE", help="Its path among your uploads (default: its name)."),
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Upload a file for jobs to read (streamed; a progress bar for large ones): prints where
    it is stored, and on stderr how a job's params name it (`upload:<path>`)."""
    if remote is not None:
        _usable("REMOTE", remote)
    client = _session(ctx).client(server)
    try:
        with _progress_bar(local.name) as on_progress:
            stored = client.upload(local, remote, on_progress=on_progress)
    except RequestTooLarge as exc:
        size = human_size(local.stat().st_size)
        raise RequestTooLarge(
            exc.status,
            exc.title,
            f"{exc.detail or 'too large'} ({local} is {size}; the server's limit is its "
            "KUBETASK_MAX_UPLOAD_BYTES)",
        ) from None
    typer.echo(stored.path)
    typer.echo(upload_hint(stored.path, stored.ref), err=True)


def register(app: typer.Typer, guard: Guard) -> None:
    """Add `artifacts ls|get` (a group of its own, with "did you mean" for a mistyped
    subcommand) and `upload` to the app, each behind `guard` (one-line errors, exit codes)."""
    artifacts = typer.Typer(
        name="artifacts",
        help="A job's files: list them, download one.",
        no_args_is_help=True,
        cls=Group,
    )
    artifacts.command("ls", cls=Command)(guard(list_artifacts))
    artifacts.command("get", cls=Command)(guard(get_artifact))
    app.add_typer(artifacts)
    app.command("upload", cls=Command)(guard(upload))
