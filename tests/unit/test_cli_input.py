"""What the CLI takes in and shows, without a server: `-p` values and request files JSON
cannot carry, `--timeout` bounds, bearer tokens, and server text made safe for a terminal."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from kubetask._calls import request_body
from kubetask._cli_args import ArgumentError, load_request, parse_params, seconds
from kubetask._cli_artifacts import artifact_rows, artifacts_table
from kubetask._display import (
    job_rows,
    jobs_table,
    kinds_table,
    plain_rows,
    summary,
    terminal_safe,
)
from kubetask._watch import LiveWatch
from kubetask.aio import AsyncClient
from kubetask.client import Client
from kubetask.errors import InvalidRequest, InvalidToken
from kubetask.models import Artifact, JobState, JobView, KindInfo, ProgressEvent, StateEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ESCAPES = "\x1b[31mRED\x1b[0m \x07\r\x08\x7f\x9b"


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999", "[1, NaN]"])
def test_a_param_json_cannot_carry_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(ArgumentError, match=r"param 'train\.step_s': .* is not a finite number"):
        parse_params([f"train.step_s={raw}"])


def test_params_still_parse_numbers_and_fall_back_to_strings() -> None:
    params = parse_params(["a=1.5", "b=nan", "c=2020-01-01", "d=[1, 2e3]"])
    assert params == {"a": 1.5, "b": "nan", "c": "2020-01-01", "d": [1, 2000.0]}


def test_a_request_file_that_cannot_be_read_names_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe")
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    cases = [
        (tmp_path / "missing.yaml", "No such file or directory"),
        (folder, "Is a directory"),
        (binary, "not UTF-8 text"),
    ]
    for path, why in cases:
        with pytest.raises(ArgumentError, match=f"{path}: {why}"):
            load_request(path)


def test_yaml_dates_and_times_become_iso_strings(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text("kind: noop\nparams: {day: 2020-01-01, at: 2020-01-01T10:30:00Z}\n")
    params = load_request(path)["params"]
    assert params == {"day": "2020-01-01", "at": "2020-01-01T10:30:00+00:00"}
    json.dumps(params, allow_nan=False)  # what is sent


@pytest.mark.parametrize(
    ("name", "content", "field"),
    [
        ("n.yaml", "kind: noop\nparams: {steps: .nan}\n", "params.steps"),
        ("i.yaml", "kind: noop\nparams: {grid: [1, -.inf]}\n", "params.grid.1"),
        ("n.json", '{"kind": "noop", "params": {"lr": NaN}}', "params.lr"),
        ("s.yaml", "kind: noop\nparams: {ids: !!set {a: null}}\n", "params.ids"),
    ],
)
def test_a_request_file_value_json_cannot_carry_names_the_field(
    tmp_path: Path, name: str, content: str, field: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ArgumentError, match=f"^{path}: {field}: "):
        load_request(path)


def test_the_sdk_refuses_nan_naming_the_field_and_sends_dates_as_iso() -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_body("noop", {"grid": [0.1, float("inf")]}, {})
    assert [e.field for e in caught.value.errors] == ["params.grid.1"]
    body = request_body("noop", {"since": datetime(2020, 1, 1, tzinfo=UTC).date()}, {})
    assert body["params"] == {"since": "2020-01-01"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.0])
def test_a_timeout_is_a_finite_number_of_seconds_above_0(value: float) -> None:
    with pytest.raises(ArgumentError, match="must be a finite number of seconds above 0, not "):
        seconds(value)
    assert seconds(0.5) == 0.5
    assert seconds(None) is None


@pytest.mark.parametrize("token", ["tökén", "abc\ndef", "a b", "tab\there"])
def test_a_token_that_cannot_be_sent_is_refused_without_showing_it(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidToken) as explicit:
        Client("http://127.0.0.1:1", token=token)
    assert str(explicit.value).startswith("the token is not a valid bearer token")
    monkeypatch.setenv("KUBETASK_TOKEN", token)
    with pytest.raises(InvalidToken) as from_env:
        AsyncClient("http://127.0.0.1:1")
    assert str(from_env.value).startswith("KUBETASK_TOKEN is not a valid bearer token")
    assert token not in str(explicit.value) + str(from_env.value)


def test_a_printable_token_is_sent_as_a_bearer_token() -> None:
    token = "abc.DEF-123_~+/="
    with Client("http://127.0.0.1:1", token=token) as client:
        assert client._http.headers["Authorization"] == f"Bearer {token}"


def test_control_characters_are_shown_escaped_and_tab_and_newline_kept() -> None:
    shown = terminal_safe(f"{ESCAPES}\tnext\nline é✔")
    assert shown == "\\x1b[31mRED\\x1b[0m \\x07\\x0d\\x08\\x7f\\x9b\tnext\nline é✔"
    assert terminal_safe(shown) == shown


def test_the_watch_lines_show_server_text_escaped() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    progress = {
        "job_id": "j", "seq": 1, "timestamp": T0, "current": 1, "total": 2,
        "stage": f"st{ESCAPES}", "message": f"msg{ESCAPES}", "metrics": {f"k{ESCAPES}": 1},
    }  # fmt: skip
    with LiveWatch(console, clock=lambda: 1.0) as live:
        live.update(
            StateEvent(
                job_id="j",
                seq=0,
                timestamp=T0 - timedelta(seconds=1),
                state=JobState.RUNNING,
                reason=f"why{ESCAPES}",
                message=f"state{ESCAPES}",
            )
        )
        live.update(ProgressEvent.model_validate(progress))
        live.note(f"note{ESCAPES}")
        live.finish(JobState.SUCCEEDED)
    text = out.getvalue()
    assert not any(char in text for char in "\x1b\x07\r\x08\x7f\x9b")
    for part in ("why", "state", "note", "st", "msg", "k"):
        assert f"{part}\\x1b[31mRED" in text


def _view() -> JobView:
    """A failed job whose every server-written text carries escape sequences."""
    bad = f"x{ESCAPES}"
    return JobView.model_validate(
        {
            "id": "0123456789abcdef", "kind": "noop", "name": bad, "state": "failed",
            "reason": bad, "message": bad, "created_at": T0, "started_at": T0,
            "finished_at": T0, "attempts": 1, "labels": {"team": bad},
            "progress": {"job_id": "j", "seq": 1, "timestamp": T0, "current": 1, "total": 2,
                         "stage": bad, "message": bad, "metrics": {bad: 1}},
            "error": {"type": bad, "message": bad, "traceback": [bad], "suggestion": bad},
            "request": {"kind": "noop", "params": {}},
            "backend": {"backend": "local", "name": bad},
        }
    )  # fmt: skip


def _printed(*renderables: RenderableType | str) -> str:
    out = io.StringIO()
    console = Console(file=out, width=1000, force_terminal=False)
    for renderable in renderables:
        console.print(renderable)
    return out.getvalue()


def test_get_and_list_show_server_text_escaped() -> None:
    view = _view()
    rows = job_rows([view], T0, wide=True)
    kind = KindInfo(
        kind=f"k{ESCAPES}", description=f"d{ESCAPES}", image=f"i{ESCAPES}", params_schema={}
    )
    text = _printed(summary(view, T0), jobs_table(rows), plain_rows(rows), kinds_table([kind]))
    assert not any(char in text for char in "\x1b\x07\r\x08\x7f\x9b")
    assert text.count("x\\x1b[31mRED") == 12 + 6 + 6  # each field: get's 12, 6 per list
    for part in ("k", "d", "i"):
        assert f"{part}\\x1b[31mRED" in text


def test_artifacts_ls_shows_file_names_escaped() -> None:
    """A task chooses its files' names: one must not reach the terminal as escapes."""
    artifact = Artifact(
        path=f"out/{ESCAPES}.csv", size=1, content_type="text/csv", etag="e", modified=T0
    )
    rows = artifact_rows([artifact])
    text = _printed(artifacts_table(rows), plain_rows(rows))
    assert not any(char in text for char in "\x1b\x07\r\x08\x7f\x9b")
    assert text.count("out/\\x1b[31mRED") == 2


@pytest.mark.parametrize("key", ["é", "two words", "line\nbreak", "k" * 256])
def test_an_idempotency_key_that_cannot_be_sent_is_refused_naming_it(key: str) -> None:
    with Client("http://127.0.0.1:1") as client, pytest.raises(InvalidRequest) as refused:
        client.submit("noop", idempotency_key=key)  # nothing is sent: no server there
    assert [error.field for error in refused.value.errors] == ["idempotency_key"]
