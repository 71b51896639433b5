"""Shared fixtures: a real Redis-protocol server per session, API servers per module/test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.redis_server import RedisServer, free_port
from tests.kubeapi.server import KubeApiServer
from tests.kubeapi.simulator import Simulator
from tests.servers import ApiServer, own_database


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
def fresh_api(redis_server: RedisServer, tmp_path: Path) -> Iterator[ApiServer]:
    """An API server of the test's own, for tests that stop, kill or restart it. It gets a
    Redis database of its own: two installations must never share one (each would take
    the other's jobs, missing from its own backend, for deleted)."""
    url = own_database(redis_server.url)
    server = ApiServer(redis_url=url, data_dir=tmp_path / "api")
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module", params=["local", "kubernetes"])
def any_backend(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiServer]:
    """The API with each backend in turn: the local one, and the kubernetes one against the
    Kubernetes API test server, whose simulator runs each pod as a local process."""
    root = tmp_path_factory.mktemp(f"contract-{request.param}")
    url = own_database(redis_server.url)
    if request.param == "local":
        server = ApiServer(redis_url=url, data_dir=root / "api")
        server.start()
        yield server
        server.close()
        return
    with kubernetes_stack(url, root) as stack:
        yield stack.api


@dataclass
class KubeStack:
    api: ApiServer
    kube: KubeApiServer
    simulator: Simulator
    kubeconfig: Path


@contextlib.contextmanager
def kubernetes_stack(redis_url: str, root: Path, **settings: object) -> Iterator[KubeStack]:
    """API (kubernetes backend) + Kubernetes API test server + Job controller/kubelet."""
    kube = KubeApiServer().start()
    simulator = Simulator(
        kube, workdir=root / "kubelet", claims={"kubetask-artifacts": root / "api" / "artifacts"}
    ).start()
    kubeconfig = kube.kubeconfig(root / "kubeconfig")
    server = ApiServer(
        redis_url=redis_url,
        data_dir=root / "api",
        backend="kubernetes",
        kubeconfig=str(kubeconfig),
        **settings,
    )
    try:
        server.start()
        yield KubeStack(server, kube, simulator, kubeconfig)
    finally:
        server.close()
        simulator.stop()
        kube.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the test's own, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> str:
    """The URL of a Redis database of the test's own, emptied."""
    return own_database(redis_server.url)


@pytest.fixture
def kube_stack(redis_server: RedisServer, tmp_path: Path) -> Iterator[KubeStack]:
    """A kubernetes-backed API of the test's own, with the test server and simulator."""
    url = own_database(redis_server.url)
    with kubernetes_stack(url, tmp_path) as stack:
        yield stack
