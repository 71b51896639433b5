"""SIGTERM with event streams open (dashboard tabs, followers): the streams end, each SSE
client told to reconnect and each WebSocket closed as going away, and the process stops
everything it runs (reconciler, embedded Redis, Lease) and exits within the grace period,
instead of waiting for every client to leave."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.servers import ApiServer, redis_processes

STREAMS = 50  # SSE: 40 of a running job, 10 of every job's
GRACE_S = 30  # the chart's terminationGracePeriodSeconds
EXIT_WITHIN_S = 10  # what the server promises: its graceful timeout


@dataclass
class Follower:
    """One SSE client in a thread: what it read, and how its stream ended."""

    url: str
    lines: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> Follower:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=GRACE_S)) as client,
                client.stream("GET", self.url) as response,
            ):
                assert response.status_code == 200
                for line in response.iter_lines():
                    self.lines.append(line)
                    self.opened.set()
        except BaseException as exc:
            self.error = exc
        finally:
            self.opened.set()


def _read_to_the_end(socket: ClientConnection) -> None:
    while True:
        socket.recv(timeout=5)


def test_sigterm_with_50_open_streams_exits_within_the_grace(tmp_path: Path) -> None:
    api = ApiServer(redis_url=None, data_dir=tmp_path / "api", max_streams_per_tenant=100)
    try:
        api.start()
        job_id = api.submit("noop", {"steps": 3000, "step_s": 0.1})
        api.wait(job_id, {"running"})
        urls = [f"{api.base_url}/v1/jobs/{job_id}/events"] * 40 + [f"{api.base_url}/v1/events"] * 10
        followers = [Follower(url).start() for url in urls]
        for follower in followers:
            assert follower.opened.wait(30), "a stream never opened"
        ws_url = api.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
        with connect(ws_url, open_timeout=10) as socket:
            socket.recv(timeout=10)
            assert api.process is not None
            sent = time.monotonic()
            api.process.send_signal(signal.SIGTERM)
            try:
                api.process.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still running {GRACE_S} s after SIGTERM") from None
            took = time.monotonic() - sent
            api.process = None
            with pytest.raises(ConnectionClosed) as closed:
                _read_to_the_end(socket)
        print(f"\nSIGTERM with {STREAMS} SSE streams and a WebSocket open: exited in {took:.2f} s")
        assert took < EXIT_WITHIN_S
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001  # going away
        for follower in followers:
            assert follower.thread is not None
            follower.thread.join(5)
            assert not follower.thread.is_alive(), "a stream is still open"
            assert follower.error is None, follower.error  # ended, not cut
            assert ": the server is shutting down; reconnect" in follower.lines
            assert "retry: 1000" in follower.lines
        log = api.log_tail()
        assert "Application shutdown complete" in log
        assert redis_processes(api.data_dir) == [], "the embedded redis outlived its controller"
    finally:
        api.close()


def test_ctrl_c_stops_the_server_and_its_redis_once(tmp_path: Path) -> None:
    """Ctrl-C on `make run`: the terminal sends SIGINT to the whole foreground group. The
    embedded Redis is not in that group, so the server stops it itself, once: no "gone,
    restarting it" on the way out."""
    api = ApiServer(redis_url=None, data_dir=tmp_path / "api")
    api.data_dir.mkdir(parents=True)
    with (api.data_dir / "api.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubetask.api"],
            env=api.env(),
            stdout=log,
            stderr=log,
            start_new_session=True,  # a group of its own, as a terminal's foreground job
        )
    try:
        deadline = time.monotonic() + 30
        while not _ready(api):
            assert process.poll() is None, api.log_tail()
            assert time.monotonic() < deadline, api.log_tail()
            time.sleep(0.05)
        (server,) = redis_processes(api.data_dir)
        assert os.getpgid(server) != process.pid, "the embedded redis has a group of its own"
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(EXIT_WITHIN_S) == 0, api.log_tail()
    finally:
        if process.poll() is None:
            process.kill()
        api.client.close()
    assert "restarting it" not in api.log_tail()
    assert redis_processes(api.data_dir) == [], "the embedded redis outlived its controller"


def _ready(api: ApiServer) -> bool:
    try:
        return api.client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False
