"""The SDK's and CLI's pure core, without a server: SSE frames, the resume cursor, waiting
deadlines, problem details as error types, `k=v` params, log following and the ETA."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import JsonValue

from kubetask._calls import LogFollower, request_body
from kubetask._cli_args import (
    ArgumentError,
    build_request,
    load_request,
    parse_params,
    parse_secrets,
)
from kubetask._files import CHUNK, chunks
from kubetask._sse import EventCursor, GapEvent, JobEvent, SseFrame, SseParser
from kubetask._wait import Deadline, Waiter
from kubetask._watch import Eta
from kubetask.errors import (
    FileChanged,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    KubetaskError,
    NotFound,
    ServerUnreachable,
    StreamLost,
    TooManyRequests,
    WaitTimeout,
    error_from,
)
from kubetask.models import JobState, JobView, ProgressEvent, Resources, StateEvent

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def _frame(seq: int, event: str, **fields: object) -> list[str]:
    data = {"type": event, "job_id": "j", "seq": seq, "timestamp": T0.isoformat(), **fields}
    return [f"id: {seq}", f"event: {event}", f"data: {json.dumps(data)}", ""]


def _feed(cursor: EventCursor, lines: list[str]) -> list[JobEvent]:
    return [e for e in map(cursor.feed, lines) if e is not None]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sse_parser_joins_data_lines_and_skips_comments() -> None:
    parser = SseParser()
    lines = [": keepalive", "", "id: 7", "event: gap", "data: a", "data:b", ""]
    frames = [f for f in map(parser.feed, lines) if f is not None]
    assert frames == [SseFrame(id="7", event="gap", data="a\nb")]


def test_cursor_drops_repeats_resumes_after_the_last_seq_and_stops_at_the_end() -> None:
    cursor = EventCursor("j")
    assert "Last-Event-ID" not in cursor.connect()
    first = _feed(cursor, _frame(1, "state", state="queued") + _frame(2, "progress", current=1))
    assert [type(e) for e in first] == [StateEvent, ProgressEvent]
    assert cursor.connect()["Last-Event-ID"] == "2"
    again = _feed(cursor, _frame(2, "progress", current=1) + _frame(3, "state", state="running"))
    assert [e.seq for e in again] == [3]
    assert not cursor.done
    gap = _feed(cursor, _frame(9, "gap", from_seq=4, to_seq=9))
    assert isinstance(gap[0], GapEvent)
    _feed(cursor, _frame(10, "state", state="succeeded"))
    assert cursor.done
    assert cursor.state is JobState.SUCCEEDED


def test_cursor_forgets_a_half_read_frame_on_reconnect() -> None:
    cursor = EventCursor("j")
    _feed(cursor, _frame(1, "state", state="queued")[:3])  # cut before the blank line
    cursor.connect()
    assert [e.seq for e in _feed(cursor, _frame(1, "state", state="queued"))] == [1]


def test_reconnects_back_off_and_an_event_starts_the_back_off_over() -> None:
    seen: list[tuple[int, str]] = []
    cursor = EventCursor("j", on_reconnect=lambda s, r: seen.append((s, r)))
    assert [cursor.lost("x"), cursor.lost("x"), cursor.lost("x")] == [0.2, 0.4, 0.8]
    _feed(cursor, _frame(1, "state", state="queued"))
    assert cursor.lost("reset") == 0.2
    assert seen[3] == (1, "reset")
    assert [cursor.lost("x") for _ in range(8)][-1] == 5.0  # at most max_backoff_s


def test_a_server_out_of_reach_is_ridden_through_for_a_minute_then_the_stream_is_lost() -> None:
    """A restart or a rolling update of the API takes seconds: not worth an error."""
    clock = FakeClock()
    cursor = EventCursor("j", clock=clock)
    for _ in range(12):  # 12 failed connections over 55 s
        cursor.lost("connection refused")
        clock.now += 5
    cursor.opened()  # back: a connection brought the stream
    clock.now += 100
    cursor.lost("the server ended the stream early")  # the minute counts from here
    clock.now += 59
    cursor.lost("connection refused")
    clock.now += 2
    with pytest.raises(StreamLost, match="after seq 0"):
        cursor.lost("connection refused")


def test_a_proxy_that_cuts_every_stream_never_loses_a_quiet_jobs_stream() -> None:
    clock = FakeClock()
    cursor = EventCursor("j", clock=clock)
    for _ in range(100):  # 100 connections of 1.3 s, none with an event: 130 s
        cursor.opened()
        clock.now += 1.3
        assert cursor.lost("the server ended the stream early") <= 5.0


def test_a_wait_polls_through_a_server_away_for_less_than_a_minute() -> None:
    clock = FakeClock()
    waiter = Waiter("j", None, raise_on_failure=False, poll_s=1.0, clock=clock)
    away = ServerUnreachable("http://x", "connection refused")
    for _ in range(30):
        assert waiter.unanswered(away) == 1.0
        clock.now += 1.9
    assert waiter.unanswered(error_from(503, {"detail": "store away"}, retry_after="2")) == 2.0
    clock.now += 4
    with pytest.raises(ServerUnreachable):
        waiter.unanswered(away)
    with pytest.raises(NotFound):  # an answer retrying cannot change
        waiter.unanswered(error_from(404, {"detail": "no job"}))


def test_a_wait_for_a_server_away_ends_at_its_timeout() -> None:
    clock = FakeClock()
    waiter = Waiter("j", 10, raise_on_failure=False, poll_s=1.0, clock=clock)
    away = ServerUnreachable("http://x", "connection refused")
    clock.now += 9.5
    assert waiter.unanswered(away) == pytest.approx(0.5)
    clock.now += 1
    with pytest.raises(WaitTimeout):
        waiter.unanswered(away)


def test_errors_that_retrying_cannot_fix_are_raised() -> None:
    cursor = EventCursor("j")
    with pytest.raises(NotFound):
        cursor.refused(error_from(404, {"detail": "no job with id j"}))
    assert cursor.refused(error_from(503, None)) == 0.2


def test_a_deadline_ends_waiting_with_a_timeout_error() -> None:
    clock = FakeClock()
    cursor = EventCursor("j", deadline=Deadline.start("j", 5, clock))
    assert cursor.read_timeout() == 5
    clock.now += 4
    assert cursor.read_timeout() == pytest.approx(1)
    clock.now += 2
    with pytest.raises(TimeoutError, match="within 5s") as caught:
        cursor.feed(": keepalive")
    assert isinstance(caught.value, WaitTimeout)


@pytest.mark.parametrize("timeout", [float("nan"), -1.0, -0.001])
def test_a_wait_timeout_that_is_no_number_of_seconds_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="is not a number of seconds"):
        Waiter("j", timeout, raise_on_failure=False, poll_s=1)
    Waiter("j", 0, raise_on_failure=False, poll_s=1)  # look once: a timeout at once


def test_problem_details_become_typed_errors_with_fields() -> None:
    body: dict[str, JsonValue] = {
        "status": 422,
        "detail": "params.n: too small",
        "errors": [{"field": "params.n", "msg": "too small", "type": "greater_than"}],
    }
    error = error_from(422, body)
    assert isinstance(error, InvalidRequest)
    assert str(error) == "422 params.n: too small"
    assert error.errors[0].field == "params.n"
    assert (
        str(error_from(502, None, text="<html>bad gateway</html>"))
        == "502 <html>bad gateway</html>"
    )


def test_params_from_key_value_pairs() -> None:
    params = parse_params(["n=5", "name=press-7", "flag=true", "xs=[1,2]", "a.b.c=0.5", "z=007"])
    assert params == {
        "n": 5,
        "name": "press-7",
        "flag": True,
        "xs": [1, 2],
        "a": {"b": {"c": 0.5}},
        "z": "007",
    }
    with pytest.raises(ArgumentError, match="not key=value"):
        parse_params(["oops"])
    with pytest.raises(ArgumentError, match="already set"):
        parse_params(["a=1", "a.b=2"])


def test_a_request_file_is_merged_under_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("kind: train\nparams: {epochs: 2, datagen: {length: 256}}\nlabels: {a: b}\n")
    request = build_request(
        kind=None,
        base=load_request(path),
        params={"datagen": {"n_per_class": 5}},
        options={"labels": {"c": "d"}, "retries": 1},
    )
    assert request == {
        "kind": "train",
        "params": {"epochs": 2, "datagen": {"length": 256, "n_per_class": 5}},
        "labels": {"a": "b", "c": "d"},
        "retries": 1,
    }
    with pytest.raises(ArgumentError, match="KIND"):
        build_request(kind=None, base={}, params={}, options={})


def test_options_are_sent_as_json_only_when_given() -> None:
    body = request_body("noop", None, {"resources": Resources(cpu="1"), "labels": {"a": "b"}})
    assert body == {"kind": "noop", "params": {}, "resources": {"cpu": "1"}, "labels": {"a": "b"}}


def test_following_a_log_prints_each_part_once() -> None:
    follower = LogFollower(tail=2)
    assert follower.feed("a\nb\nc\n") == "b\nc\n"
    assert follower.feed("a\nb\nc\n") == ""
    assert follower.feed("a\nb\nc\nd\n") == "d\n"
    assert follower.feed("new\n") == "new\n"  # shorter: a new log


def test_eta_from_the_rate_since_the_stage_began() -> None:
    def event(seconds: float, current: float, stage: str = "train") -> ProgressEvent:
        moment = T0 + timedelta(seconds=seconds)
        return ProgressEvent(
            job_id="j", seq=1, timestamp=moment, current=current, total=10, stage=stage
        )

    eta = Eta()
    assert eta.update(event(0, 1)) is None
    assert eta.update(event(2, 3)) == pytest.approx(7.0)  # 2 steps in 2 s, 7 to go
    assert eta.update(event(3, 1, stage="eval")) is None  # a new stage starts over


def test_a_429_is_typed_with_its_retry_after_and_a_stream_waits_that_long() -> None:
    error = error_from(429, {"detail": "over 600 submissions a minute"}, retry_after="7")
    assert isinstance(error, TooManyRequests)
    assert error.retry_after_s == 7.0
    assert str(error) == "429 over 600 submissions a minute (retry after 7 s)"
    assert error_from(429, None, retry_after="a date").retry_after_s is None
    cursor = EventCursor("j")
    assert cursor.refused(error) == 7.0  # not its own, shorter, backoff


def test_secret_options_become_secret_references() -> None:
    assert parse_secrets(["HF_TOKEN=hf-creds/token", "DB=db/pass=word"]) == [
        {"env": "HF_TOKEN", "name": "hf-creds", "key": "token"},
        {"env": "DB", "name": "db", "key": "pass=word"},
    ]
    for bad in ("HF_TOKEN", "HF_TOKEN=hf-creds", "HF_TOKEN=/token", "=s/k"):
        with pytest.raises(ArgumentError):
            parse_secrets([bad])


def _failed_view() -> JobView:
    return JobView.model_validate(
        {
            "id": "0123456789abcdef", "kind": "noop", "name": None, "state": "failed",
            "created_at": T0, "attempts": 1, "request": {"kind": "noop", "params": {}},
            "error": {"type": "RuntimeError", "message": "boom", "suggestion": "retry"},
            "backend": {"backend": "local", "name": "x"},
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    "error",
    [
        error_from(404, {"detail": "no job with id j"}),
        error_from(
            422, {"detail": "d", "errors": [{"field": "params.n", "msg": "m", "type": "t"}]}
        ),
        error_from(429, {"detail": "slow down"}, retry_after="5"),
        ServerUnreachable("http://127.0.0.1:1", "connection refused"),
        StreamLost("j", 3, "connection refused"),
        WaitTimeout("j", 5.0, JobState.RUNNING),
        JobFailed(_failed_view()),
        JobCancelled(_failed_view().model_copy(update={"state": JobState.CANCELLED})),
    ],
    ids=type,
)
def test_every_error_survives_pickling_and_copying(error: KubetaskError) -> None:
    """What a worker process (multiprocessing, concurrent.futures) hands to its parent."""
    for again in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(again) is type(error)
        assert (str(again), again.args) == (str(error), error.args)
        assert again.__dict__ == error.__dict__


@pytest.mark.parametrize(("declared", "change"), [(3 * CHUNK, b"more"), (3 * CHUNK, None)])
def test_an_upload_whose_file_changes_size_stops_with_file_changed(
    tmp_path: Path, declared: int, change: bytes | None
) -> None:
    """Never a byte more than the request declared, nor an end short of it."""
    path = tmp_path / "grows.bin"
    path.write_bytes(b"x" * declared)

    def on_progress(done: int, total: int | None) -> None:
        if done == CHUNK:  # while it is read: grow it, or cut it short
            with path.open("ab" if change else "r+b") as file:
                file.write(change) if change else file.truncate(CHUNK + 1)

    with path.open("rb") as file, pytest.raises(FileChanged, match="nothing was stored"):
        for _ in chunks(file, total=declared, on_progress=on_progress):
            pass
