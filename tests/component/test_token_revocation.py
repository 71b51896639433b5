"""A token taken out of the tokens file stops granting the streams it already opened (the
dashboard holds `/v1/events` open for as long as its page is), not only new requests: each
ends within a few seconds, SSE with a comment saying why, a WebSocket with 4401; a stream of
a token still listed carries on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.servers import ApiServer, own_database

KEPT = "kept-token-" + "k" * 24
REVOKED = "revoked-token-" + "r" * 24


def write_tokens(path: Path, *tokens: str) -> None:
    path.write_text(json.dumps([{"token": t, "tenant": "team-a", "role": "user"} for t in tokens]))


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[tuple[ApiServer, Path]]:
    tokens = tmp_path / "tokens.json"
    write_tokens(tokens, KEPT, REVOKED)
    api = ApiServer(
        redis_url=own_database(redis_url), data_dir=tmp_path / "api", tokens_file=tokens
    )
    api.start()
    yield api, tokens
    api.close()


class Reader(threading.Thread):
    """Reads one SSE stream to its end, keeping its lines."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.lines: list[str] = []
        self.opened = threading.Event()

    def run(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"}
        with httpx.stream("GET", self.url, headers=headers, timeout=60) as response:
            assert response.status_code == 200
            self.opened.set()
            self.lines.extend(response.iter_lines())


def drain(ws: ClientConnection) -> None:
    """Receive until the server closes (ConnectionClosed)."""
    while True:
        ws.recv(timeout=10)


def test_revoking_a_token_ends_the_streams_it_opened(server: tuple[ApiServer, Path]) -> None:
    api, tokens = server
    kept = httpx.Client(base_url=api.base_url, headers={"authorization": f"Bearer {KEPT}"})
    response = kept.post("/v1/jobs", json={"kind": "noop", "params": {"steps": 200, "step_s": 0.1}})
    job_id = response.json()["id"]
    streams = [
        Reader(f"{api.base_url}/v1/events", REVOKED),
        Reader(f"{api.base_url}/v1/jobs/{job_id}/events", REVOKED),
        Reader(f"{api.base_url}/v1/jobs/{job_id}/events", KEPT),
    ]
    for stream in streams:
        stream.start()
        assert stream.opened.wait(10)
    ws_url = api.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
    with connect(
        ws_url, additional_headers={"authorization": f"Bearer {REVOKED}"}, open_timeout=10
    ) as ws:
        ws.recv(timeout=10)  # following
        write_tokens(tokens, KEPT)
        revoked_at = time.monotonic()
        assert kept.get("/v1/jobs").status_code == 200
        with pytest.raises(ConnectionClosed) as closed:
            drain(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
    for stream in streams[:2]:
        stream.join(10)
        assert not stream.is_alive(), f"{stream.url} still open"
        assert stream.lines[-2].startswith(": the token this stream was opened with")
    assert time.monotonic() - revoked_at < 10
    assert streams[2].is_alive()  # the kept token's stream goes on
    kept.delete(f"/v1/jobs/{job_id}")
    streams[2].join(30)
    assert '"state":"cancelled"' in "".join(streams[2].lines).replace(" ", "")
    kept.close()
