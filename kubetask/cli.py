"""`kubetask`: the command line over the REST API (typer + rich).

The server comes from `--server` or `KUBETASK_URL` (default http://127.0.0.1:8000), a bearer
token from `--token` or `KUBETASK_TOKEN`. Errors are one line on stderr. Exit codes, so that
scripts can tell outcomes apart (`submit --wait`, `watch`):

    0 succeeded   1 failed   2 usage error   3 cancelled   4 API or connection error
    5 --timeout reached   130 interrupted   141 stdout closed by its reader
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec

import typer
import yaml
from pydantic import JsonValue
from rich.text import Text

from kubetask import _cli_args, _cli_artifacts, _display
from kubetask._calls import TOKEN_ENV, URL_ENV
from kubetask._cli_app import Command, Group, Shell, completion_script
from kubetask._follow import ExitCode, follow
from kubetask._suggest import did_you_mean
from kubetask.client import Client, JobHandle
from kubetask.errors import (
    InvalidRequest,
    InvalidServerUrl,
    InvalidToken,
    KubetaskError,
    Unauthorized,
    WaitTimeout,
)
from kubetask.models import JobState

__all__ = ["ExitCode", "app", "run"]  # ExitCode: the exit codes, for scripts and tests

P = ParamSpec("P")


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"
    YAML = "yaml"


class ListOutput(StrEnum):
    TEXT = "text"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


app = typer.Typer(
    name="kubetask",
    help="Submit, follow and manage kubetask jobs. Exit codes: 0 succeeded, 1 failed, "
    "2 usage error, 3 cancelled, 4 API or connection error, 5 timeout, 130 interrupted, "
    "141 stdout closed.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    cls=Group,
)
command = functools.partial(app.command, cls=Command)

# Given before the command (`kubetask --server URL list`) or after it (`kubetask list
# --server URL`); only the first reads $KUBETASK_URL, so an explicit flag always wins.
MainServerOpt = Annotated[
    str | None,
    typer.Option("--server", "-s", envvar=URL_ENV, help="API URL (default $KUBETASK_URL)."),
]
ServerOpt = Annotated[str | None, typer.Option("--server", "-s", help="API URL.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text, json or yaml.")]


def _positive_seconds(value: float | None) -> float | None:
    """The `--timeout` check: a usage error, before anything is sent, unless finite and > 0."""
    try:
        return _cli_args.seconds(value)
    except _cli_args.ArgumentError as exc:
        raise typer.BadParameter(str(exc)) from None


TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout", help="Stop waiting after this many seconds.", callback=_positive_seconds
    ),
]
ParallelismOpt = Annotated[
    int | None, typer.Option(min=1, help="Workers at once (an Indexed Job).")
]
CompletionsOpt = Annotated[
    int | None, typer.Option(min=1, help="Workers in all (at least --parallelism).")
]
CpuOpt = Annotated[str | None, typer.Option(help="CPU per worker, e.g. 500m or 2.")]
MemoryOpt = Annotated[str | None, typer.Option(help="Memory per worker, e.g. 512Mi.")]
GpuOpt = Annotated[int | None, typer.Option(min=0, help="GPUs per worker.")]
GpuTypeOpt = Annotated[str | None, typer.Option(help="GPU node label value.")]
FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="A job request as JSON or YAML ('-' reads stdin)."),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="k=v (repeatable); JSON values; a.b=1 nests."),
]


@dataclass
class Session:
    """What one invocation shares: the server, and consoles for output and for notes."""

    server: str | None = None
    server_source: str = "--server"  # what an invalid URL's message names
    token: str | None = None
    token_source: str = "--token"  # what an invalid token's message names
    out: _display.PipeAwareConsole = field(default_factory=_display.PipeAwareConsole)
    notes: _display.PipeAwareConsole = field(
        default_factory=lambda: _display.PipeAwareConsole(stderr=True)
    )
    _client: Client | None = None

    def client(self, server: str | None = None) -> Client:
        if self._client is None:
            try:
                self._client = Client(server or self.server, token=self.token)
            except InvalidToken:
                raise InvalidToken(self.token_source) from None
            except InvalidServerUrl as exc:
                source = "--server" if server else self.server_source
                raise InvalidServerUrl(source, exc.url, exc.reason) from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _session(ctx: typer.Context) -> Session:
    if not isinstance(ctx.obj, Session):
        ctx.obj = Session()
    return ctx.obj


def _guarded(command: Callable[P, None]) -> Callable[P, None]:
    """API, connection and argument errors as one line (and an exit code), no traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except _cli_args.ArgumentError as exc:
            raise typer.BadParameter(str(exc)) from None
        except (InvalidToken, InvalidServerUrl) as exc:
            _error(str(exc))
            raise typer.Exit(ExitCode.USAGE) from None
        except WaitTimeout as exc:
            _error(str(exc))
            raise typer.Exit(ExitCode.TIMEOUT) from None
        except Unauthorized as exc:
            _error(f"{exc} (set {TOKEN_ENV} or --token)")
            raise typer.Exit(ExitCode.ERROR) from None
        except KubetaskError as exc:
            _error(str(exc))
            raise typer.Exit(ExitCode.ERROR) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except BrokenPipeError:  # whoever read our output stopped: stop quietly
            _silence_stdout()
            raise typer.Exit(ExitCode.CLOSED_OUTPUT) from None

    return run


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _error(message: str) -> None:
    """The one line on stderr (the server's words in it shown safely, see `terminal_safe`)."""
    typer.echo(f"error: {_display.terminal_safe(message)}", err=True)


@app.callback()
def main(
    ctx: typer.Context,
    server: MainServerOpt = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar=TOKEN_ENV, help="Bearer token.")
    ] = None,
) -> None:
    session = Session(
        server=server,
        server_source=URL_ENV if _from_env(server, URL_ENV) else "--server",
        token=token,
        token_source=TOKEN_ENV if _from_env(token, TOKEN_ENV) else "--token",
    )
    ctx.obj = session
    ctx.call_on_close(session.close)


def _from_env(value: str | None, name: str) -> bool:
    """Whether an option's value came from its environment variable (as far as can be told)."""
    return value is not None and value == os.environ.get(name)


def _now() -> datetime:
    return datetime.now(UTC)


def _print_data(data: JsonValue, output: Output) -> None:
    if output is Output.YAML:
        typer.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    else:
        typer.echo(json.dumps(data, indent=2))


def _placement(
    *,
    parallelism: int | None,
    completions: int | None,
    cpu: str | None,
    memory: str | None,
    gpu: int | None,
    gpu_type: str | None,
) -> dict[str, JsonValue]:
    """The request fields of how many workers run and what each gets (`resources`)."""
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu, "gpu_type": gpu_type}
    return {
        "parallelism": parallelism,
        "completions": completions,
        "resources": {k: v for k, v in resources.items() if v is not None},
    }


def _request(
    kind: str | None,
    file: Path | None,
    params: list[str] | None,
    options: dict[str, JsonValue],
) -> dict[str, JsonValue]:
    base: dict[str, JsonValue] = {}
    if file is not None:
        base = _cli_args.load_request(file, _stdin_text() if str(file) == "-" else None)
    given = {k: v for k, v in options.items() if v not in (None, {})}
    params_given = _cli_args.parse_params(params or [])
    return _cli_args.build_request(kind=kind, base=base, params=params_given, options=given)


def _stdin_text() -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise _cli_args.ArgumentError(f"-f -: stdin is not UTF-8 text ({exc.reason})") from None


@command()
@_guarded
def submit(
    ctx: typer.Context,
    *,
    kind: Annotated[
        str | None, typer.Argument(metavar="KIND", help="Task kind (see `kubetask kinds`).")
    ] = None,
    param: ParamOpt = None,
    file: FileOpt = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow it to its end.")] = False,
    name: Annotated[str | None, typer.Option(help="A DNS label for people.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="k=v")] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            help="ENV=SECRET/KEY: the task gets key KEY of Kubernetes Secret SECRET as $ENV."
        ),
    ] = None,
    parallelism: ParallelismOpt = None,
    completions: CompletionsOpt = None,
    cpu: CpuOpt = None,
    memory: MemoryOpt = None,
    gpu: GpuOpt = None,
    gpu_type: GpuTypeOpt = None,
    retries: Annotated[int | None, typer.Option(min=0, help="Re-runs after a failure.")] = None,
    timeout_s: Annotated[
        int | None, typer.Option(min=1, help="Deadline of the run, in seconds.")
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Kueue LocalQueue.")] = None,
    priority: Annotated[str | None, typer.Option(help="A priority the server allows.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="A replay returns the same job.")
    ] = None,
    timeout: TimeoutOpt = None,
    server: ServerOpt = None,
) -> None:
    """Submit a job and print its id (with --wait: follow it; the exit code tells the end)."""
    session = _session(ctx)
    options: dict[str, JsonValue] = {
        "name": name,
        "labels": dict(_cli_args.parse_labels(label or [])),
        "secrets": _cli_args.parse_secrets(secret or []) or None,
        **_placement(
            parallelism=parallelism,
            completions=completions,
            cpu=cpu,
            memory=memory,
            gpu=gpu,
            gpu_type=gpu_type,
        ),
        "retries": retries,
        "timeout_s": timeout_s,
        "queue": queue,
        "priority": priority,
    }
    body = _request(kind, file, param, options)
    client = session.client(server)
    try:
        handle = client.submit_request(body, idempotency_key=idempotency_key)
    except InvalidRequest as exc:
        _explain_invalid(client, body, exc)
    if not wait:
        typer.echo(handle.id)
        return
    raise typer.Exit(_follow_job(session, handle, timeout, server))


def _explain_invalid(client: Client, body: dict[str, JsonValue], exc: InvalidRequest) -> None:
    """Re-raise `exc`, with "did you mean …?" for a mistyped kind or param if there is one
    (from the kinds and params schemas the server lists)."""
    try:
        infos = client.kinds()
    except KubetaskError:
        raise exc from None
    hints = did_you_mean(str(body.get("kind")), exc.errors, infos)
    if not hints:
        raise exc
    _error(f"{exc} ({'; '.join(hints)})")
    raise typer.Exit(ExitCode.ERROR)


@command()
@_guarded
def watch(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    timeout: TimeoutOpt = None,
    server: ServerOpt = None,
) -> None:
    """Follow a job live (progress bar, stage, metrics, ETA) until it ends."""
    session = _session(ctx)
    handle = session.client(server).job(job_id)
    raise typer.Exit(_follow_job(session, handle, timeout, server))


def _follow_job(
    session: Session, handle: JobHandle, timeout: float | None, server: str | None
) -> ExitCode:
    """`follow` the job, its notes on the session's stderr; the exit code that says its end."""
    where = server or session.server
    return follow(session.out, handle, notes=session.notes, timeout=timeout, server=where)


@command()
@_guarded
def get(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    output: OutputOpt = Output.TEXT,
    server: ServerOpt = None,
) -> None:
    """One job: state, times, progress, result or error."""
    session = _session(ctx)
    view = session.client(server).get(job_id)
    if output is Output.TEXT:
        session.out.show(_display.summary(view, _now()))
    else:
        _print_data(view.model_dump(mode="json"), output)


@command("list")
@_guarded
def list_jobs(
    ctx: typer.Context,
    *,
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="k=v")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (newest first).")] = 20,
    output: Annotated[
        ListOutput,
        typer.Option("--output", "-o", help="text, wide (more columns), json or yaml."),
    ] = ListOutput.TEXT,
    server: ServerOpt = None,
) -> None:
    """Jobs, newest first, as a table (piped: one plain line per job, never wrapped)."""
    session = _session(ctx)
    labels = _cli_args.parse_labels(label or [])
    views = list(session.client(server).list(state=state, kind=kind, labels=labels, limit=limit))
    if output in (ListOutput.JSON, ListOutput.YAML):
        _print_data([v.model_dump(mode="json") for v in views], Output(output.value))
        return
    rows = _display.job_rows(views, _now(), wide=output is ListOutput.WIDE)
    if session.out.is_terminal:
        session.out.print(_display.jobs_table(rows))
    else:
        typer.echo(_display.plain_rows(rows), nl=False)


@command()
@_guarded
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    server: ServerOpt = None,
) -> None:
    """Stop a job (SIGTERM, then SIGKILL after the grace period)."""
    session = _session(ctx)
    view = session.client(server).cancel(job_id)
    line = Text(f"cancelling {_display.terminal_safe(view.id)} (was ")  # never markup
    session.out.print(line, _display.state_text(view.state), ")", sep="")


@command()
@_guarded
def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    tail: Annotated[int | None, typer.Option(min=1, help="Only the last N lines.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")] = False,
    server: ServerOpt = None,
) -> None:
    """A job's stdout and stderr."""
    client = _session(ctx).client(server)
    if not follow:
        typer.echo(client.logs(job_id, tail=tail), nl=False)
        return
    for chunk in client.follow_logs(job_id, tail=tail):
        typer.echo(chunk, nl=False)


@command()
@_guarded
def kinds(ctx: typer.Context, output: OutputOpt = Output.TEXT, server: ServerOpt = None) -> None:
    """The task kinds this server runs (json/yaml: with their params schemas)."""
    session = _session(ctx)
    infos = session.client(server).kinds()
    if output is Output.TEXT:
        session.out.show(_display.kinds_table(infos))
    else:
        _print_data([k.model_dump(mode="json") for k in infos], output)


@command()
@_guarded
def render(
    ctx: typer.Context,
    *,
    kind: Annotated[
        str | None, typer.Argument(metavar="KIND", help="Task kind, unless in the file.")
    ] = None,
    file: FileOpt = None,
    param: ParamOpt = None,
    parallelism: ParallelismOpt = None,
    completions: CompletionsOpt = None,
    cpu: CpuOpt = None,
    memory: MemoryOpt = None,
    gpu: GpuOpt = None,
    gpu_type: GpuTypeOpt = None,
    full: Annotated[bool, typer.Option(help="Also the validated request.")] = False,
    output: OutputOpt = Output.YAML,
    server: ServerOpt = None,
) -> None:
    """What the backend would create for a request (a dry run; nothing is created)."""
    session = _session(ctx)
    placement = _placement(
        parallelism=parallelism,
        completions=completions,
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        gpu_type=gpu_type,
    )
    body = _request(kind, file, param, placement)
    client = session.client(server)
    try:
        answer = client.render(body)
    except InvalidRequest as exc:
        _explain_invalid(client, body, exc)
    data: JsonValue = answer if full else answer.get("object", answer)
    _print_data(data, Output.JSON if output is Output.JSON else Output.YAML)


_cli_artifacts.register(app, _guarded)  # `artifacts ls|get`, `upload`


@command()
def completion(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")],
) -> None:
    """Print the shell's completion script: `source <(kubetask completion bash)`, or save it
    where the shell loads completions from."""
    typer.echo(completion_script(shell))


def run() -> None:
    """The console script."""
    app()
