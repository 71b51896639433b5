"""A Redis that evicts keys at its maxmemory (any `maxmemory-policy` but noeviction) drops
accepted jobs, index entries and Idempotency-Keys without a word: the server says so at
start, as an error naming the setting, on a real server set that way."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from kubetask.controller.redis_server import RedisServer
from tests.servers import ApiServer


@pytest.mark.parametrize(("policy", "said"), [("allkeys-lru", True), ("noeviction", False)])
def test_the_server_says_at_start_when_redis_would_evict_jobs(
    own_redis: RedisServer, tmp_path: Path, policy: str, said: bool
) -> None:
    with redis.Redis.from_url(own_redis.url) as client:
        client.config_set("maxmemory-policy", policy)
    api = ApiServer(redis_url=own_redis.url, data_dir=tmp_path / "api")
    api.start()
    try:
        log = api.log_tail()
    finally:
        api.close()
    assert (f"maxmemory-policy is {policy}" in log) is said
    if said:
        assert "CONFIG SET maxmemory-policy noeviction" in log
