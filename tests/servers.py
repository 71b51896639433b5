"""Real servers for tests: the API process (API + controller + local backend) on a free port,
pointed at a real Redis-protocol server. Each test that needs one starts it and stops it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from kubetask.controller.redis_server import free_port
from kubetask.models import JobState
from tests.progress_check import LEDGER

TERMINAL = {s.value for s in JobState if s.terminal}
_databases = itertools.cycle(range(1, 16))  # 0 is the shared `api` fixture's


def own_database(redis_url: str) -> str:
    """A database of the test Redis for one installation, emptied. Two installations must
    never share one (each would take the other's jobs, missing from its own backend, for
    deleted), so every test that needs one takes it here, in turn."""
    url = redis_url.rsplit("/", 1)[0] + f"/{next(_databases)}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


class ApiServer:
    """`python -m kubetask.api` in a process of its own; `restart()`/`kill()` act as an operator."""

    def __init__(self, *, redis_url: str | None, data_dir: Path, **settings: Any) -> None:
        """`redis_url=None`: the server starts its embedded Redis (in `data_dir/redis`)."""
        self._redis_url = redis_url
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.settings = {
            "retry_backoff_s": 0.1,
            "grace_s": 2,
            "keepalive_s": 1,
            "resync_s": 2,
            "slots": 4,
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base_url, timeout=30)

    @property
    def redis_url(self) -> str:
        """The Redis this server uses: the one it was given, or (once started) its embedded
        one, whose address the data folder's lock file records."""
        if self._redis_url is not None:
            return self._redis_url
        record = json.loads((self.data_dir / "redis" / "lock").read_text())
        return str(record["url"])

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETASK_")}
        env.update({"KUBETASK_DATA_DIR": str(self.data_dir), "KUBETASK_PORT": str(self.port)})
        if self._redis_url is not None:
            env["KUBETASK_REDIS_URL"] = self._redis_url
        env.update({f"KUBETASK_{k.upper()}": str(v) for k, v in self.settings.items()})
        return env

    def start(self, timeout_s: float = 20) -> ApiServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "api.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubetask.api"], env=self.env(), stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"api exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/readyz").status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"api not ready:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.data_dir / "api.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, with no shutdown code run."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def restart_with(self, **settings: Any) -> None:
        """Restart with some settings changed."""
        self.settings.update(settings)
        self.restart()

    def close(self) -> None:
        self.stop()
        kill_tasks(self.data_dir)
        self.client.close()

    # -- helpers for tests -------------------------------------------------------------
    def submit(self, kind: str, params: dict[str, Any] | None = None, **fields: Any) -> str:
        response = self.client.post(
            "/v1/jobs", json={"kind": kind, "params": params or {}, **fields}
        )
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def wait(
        self, job_id: str, states: set[str] | None = None, timeout_s: float = 60
    ) -> dict[str, Any]:
        """Poll until the job is in one of `states` (default: any terminal state)."""
        wanted = states or TERMINAL
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["state"] in wanted:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stuck in {job['state']}: {job}")
            time.sleep(0.05)

    def events(
        self, job_id: str, *, since: int | None = None, timeout_s: float = 60
    ) -> list[dict[str, Any]]:
        """The whole SSE stream of a job, to its end, parsed."""
        headers = {"Last-Event-ID": str(since)} if since is not None else {}
        return list(read_sse(self.client, f"/v1/jobs/{job_id}/events", headers, timeout_s))


@contextlib.contextmanager
def bearer_clients(base_url: str, tokens: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    """An HTTP client per name, each sending its token ("" for none)."""
    clients = {
        name: httpx.Client(
            base_url=base_url,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        for name, token in tokens.items()
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()


def read_sse(
    client: httpx.Client, path: str, headers: dict[str, str], timeout_s: float
) -> Iterator[dict[str, Any]]:
    with client.stream("GET", path, headers=headers, timeout=timeout_s) as response:
        assert response.status_code == 200, response.read()
        frame: dict[str, str] = {}
        for line in response.iter_lines():
            if not line:
                if "data" in frame:
                    event = json.loads(frame["data"])
                    assert str(event["seq"]) == frame["id"]
                    assert event["type"] == frame["event"]
                    LEDGER.see(event)  # never back within an attempt (tests/progress_check.py)
                    yield event
                frame = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                frame[key] = value


def redis_processes(data_dir: Path) -> list[int]:
    """Every live Redis server process with its data in `data_dir/redis` (an API server's
    embedded one; the server works in its data folder), read from /proc."""
    folder = (data_dir / "redis").resolve()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            server = (proc / "comm").read_text().strip() in ("redis-server", "valkey-server")
            zombie = ") Z" in (proc / "stat").read_text()
            if server and not zombie and (proc / "cwd").resolve() == folder:
                found.append(int(proc.name))
    return sorted(found)


def kill_tasks(data_dir: Path) -> None:
    """Leave no process behind: every supervisor and task group under `data_dir`."""
    for name in ("shim.json", "started.json"):
        for path in data_dir.glob(f"local/jobs/*/pods/*/{name}"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                pid = int(json.loads(path.read_text())["pid"])
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
