"""Live events over SSE and WebSocket: order, resume by seq, replay for late subscribers."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import connect

from tests.servers import ApiServer, read_sse


def test_late_subscriber_gets_the_whole_history(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 5})
    api.wait(job_id)
    events = api.events(job_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["state"] == "queued"
    assert events[-1]["state"] == "succeeded"
    assert [e["current"] for e in events if e["type"] == "progress"][-1] == 5


def test_last_event_id_resumes_after_that_seq(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 5})
    api.wait(job_id)
    everything = api.events(job_id)
    resumed = api.events(job_id, since=3)
    assert resumed == everything[3:]
    by_query = list(read_sse(api.client, f"/v1/jobs/{job_id}/events?since=3", {}, 30))
    assert by_query == resumed


def test_a_live_subscriber_sees_progress_as_it_happens(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 8, "step_s": 0.2})
    stream = read_sse(api.client, f"/v1/jobs/{job_id}/events", {}, 60)
    first_progress = next(e for e in stream if e["type"] == "progress")
    assert first_progress["current"] < 8, "progress arrived only at the end"
    assert api.job(job_id)["state"] == "running"
    rest = list(stream)
    assert rest[-1]["state"] == "succeeded"
    seqs = [first_progress["seq"], *(e["seq"] for e in rest)]
    assert seqs == sorted(set(seqs))


def _ws_events(api: ApiServer, job_id: str, since: int = 0) -> list[dict[str, Any]]:
    url = api.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws?since={since}"
    with connect(url, open_timeout=10) as socket:
        return [json.loads(message) for message in socket]


def test_websocket_carries_the_same_events(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 4, "step_s": 0.05})
    live = _ws_events(api, job_id)
    assert live[-1]["state"] == "succeeded"
    assert live == api.events(job_id)
    assert _ws_events(api, job_id, since=2) == live[2:]
