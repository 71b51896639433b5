"""The `kubetask` CLI as a real process, where the server is not what it expects or its output
goes to a pipe: one line on stderr and exit 4 for a server that is not kubetask's API, a
usage error for a URL that cannot be one, and piped output neither wrapped nor padded, with
a watch's notes on stderr."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubetask.cli import ExitCode
from kubetask.controller.redis_server import free_port
from tests.component.flaky_proxy import FlakyProxy
from tests.servers import ApiServer

LONG = " ".join(["word"] * 40) + " END"
NARROW = {"COLUMNS": "40"}  # piped, the CLI must not wrap at it


def kt_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetask", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """A plain web server (not kubetask) with an HTML page where a job would be."""
    (tmp_path / "v1" / "jobs").mkdir(parents=True)
    (tmp_path / "v1" / "jobs" / "abc").write_text(
        "<!DOCTYPE html>\n<html>\n<head><title>Hello</title></head>\n<body>\n<p>hi</p>\n"
        "</body>\n</html>\n"
    )
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (["get", "abc"], "answered GET /v1/jobs/abc with 200 OK, not kubetask's API ("),
        (["get", "nope"], "answered GET /v1/jobs/nope with 404 File not found, not kubetask's"),
        (["list"], "answered GET /v1/jobs?limit=20 with 301 Moved Permanently, not kubetask's"),
    ],
    ids=["get", "get missing", "list"],
)
def test_a_server_that_is_not_kubetask_is_one_line_and_exit_4(
    web_server: str, command: list[str], answer: str
) -> None:
    done = kt_process(*command, env={"KUBETASK_URL": web_server})
    assert done.returncode == ExitCode.ERROR, done.stderr
    assert done.stderr.startswith(f"error: the server at {web_server} {answer}")
    assert done.stderr.count("\n") == 1
    assert len(done.stderr) < 300  # the page's start at most
    assert done.stdout == ""


def test_the_apis_own_address_is_taken_as_the_server(api: ApiServer) -> None:
    """What the server prints at start: `kubetask is ready: API http://127.0.0.1:8000/v1`."""
    done = kt_process("list", env={"KUBETASK_URL": f"{api.base_url}/v1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ID ")


@pytest.mark.parametrize("where", ["env", "flag"])
def test_a_url_without_http_is_a_usage_error_and_nothing_is_sent(where: str) -> None:
    url = f"127.0.0.1:{free_port()}"
    if where == "env":
        done, source = kt_process("list", env={"KUBETASK_URL": url}), "KUBETASK_URL"
    else:
        done, source = kt_process("get", "abc", "--server", url), "--server"
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stderr == (
        f"error: {source} '{url}' is not a server URL: it needs http:// or https:// and a "
        "host (e.g. http://127.0.0.1:8000)\n"
    )


def _trailing_spaces(text: str) -> list[str]:
    return [line for line in text.splitlines() if line != line.rstrip()]


def test_piped_output_is_neither_wrapped_nor_padded(api: ApiServer) -> None:
    """`submit --wait`, `get` and `kinds` into a pipe: each message on one line."""
    failed = kt_process(
        "--server", api.base_url, "submit", "noop", "-p", "fail=exception",
        "-p", f"fail_message={LONG}", "--wait", env=NARROW,
    )  # fmt: skip
    assert failed.returncode == ExitCode.FAILED, failed.stderr
    assert f"RuntimeError: {LONG}" in failed.stdout.splitlines()
    job_id = failed.stdout.split()[1]
    shown = kt_process("--server", api.base_url, "get", job_id, env=NARROW)
    assert f"RuntimeError: {LONG}" in shown.stdout.splitlines()
    assert "state     failed  BackoffLimitExceeded - failed after 1 attempt" in shown.stdout
    kinds = kt_process("--server", api.base_url, "kinds", env=NARROW)
    assert kinds.returncode == 0, kinds.stderr
    noop = next(line for line in kinds.stdout.splitlines() if line.startswith("noop "))
    assert noop.endswith("(retries, errors).")  # its whole description, on its line
    for done in (failed, shown, kinds):
        assert _trailing_spaces(done.stdout) == []


def test_a_piped_watch_says_it_resumed_on_stderr_in_one_line(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 50, "step_s": 0.1})  # still going at the cut
    with FlakyProxy(api.port) as proxy:
        cutter = proxy.drop_once_streaming()
        watched = kt_process("--server", proxy.base_url, "watch", job_id, env=NARROW)
        cutter.join()
    assert watched.returncode == 0, watched.stderr
    notes = watched.stderr.splitlines()
    assert notes, "no note of the dropped connection"
    for note in notes:  # whole, however narrow $COLUMNS
        assert re.fullmatch(r"connection lost \(.+\); resuming after event \d+", note), note
    assert "connection lost" not in watched.stdout
    assert "succeeded" in watched.stdout
    assert _trailing_spaces(watched.stdout) == []
