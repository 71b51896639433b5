"""The `kubetask` CLI given input it cannot use, or shown server text that could drive the
terminal: a usage error (exit 2, no traceback) before anything is sent, and escapes shown as
text. Run as a real process where stderr and the exit code are the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubetask.cli import ExitCode, app
from kubetask.controller.redis_server import free_port
from tests.servers import ApiServer

runner = CliRunner()
ESCAPE = "\x1b[31mRED\x1b[0m"


def kt_process(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "kubetask", *args],
        capture_output=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture
def nowhere() -> str:
    """A server that is not there: exit 2 rather than 4 shows nothing was sent."""
    return f"http://127.0.0.1:{free_port()}"


def _usage_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "Traceback" not in done.stderr
    flat = " ".join(done.stderr.replace("│", " ").split())  # click's box, wrapped
    for word in words:
        assert word in flat


def test_a_request_file_that_cannot_be_read_is_a_usage_error(nowhere: str, tmp_path: Path) -> None:
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe")
    for command in ("submit", "render"):
        missing = kt_process("-s", nowhere, command, "-f", str(tmp_path / "none.yaml"))
        _usage_error(missing, "none.yaml: No such file or directory")
    _usage_error(kt_process("-s", nowhere, "submit", "-f", str(folder)), "Is a directory")
    _usage_error(kt_process("-s", nowhere, "submit", "-f", str(binary)), "not UTF-8 text")
    from_stdin = kt_process("-s", nowhere, "submit", "-f", "-", stdin=b"\xff\xfe")
    assert from_stdin.returncode == ExitCode.USAGE, from_stdin.stderr
    assert "Traceback" not in from_stdin.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "-f", "{nan}"],
        ["render", "-f", "{nan}"],
        ["submit", "noop", "-p", "step_s=NaN"],
        ["submit", "noop", "-p", "step_s=-Infinity"],
        ["submit", "noop", "-p", "step_s=1e999"],
    ],
)
def test_a_value_json_cannot_carry_is_a_usage_error_naming_it(
    nowhere: str, tmp_path: Path, args: list[str]
) -> None:
    request = tmp_path / "n.yaml"
    request.write_text("kind: noop\nparams: {step_s: .nan}\n")
    done = kt_process("-s", nowhere, *(arg.format(nan=request) for arg in args))
    _usage_error(done, "step_s", "is not a finite number")


def test_yaml_dates_are_sent_as_iso_strings(api: ApiServer, tmp_path: Path) -> None:
    request = tmp_path / "d.yaml"
    request.write_text("kind: noop\nparams: {fail_message: 2020-01-01}\n")
    done = runner.invoke(app, ["-s", api.base_url, "submit", "-f", str(request)])
    assert done.exit_code == 0, done.output
    job = api.job(done.stdout.strip())
    assert job["request"]["params"]["fail_message"] == "2020-01-01"


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1", "0"])
@pytest.mark.parametrize("command", [["submit", "noop", "--wait"], ["watch", "0123456789abcdef"]])
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    nowhere: str, command: list[str], timeout: str
) -> None:
    done = kt_process("-s", nowhere, *command, "--timeout", timeout)
    _usage_error(done, "--timeout", "must be a finite number of seconds above 0, not ")


@pytest.mark.parametrize("token", ["tökén", "abc\ndef"])
def test_a_token_that_cannot_be_sent_is_one_line_without_the_token(
    nowhere: str, token: str
) -> None:
    from_env = kt_process("-s", nowhere, "list", env={"KUBETASK_TOKEN": token})
    assert from_env.returncode == ExitCode.USAGE
    assert from_env.stderr == (
        "error: KUBETASK_TOKEN is not a valid bearer token "
        "(it must be printable ASCII, no spaces)\n"
    )
    given = kt_process("-s", nowhere, "--token", token, "get", "0123456789abcdef")
    assert given.returncode == ExitCode.USAGE
    assert given.stderr.startswith("error: --token is not a valid bearer token")


def test_server_text_is_shown_with_control_characters_escaped(api: ApiServer) -> None:
    """A job's message and error go to a person's terminal as visible `\\x1b`, never as
    escape sequences; `-o json` keeps them (escaped as JSON)."""
    job_id = api.submit("noop", {"fail": "exception", "fail_message": f"esc {ESCAPE}"})
    api.wait(job_id)
    shown = [
        kt_process("-s", api.base_url, "get", job_id),
        kt_process("-s", api.base_url, "watch", job_id),
        kt_process("-s", api.base_url, "submit", "noop", "-p", f"fail_message=esc {ESCAPE}",
                   "-p", "fail=exception", "--wait"),
    ]  # fmt: skip
    for done in shown:
        assert "\x1b" not in done.stdout + done.stderr
        assert "esc \\x1b[31mRED\\x1b[0m" in done.stdout
    as_json = json.loads(kt_process("-s", api.base_url, "get", job_id, "-o", "json").stdout)
    assert as_json["error"]["message"] == f"esc {ESCAPE}"


def test_an_error_line_shows_server_text_escaped(api: ApiServer) -> None:
    done = kt_process("-s", api.base_url, "get", f"x{ESCAPE}")
    assert done.returncode == ExitCode.ERROR
    assert done.stderr == "error: 404 no job with id x\\x1b[31mRED\\x1b[0m\n"
