"""The SDK and the CLI where the server is not what they expect, without a server: answers
that are not kubetask's API, server URLs, and output that is piped (not wrapped, not padded,
notes apart from the output)."""

from __future__ import annotations

import asyncio
import copy
import io
import pickle
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from kubetask._calls import base_url
from kubetask._display import PipeAwareConsole, kinds_table, summary
from kubetask._watch import LiveWatch
from kubetask.aio import AsyncClient
from kubetask.cli import app
from kubetask.client import Client
from kubetask.errors import ApiError, InvalidServerUrl, NotFound, NotKubetaskApi
from kubetask.models import JobState, JobView, KindInfo

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = "<!DOCTYPE html>\n<html>\n<head><title>Sign in</title></head>\n<body>\n" + "x " * 200
LONG = " ".join(["word"] * 40) + " END"

Handler = Callable[[httpx.Request], httpx.Response]


def _html(status: int, **headers: str) -> Handler:
    return lambda _: httpx.Response(
        status, text=PAGE, headers={"content-type": "text/html", **headers}
    )


def _get(handler: Handler) -> ApiError:
    """What `Client.get` raises when `handler` answers."""
    http = httpx.Client(base_url="http://kt:8000", transport=httpx.MockTransport(handler))
    with Client("http://kt:8000", http=http) as client, pytest.raises(ApiError) as raised:
        client.get("abc")
    return raised.value


def _get_async(handler: Handler) -> ApiError:
    async def get() -> ApiError:
        transport = httpx.MockTransport(handler)
        http = httpx.AsyncClient(base_url="http://kt:8000", transport=transport)
        async with AsyncClient("http://kt:8000", http=http) as client:
            with pytest.raises(ApiError) as raised:
                await client.get("abc")
        return raised.value

    return asyncio.run(get())


@pytest.mark.parametrize("get", [_get, _get_async], ids=["sync", "async"])
def test_a_page_that_is_not_the_api_is_one_line_naming_server_request_and_type(
    get: Callable[[Handler], ApiError],
) -> None:
    error = get(_html(200))
    assert isinstance(error, NotKubetaskApi)
    assert isinstance(error, ApiError)  # what callers of the SDK already catch
    message = str(error)
    assert message.startswith(
        "the server at http://kt:8000 answered GET /v1/jobs/abc with 200 OK, not kubetask's "
        "API (text/html: <!DOCTYPE html> <html> <head><title>Sign in</title>"
    )
    assert "\n" not in message
    assert len(message) < 200  # a short excerpt, not the page


def test_an_error_page_that_is_not_a_problem_document_is_one_line() -> None:
    error = _get(_html(404))
    assert isinstance(error, NotKubetaskApi)
    assert not isinstance(error, NotFound)  # no such job: not what a proxy's page says
    assert error.status == 404
    assert "with 404 Not Found, not kubetask's API (text/html: <!DOCTYPE" in str(error)
    assert "\n" not in str(error)


def test_a_proxys_busy_page_is_waited_through_as_the_apis_own() -> None:
    error = _get(_html(503, **{"retry-after": "3"}))
    assert isinstance(error, NotKubetaskApi)
    assert (error.status, error.retry_after_s) == (503, 3.0)


def test_a_redirect_says_where_it_leads() -> None:
    moved = {"location": "https://kt:8443/v1/jobs/abc"}
    error = _get(lambda _: httpx.Response(301, headers=moved))
    assert str(error).endswith(
        "with 301 Moved Permanently, not kubetask's API (a redirect to https://kt:8443/v1/jobs/abc)"
    )


def test_json_of_another_shape_or_an_empty_body_is_not_the_api() -> None:
    other = _get(lambda _: httpx.Response(200, json={"hello": "world"}))
    assert str(other).endswith('(application/json: {"hello":"world"})')
    empty = _get(lambda _: httpx.Response(200))
    assert str(empty).endswith("(no content type, an empty body)")


REDIRECT = {"location": "/login"}


@pytest.mark.parametrize(
    "answer",
    [
        lambda _: httpx.Response(302, headers=REDIRECT),
        _html(200),
        lambda _: httpx.Response(200, json={"hello": "world"}),
    ],
    ids=["redirect", "login-page", "other-json"],
)
def test_logs_downloads_and_streams_take_only_the_apis_answers(
    answer: Handler, tmp_path: Path
) -> None:
    """A log, a file or an event stream read from a proxy's page or a redirect would be
    that page (an empty file, a login form as `model.pt`), or a stream waited on for ever."""
    http = httpx.Client(base_url="http://kt:8000", transport=httpx.MockTransport(answer))
    with Client("http://kt:8000", http=http) as client:
        job = client.job("abc")
        with pytest.raises(NotKubetaskApi):
            job.logs()
        with pytest.raises(NotKubetaskApi):
            job.download("model.pt", tmp_path / "model.pt")
        assert list(tmp_path.iterdir()) == []  # no file, not even an empty one
        with pytest.raises(NotKubetaskApi):
            next(iter(job.events(timeout=5)))


def test_a_problem_document_is_still_typed_by_its_status() -> None:
    body = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no job abc"}
    error = _get(lambda _: httpx.Response(404, json=body))
    assert type(error) is NotFound
    assert str(error) == "404 no job abc"


def test_the_new_errors_survive_pickling_and_copying() -> None:
    errors = [_get(_html(502)), InvalidServerUrl("KUBETASK_URL", "h:1", "it needs http://")]
    for error in errors:
        for again in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
            assert type(again) is type(error)
            assert (str(again), again.__dict__) == (str(error), error.__dict__)


@pytest.mark.parametrize(
    ("given", "server"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),  # as the server prints it
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000"),
        ("https://kt.example/team/v1", "https://kt.example/team"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ],
)
def test_the_apis_own_address_names_the_server(given: str, server: str) -> None:
    assert base_url(given) == server


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("127.0.0.1:18440", "it needs http:// or https://"),
        ("localhost:8000", "it needs http:// or https://"),
        ("ftp://kt", "it needs http:// or https://"),
        ("http://", "and a host"),
        ("http://kt:port", "Invalid port"),
    ],
)
def test_a_url_without_http_is_refused_before_anything_is_sent(
    url: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidServerUrl, match=f"^the server URL '{url}' is not a server URL: "):
        Client(url)
    monkeypatch.setenv("KUBETASK_URL", url)
    with pytest.raises(InvalidServerUrl, match=f"^KUBETASK_URL '{url}' .*{why}"):
        AsyncClient()


def test_the_cli_help_lists_every_exit_code() -> None:
    shown = " ".join(CliRunner().invoke(app, ["--help"]).stdout.split())
    for code in ("0 succeeded", "4 API or connection error", "130 interrupted", "141 stdout"):
        assert code in shown


def _failed_view() -> JobView:
    return JobView.model_validate(
        {
            "id": "0123456789abcdef", "kind": "noop", "name": None, "state": "failed",
            "reason": "BackoffLimitExceeded", "message": "failed after 1 attempt (exit code 1)",
            "created_at": T0, "started_at": T0, "finished_at": T0, "attempts": 1,
            "request": {"kind": "noop", "params": {}},
            "error": {"type": "RuntimeError", "message": LONG, "suggestion": "read the log"},
            "backend": {"backend": "local", "name": "/data/local/jobs/0123456789abcdef"},
        }
    )  # fmt: skip


def test_piped_tables_are_neither_wrapped_nor_padded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`get` and `kinds` into a pipe or a file, whatever width $COLUMNS says."""
    monkeypatch.setenv("COLUMNS", "40")
    console = PipeAwareConsole()
    console.show(summary(_failed_view(), T0))
    kind = KindInfo(kind="noop", image="controller", description=LONG, params_schema={})
    console.show(kinds_table([kind]))
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line != line.rstrip()] == []
    assert f"RuntimeError: {LONG}" in lines
    assert "state     failed  BackoffLimitExceeded - failed after 1 attempt (exit code 1)" in lines
    assert f"noop  controller  {LONG}" in lines


def test_a_terminal_still_gets_the_table_at_its_width(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: a terminal
    PipeAwareConsole().show(summary(_failed_view(), T0))
    lines = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out).splitlines()  # no styles
    assert max(len(line) for line in lines) == 40  # wrapped, cells padded


def _notes_of(console: Console, notes: Console) -> None:
    with LiveWatch(console, notes=notes, clock=lambda: 1.0) as live:
        live.reconnecting(7, f"connection refused {LONG}")
        live.finish(JobState.SUCCEEDED)


def test_piped_watch_notes_go_to_stderr_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    _notes_of(PipeAwareConsole(), PipeAwareConsole(stderr=True))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"connection lost (connection refused {LONG}); resuming after event 7\n"


def test_on_one_screen_a_note_goes_above_the_live_lines() -> None:
    """Printed apart, it would break their redrawing in place."""
    screen, other = io.StringIO(), io.StringIO()
    console = Console(file=screen, width=200, force_terminal=True)
    _notes_of(console, Console(file=other, force_terminal=True))
    assert "resuming after event 7" in screen.getvalue()
    assert other.getvalue() == ""
