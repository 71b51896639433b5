"""A job is accepted (201) only once its record is on disk: `WAITAOF` must count the local
fsync. When the disk does not confirm in time, or cannot (append-only persistence off), the
answer is 503 with Retry-After and nothing of the job remains: no record, no idempotency
key, no index entry, no place in the tenant's count of unfinished jobs, no event log.

A real server stands in for the bad disk (tests/component/aof.py): its AOF stalled, or off.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kubetask import keys
from kubetask.controller.redis_server import RedisServer
from kubetask.models import DEFAULT_TENANT
from tests.component import aof
from tests.servers import ApiServer

PROBLEM = "application/problem+json"


@pytest.fixture
def api_on_own_redis(own_redis: RedisServer, tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(redis_url=own_redis.url, data_dir=tmp_path / "api", fsync_timeout_s=0.5)
    server.start()
    yield server
    server.close()


def _contents(client: redis.Redis) -> dict[str, object]:
    """Every key and what it holds, but the per-minute submission counters (which count
    attempts, refused ones too). `client` decodes responses."""
    found: dict[str, object] = {}
    for name in client.scan_iter("kubetask:*"):
        if ":submits:" in name:
            continue
        kind = client.type(name)
        if kind == "hash":
            found[name] = client.hgetall(name)
        elif kind == "set":
            found[name] = client.smembers(name)
        elif kind == "zset":
            found[name] = client.zrange(name, 0, -1)
        elif kind == "list":
            found[name] = client.lrange(name, 0, -1)
        else:
            found[name] = client.get(name)
    return found


def _assert_503(response_status: int, headers: dict[str, str]) -> None:
    assert response_status == 503
    assert headers["content-type"] == PROBLEM
    assert int(headers["retry-after"]) >= 1


def test_a_job_the_disk_did_not_take_is_503_and_leaves_nothing(
    api_on_own_redis: ApiServer, own_redis: RedisServer
) -> None:
    api = api_on_own_redis
    key = uuid.uuid4().hex
    body = {"kind": "noop", "labels": {"test": key[:12]}}
    with redis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        kept = api.submit("noop")  # a job from before, which must stay as it was
        api.wait(kept)
        before = _contents(client)
        aof.stall(client)
        try:
            response = api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            _assert_503(response.status_code, dict(response.headers))
            assert "on disk" in response.json()["detail"], response.text
            assert _contents(client) == before
            assert not client.exists(keys.idempotency(DEFAULT_TENANT, key))
            listed = api.client.get("/v1/jobs", params={"label": f"test={key[:12]}"})
            assert listed.json()["items"] == []
        finally:
            aof.unstall(client)
    again = api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201, again.text  # a new job: the key had not stayed behind
    assert api.wait(again.json()["id"])["state"] == "succeeded"
    assert api.job(kept)["state"] == "succeeded"


def test_with_append_only_persistence_off_no_job_is_accepted(
    api_on_own_redis: ApiServer, own_redis: RedisServer
) -> None:
    api = api_on_own_redis
    with redis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        before = _contents(client)
        client.config_set("appendonly", "no")  # WAITAOF for a local fsync is now an error
        try:
            response = api.client.post("/v1/jobs", json={"kind": "noop"})
            _assert_503(response.status_code, dict(response.headers))
            assert _contents(client) == before
            dry = api.client.post("/v1/jobs", params={"dry_run": "true"}, json={"kind": "noop"})
            assert dry.status_code == 200  # writes nothing, so it needs no disk
        finally:
            client.config_set("appendonly", "yes")
            aof.wait_until_written(client)
    assert api.client.post("/v1/jobs", json={"kind": "noop"}).status_code == 201
