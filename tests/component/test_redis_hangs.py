"""A Redis that stops answering without going away (a wedged server, a network that drops
everything: here SIGSTOP) against the real API process: each request that needs it answers
503 within `KUBETASK_REDIS_TIMEOUT_S` instead of hanging for good, readiness says not ready,
and once Redis answers again so does the API. Subscriptions (the live event hub) have no
such limit: they wait for messages as long as none comes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from kubetask.controller.redis_server import RedisServer
from tests.servers import ApiServer

TIMEOUT_S = 1.5


def test_a_hung_redis_is_503_within_the_timeout_then_service_comes_back(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis", port=None)
    url = redis_server.start()
    api = ApiServer(
        redis_url=url, data_dir=tmp_path / "api", redis_timeout_s=TIMEOUT_S, fsync_timeout_s=1
    )
    api.start()
    pid = redis_server.pid
    assert pid is not None
    try:
        before = api.wait(api.submit("noop", {}))
        assert before["state"] == "succeeded"
        os.kill(pid, signal.SIGSTOP)
        try:
            with httpx.Client(base_url=api.base_url, timeout=30) as client:
                calls: list[Callable[[], httpx.Response]] = [
                    lambda: client.post("/v1/jobs", json={"kind": "noop"}),
                    lambda: client.get(f"/v1/jobs/{before['id']}"),
                    lambda: client.get("/readyz"),
                ]
                for call in calls:
                    began = time.monotonic()
                    answer = call()
                    took = time.monotonic() - began
                    assert answer.status_code == 503, answer.text
                    assert took < TIMEOUT_S + 2.5, took
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while api.client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready again"
            time.sleep(0.1)
        after = api.wait(api.submit("noop", {}))
        assert after["state"] == "succeeded"
    finally:
        api.close()
        redis_server.stop()
