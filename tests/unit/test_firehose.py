"""Conflation of the all-jobs live stream: pure."""

from __future__ import annotations

import json

from kubetask.api.firehose import conflate, render


def _progress(job: str, seq: int) -> str:
    return json.dumps({"type": "progress", "job_id": job, "seq": seq, "current": seq})


def _state(job: str, seq: int, state: str) -> str:
    return json.dumps({"type": "state", "job_id": job, "seq": seq, "state": state})


def test_only_each_jobs_last_progress_of_a_batch_goes_out() -> None:
    batch = [_progress("a", 1), _progress("b", 1), _progress("a", 2), _progress("a", 3)]
    assert [json.loads(raw)["seq"] for _, _, raw in conflate(batch)] == [1, 3]
    assert [job for _, job, _ in conflate(batch)] == ["b", "a"]


def test_every_state_event_goes_out_in_order() -> None:
    batch = [
        _state("a", 1, "queued"),
        _progress("a", 2),
        _state("a", 3, "running"),
        _progress("a", 4),
        _progress("a", 5),
        _state("a", 6, "succeeded"),
    ]
    kept = [(kind, json.loads(raw)["seq"]) for kind, _, raw in conflate(batch)]
    assert kept == [("state", 1), ("state", 3), ("progress", 5), ("state", 6)]


def test_render_is_server_sent_events_with_the_type_as_event_name() -> None:
    text = render(conflate([_state("a", 1, "queued")]))
    assert text == f"event: state\ndata: {_state('a', 1, 'queued')}\n\n"
