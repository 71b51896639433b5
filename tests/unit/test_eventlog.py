"""The event log's wire format: what the append script receives and what readers parse."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import JsonValue, ValidationError

from kubetask import eventlog, keys
from kubetask.eventlog import parse_event, script_args, script_keys
from kubetask.models import JobState, ProgressEvent, StateEvent

T0 = datetime(2025, 3, 1, 12, 0, 30, 250000, tzinfo=UTC)


def as_stored(fields: dict[str, JsonValue], seq: int) -> str:
    """What APPEND_SCRIPT builds from its arguments: `{"seq":N,` followed by the body."""
    return '{"seq":' + str(seq) + "," + script_args(fields)[0]


def progress_fields() -> dict[str, JsonValue]:
    return {
        "type": "progress",
        "job_id": "0000000000abcdef",
        "timestamp": T0.isoformat(),
        "current": 3,
        "total": 10,
        "progress": 0.3,
        "stage": "train",
        "message": "epoch 3",
        "metrics": {"epoch": 3, "loss": 0.25, "val_accuracy": 0.9},
        "index": 2,
    }


def state_fields() -> dict[str, JsonValue]:
    return {
        "type": "state",
        "job_id": "0000000000abcdef",
        "timestamp": T0.isoformat(),
        "state": "running",
        "reason": None,
        "message": None,
        "attempts": 1,
    }


def test_body_is_the_event_json_without_its_opening_brace() -> None:
    fields = progress_fields()
    body, _, _ = script_args(fields)
    assert not body.startswith("{")
    assert json.loads("{" + body) == fields


def test_history_limit_is_passed_as_text() -> None:
    assert script_args(state_fields())[1] == str(eventlog.HISTORY_LIMIT)


def test_only_progress_events_are_flagged_as_the_latest_progress() -> None:
    assert script_args(progress_fields())[2] == "1"
    assert script_args(state_fields())[2] == "0"


def test_progress_event_round_trips_with_the_seq_redis_assigns() -> None:
    event = parse_event(as_stored(progress_fields(), seq=42))
    assert event == ProgressEvent(
        job_id="0000000000abcdef",
        seq=42,
        timestamp=T0,
        current=3,
        total=10,
        progress=0.3,
        stage="train",
        message="epoch 3",
        metrics={"epoch": 3, "loss": 0.25, "val_accuracy": 0.9},
        index=2,
    )


def test_state_event_round_trips_with_the_seq_redis_assigns() -> None:
    event = parse_event(as_stored(state_fields(), seq=7).encode())
    assert event == StateEvent(
        job_id="0000000000abcdef", seq=7, timestamp=T0, state=JobState.RUNNING, attempts=1
    )


def test_a_datetime_field_survives_the_body() -> None:
    fields = state_fields()
    fields_with_datetime: dict[str, object] = {**fields, "timestamp": T0}
    body = script_args(fields_with_datetime)[0]  # type: ignore[arg-type]
    event = parse_event('{"seq":1,' + body)
    assert event.timestamp == T0


@pytest.mark.parametrize(
    "raw",
    [
        '{"seq":1,"type":"other","job_id":"x","timestamp":"2025-01-01T00:00:00Z"}',
        '{"seq":1,"type":"state","job_id":"x","timestamp":"2025-01-01T00:00:00Z","state":"gone"}',
        "not json",
    ],
)
def test_parse_event_rejects_what_is_not_an_event(raw: str) -> None:
    with pytest.raises(ValidationError):
        parse_event(raw)


def test_script_keys_are_the_jobs_keys_in_script_order() -> None:
    job_id = "0000000000abcdef"
    assert script_keys(job_id) == [
        keys.seq(job_id),
        keys.history(job_id),
        keys.latest_progress(job_id),
        keys.progress_channel(job_id),
    ]
    assert keys.progress_channel(job_id) == f"kubetask:progress:{job_id}"


def test_a_non_finite_number_is_sent_as_null_in_strict_json() -> None:
    """A metric that is NaN or infinite (a quality score over no rows, a loss that blew up)
    reaches a client as null, as in a result: `NaN` is no JSON (JSON.parse refuses it)."""
    fields = progress_fields()
    fields["metrics"] = {"loss": float("nan"), "grad": float("inf"), "per_class": [1.0, -1e999]}
    fields["current"] = float("nan")

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    event = json.loads(as_stored(fields, 4), parse_constant=refuse)
    assert event["metrics"] == {"loss": None, "grad": None, "per_class": [1.0, None]}
    assert event["current"] is None
    worker = eventlog.WorkerRun(run="r", started=0.0)
    body = eventlog.progress_args(fields, worker)[0]
    assert json.loads("{" + body, parse_constant=refuse)["metrics"]["loss"] is None
