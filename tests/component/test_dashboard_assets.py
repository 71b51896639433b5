"""The dashboard's page and assets, and the all-jobs live stream it reads, over plain HTTP
against the real API process (the browser tests are in tests/integration/test_dashboard.py)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
import pytest

from tests.servers import ApiServer


def test_the_page_and_its_assets_are_served_with_a_strict_csp(api: ApiServer) -> None:
    page = api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp  # no CDN, no inline script
    for path in ("/ui/app.js", "/ui/style.css", "/ui/favicon.svg"):
        asset = api.client.get(path)
        assert asset.status_code == 200, path
        assert asset.content
        assert f'"{path}"' in page.text or path == "/ui/favicon.svg"
    assert "http" not in api.client.get("/ui/style.css").text  # nothing fetched from elsewhere


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..%2Fsettings.py", "/ui/%2e%2e"])
def test_anything_but_the_known_assets_is_404(api: ApiServer, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_the_dashboard_is_not_part_of_the_api_spec(api: ApiServer) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert "/v1/events" in paths


def test_the_live_stream_says_ready_then_carries_every_jobs_state_and_progress(
    api: ApiServer,
) -> None:
    frames: list[tuple[str, dict[str, Any]]] = []
    ready = threading.Event()
    marker = uuid.uuid4().hex[:12]
    job_ids: list[str] = []

    def read() -> None:
        with (
            httpx.Client(base_url=api.base_url, timeout=30) as client,
            client.stream("GET", "/v1/events") as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    if event == "ready":
                        ready.set()
                        continue
                    frames.append((event, data))
                    ended = {
                        d.get("job_id")
                        for e, d in frames
                        if e == "state" and d.get("state") == "succeeded"
                    }
                    if job_ids and ended >= set(job_ids):
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(10)
    job_ids.extend(
        api.submit("noop", {"steps": 5, "step_s": 0.05}, labels={"test": marker}) for _ in range(2)
    )
    reader.join(30)
    assert not reader.is_alive(), "both jobs' terminal states came through the stream"
    for job_id in job_ids:
        mine = [(e, d) for e, d in frames if d.get("job_id") == job_id]
        states = [d["state"] for e, d in mine if e == "state"]
        assert states[0] == "queued"
        assert states[-1] == "succeeded"
        assert any(e == "progress" for e, _ in mine)
        seqs = [d["seq"] for _, d in mine]
        assert seqs == sorted(seqs)  # conflated, never reordered
