"""Live events over SSE and WebSocket: order, resume by seq, replay for late subscribers."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.servers import ApiServer, own_database, read_sse


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


# -- resume points and stream slots ------------------------------------------------------------
CAP = 3  # the capped server's streams per tenant
GARBAGE = [b"\xb2", b"abc", b"-1", b"+3", b"3.0", b"0x10", b"1_0", b"\xd9\xa1", b"9" * 16]


@pytest.fixture(scope="module")
def capped(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """An API server allowing each tenant CAP open streams."""
    server = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=tmp_path_factory.mktemp("capped"),
        max_streams_per_tenant=CAP,
    )
    server.start()
    yield server
    server.close()


def _open_streams(api: ApiServer, job_id: str, count: int) -> list[int]:
    """Open `count` streams of a job at once (each holds a slot while open), then close
    them: the status of each."""
    with contextlib.ExitStack() as stack:
        statuses = []
        for _ in range(count):
            client = stack.enter_context(httpx.Client(base_url=api.base_url, timeout=10))
            response = stack.enter_context(client.stream("GET", f"/v1/jobs/{job_id}/events"))
            statuses.append(response.status_code)
        return statuses


def test_a_garbage_resume_point_is_400_and_takes_no_slot(capped: ApiServer) -> None:
    job_id = capped.submit("noop", {"steps": 200, "step_s": 0.1})
    path = f"/v1/jobs/{job_id}/events"
    with httpx.Client(base_url=capped.base_url, timeout=10) as client:
        for _ in range(2):  # more garbage than there are slots
            for value in GARBAGE:
                response = client.get(path, headers={b"Last-Event-ID": value})
                assert response.status_code == 400, (value, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert "Last-Event-ID" in response.json()["detail"]
        for text in ["²", "-1", "abc", "", "1e3"]:
            response = client.get(path, params={"since": text})
            assert response.status_code == 400, (text, response.text)
            assert "since" in response.json()["detail"]
    assert _open_streams(capped, job_id, CAP) == [200] * CAP, "a refused request kept a slot"
    assert _open_streams(capped, job_id, CAP + 1)[-1] == 429
    assert _open_streams(capped, job_id, CAP) == [200] * CAP, "a closed stream kept its slot"
    capped.client.delete(f"/v1/jobs/{job_id}")


def test_a_resume_at_or_past_the_end_ends_at_once(capped: ApiServer) -> None:
    job_id = capped.submit("noop", {"steps": 2})
    capped.wait(job_id)
    last = capped.events(job_id)[-1]["seq"]
    for headers, params in [
        ({"Last-Event-ID": str(last)}, {}),
        ({"Last-Event-ID": str(last + 10)}, {}),
        ({}, {"since": str(last)}),
    ]:
        started = time.monotonic()
        response = capped.client.get(
            f"/v1/jobs/{job_id}/events", headers=headers, params=params, timeout=10
        )
        # 204: what tells a browser's EventSource to stop reconnecting
        assert response.status_code == 204, response.text
        assert time.monotonic() - started < 1
    started = time.monotonic()
    assert _ws_events(capped, job_id, since=last) == []
    assert time.monotonic() - started < 1
    assert _open_streams(capped, job_id, CAP) == [200] * CAP
    # one before the end still gets the terminal event
    assert [e["seq"] for e in capped.events(job_id, since=last - 1)] == [last]


def test_a_resume_point_past_a_running_jobs_last_event_is_400_at_once(capped: ApiServer) -> None:
    job_id = capped.submit("noop", {"steps": 200, "step_s": 0.1})
    ahead = str(10**9)  # no event of the job has that seq (yet): it would wait in silence
    response = capped.client.get(f"/v1/jobs/{job_id}/events", params={"since": ahead})
    assert response.status_code == 400, response.text
    assert "past the job's last event" in response.json()["detail"]
    url = capped.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws?since={ahead}"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10)
    assert refused.value.response.status_code == 400
    assert _open_streams(capped, job_id, CAP) == [200] * CAP  # neither kept a slot
    capped.client.delete(f"/v1/jobs/{job_id}")


def test_a_websocket_with_a_garbage_since_is_refused(capped: ApiServer) -> None:
    job_id = capped.submit("noop", {"steps": 2})
    url = capped.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws?since=%C2%B2"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10)
    assert refused.value.response.status_code == 400


def test_a_websocket_whose_client_left_gives_its_slot_back_at_once(capped: ApiServer) -> None:
    """A quiet job (no event for minutes): the server learns of the client's close by reading
    it, not at its next send, so the slot is free again within moments."""
    job_id = capped.submit("noop", {"steps": 2, "step_s": 300})
    capped.wait(job_id, {"running"})
    url = capped.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
    for _ in range(CAP):
        with connect(url, open_timeout=10) as socket:
            socket.recv(timeout=10)  # the events so far: it is streaming
    deadline = time.monotonic() + 5
    while _open_streams(capped, job_id, CAP) != [200] * CAP:
        assert time.monotonic() < deadline, "a closed WebSocket kept its slot"
        time.sleep(0.2)
    capped.client.delete(f"/v1/jobs/{job_id}")
