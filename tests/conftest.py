"""Shared fixtures: a real Redis-protocol server per session, API servers per module/test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.redis_server import RedisServer, free_port
from tests.servers import ApiServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API server shared by a module's tests (each test uses its own jobs)."""
    server = ApiServer(redis_url=redis_url, data_dir=tmp_path_factory.mktemp("api"))
    server.start()
    yield server
    server.close()


@pytest.fixture
def fresh_api(redis_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    """An API server of the test's own, for tests that stop, kill or restart it."""
    server = ApiServer(redis_url=redis_url, data_dir=tmp_path / "api")
    server.start()
    yield server
    server.close()
