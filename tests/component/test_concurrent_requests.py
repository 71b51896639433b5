"""Many requests at once against the real API process: every one is answered, and none with
503 for want of a Redis connection. The pool is bounded and a request waits for a free
connection (KUBETASK_REDIS_POOL_TIMEOUT_S) even while submissions hold theirs through
WAITAOF; only a wait past that timeout would be a 503. It serves them on uvicorn's fast
paths: libuv's event loop and the C HTTP parser."""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from kubetask.controller.redis_server import RedisServer
from tests.servers import ApiServer, own_database

CONCURRENT_GETS = 1000
CONCURRENT_POSTS = 300
TOTAL = CONCURRENT_GETS + CONCURRENT_POSTS
FILES_NEEDED = TOTAL + 1000  # both ends of every connection live on this machine


def _enough_open_files() -> None:
    """Raise the soft limit on open files, which the API process inherits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
        pytest.skip(f"{TOTAL} connections need {FILES_NEEDED} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < FILES_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))


@pytest.fixture
def busy_api(redis_server: RedisServer, tmp_path: Path) -> Iterator[ApiServer]:
    _enough_open_files()
    server = ApiServer(
        redis_url=own_database(redis_server.url),
        data_dir=tmp_path / "api",
        slots=1,  # the jobs submitted are real; they need not run here
        max_submits_per_minute=10 * CONCURRENT_POSTS,
    )
    server.start()
    yield server
    server.close()


async def _all_at_once(base_url: str, job_id: str, label: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=TOTAL, max_keepalive_connections=TOTAL)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        gets = [client.get(f"/v1/jobs/{job_id}") for _ in range(CONCURRENT_GETS)]
        body = {"kind": "noop", "labels": {"test": label}}
        posts = [client.post("/v1/jobs", json=body) for _ in range(CONCURRENT_POSTS)]
        return await asyncio.gather(*gets, *posts)


def test_a_thousand_concurrent_requests_are_all_served(busy_api: ApiServer) -> None:
    job_id = busy_api.submit("noop")
    label = uuid.uuid4().hex[:12]
    started = time.monotonic()
    responses = asyncio.run(_all_at_once(busy_api.base_url, job_id, label))
    took = time.monotonic() - started
    gets, posts = responses[:CONCURRENT_GETS], responses[CONCURRENT_GETS:]
    statuses = Counter(r.status_code for r in responses)
    served = statuses[200] + statuses[201]
    print(f"concurrent requests served: {served} of {TOTAL} in {took:.1f} s ({dict(statuses)})")
    refused = [r.text for r in responses if r.status_code >= 500][:3]
    assert statuses[503] == 0, refused
    assert [r.status_code for r in gets] == [200] * CONCURRENT_GETS, refused
    assert [r.status_code for r in posts] == [201] * CONCURRENT_POSTS, refused
    assert len({r.json()["id"] for r in posts}) == CONCURRENT_POSTS


async def _get_while_others_wait_on_redis(base_url: str, job_id: str) -> httpx.Response:
    """Four reads take the pool's connections and hold them while the server is paused (the
    event subscription has a client of its own; submissions waiting on disk would hold one
    only, as they share a batch); then a GET asks for one."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        posts = [asyncio.create_task(client.get(f"/v1/jobs/{job_id}")) for _ in range(4)]
        await asyncio.sleep(0.5)
        response = await client.get(f"/v1/jobs/{job_id}")
        await asyncio.gather(*posts)
        return response


def test_a_request_waits_for_a_connection_and_gets_503_only_past_the_timeout(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    api = ApiServer(
        redis_url=own_redis.url,
        data_dir=tmp_path / "api",
        redis_max_connections=4,
        redis_pool_timeout_s=3,
        fsync_timeout_s=1,
    )
    try:
        api.start()
        job_id = api.submit("noop")
        with redis.Redis.from_url(own_redis.url) as client:
            try:
                client.client_pause(1500)
                started = time.monotonic()
                waited = asyncio.run(_get_while_others_wait_on_redis(api.base_url, job_id))
                assert waited.status_code == 200, waited.text  # its turn came within 3 s
                assert time.monotonic() - started >= 1  # after a read let go

                api.restart_with(redis_pool_timeout_s=0.3, fsync_timeout_s=3)
                client.client_pause(3000)
                started = time.monotonic()
                refused = asyncio.run(_get_while_others_wait_on_redis(api.base_url, job_id))
                assert refused.status_code == 503, refused.text
                assert refused.headers["content-type"] == "application/problem+json"
                assert int(refused.headers["retry-after"]) >= 1
                assert time.monotonic() - started >= 0.5 + 0.3  # it waited the 0.3 s first
            finally:
                client.client_unpause()
        assert api.client.get(f"/v1/jobs/{job_id}").status_code == 200
    finally:
        api.close()


def test_the_api_serves_on_libuvs_loop_and_the_c_http_parser(api: ApiServer) -> None:
    assert api.process is not None
    assert api.client.get("/healthz").status_code == 200
    mapped = Path(f"/proc/{api.process.pid}/maps").read_text()
    assert "/uvloop/loop." in mapped  # the compiled loop, loaded
    assert "/httptools/parser/parser." in mapped
