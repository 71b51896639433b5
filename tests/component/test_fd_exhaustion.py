"""The API process and its open files, against the real server: it raises its soft limit to
the hard one at start (a `ulimit -n 256` was 140 streams), and where the hard limit is
reached, every answer is still one the README promises: a stream (200), a 429 or a 503
problem with Retry-After, never a plain-text 500; once the clients leave it serves again."""

from __future__ import annotations

import asyncio
import os
import resource
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ApiServer, own_database

STREAMS = 160  # a stream holds a socket; opening one takes a Redis connection too
HEADROOM = 40  # descriptors left to the server past those it has open when idle


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    api = ApiServer(
        redis_url=own_database(redis_url), data_dir=tmp_path / "api", max_streams_per_tenant=100
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))  # what it inherits
    try:
        api.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield api
    api.close()


def _files_limit(pid: int) -> tuple[int, int]:
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_the_server_raises_its_soft_files_limit_to_the_hard_one(server: ApiServer) -> None:
    assert server.process is not None
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert _files_limit(server.process.pid) == (hard, hard)
    assert f"open files: up to {hard} (the soft limit raised from 256)" in server.log_tail()


async def _open_streams(base_url: str, count: int) -> list[tuple[object, ...]]:
    """`count` streams opened at once, each held a while: (status, content type,
    Retry-After, body) for each, or ("dropped", the error) for a connection closed unanswered."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def one(path: str) -> tuple[object, ...]:
            try:
                async with client.stream("GET", path) as response:
                    if response.status_code == 200:
                        await asyncio.sleep(2)  # held while the others open
                        return (200, response.headers["content-type"], None, "")
                    body = (await response.aread()).decode(errors="replace")
                    retry = response.headers.get("retry-after")
                    return (response.status_code, response.headers["content-type"], retry, body)
            except httpx.TransportError as exc:  # accept() failing: nothing to answer on
                return ("dropped", type(exc).__name__)

        # a job's stream needs a job: a made-up id is answered (404) before any slot is taken
        paths = ["/v1/events", "/v1/jobs/nonexistent/events"] * (count // 2)
        return await asyncio.gather(*(one(path) for path in paths))


def test_out_of_file_descriptors_every_answer_is_a_promised_one(server: ApiServer) -> None:
    assert server.process is not None
    pid = server.process.pid
    open_now = len(os.listdir(f"/proc/{pid}/fd"))
    _, hard = _files_limit(pid)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_now + HEADROOM, hard))  # as a ulimit

    answers = asyncio.run(_open_streams(server.base_url, STREAMS))

    kinds = Counter(answer[:2] for answer in answers)
    for answer in answers:
        if answer[0] in ("dropped", 200, 404):
            continue
        status, content_type, retry_after, _ = answer
        assert status in (429, 503), (kinds, answer)
        assert content_type == "application/problem+json", answer
        assert retry_after is not None, answer
        assert int(str(retry_after)) >= 1, answer
    assert kinds[(503, "application/problem+json")], kinds  # the limit was reached
    # the clients gone, it serves again, under the same limit
    assert server.client.get("/v1/jobs").status_code == 200
    assert asyncio.run(_open_streams(server.base_url, 2))[0][0] == 200
