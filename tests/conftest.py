"""Shared fixtures: a real Redis-protocol server per session, API servers per module/test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from kubetask._sse import EventCursor, JobEvent
from kubetask.controller.redis_server import RedisServer, free_port
from kubetask.models import ProgressEvent
from tests.cluster.audit import AuditRecord
from tests.cluster.bootstrap import Installation, admin_client, install, uninstall
from tests.cluster.control_plane import BINARY, ControlPlane
from tests.component.flaky_proxy import FlakyProxy
from tests.progress_check import LEDGER
from tests.s3.server import BINARY as S3_BINARY
from tests.s3.server import S3Server
from tests.servers import ApiServer, own_database


@pytest.fixture(scope="session", autouse=True)
def progress_never_goes_back() -> Iterator[None]:
    """Every progress event the SDK reads in this session (its event cursor, which its
    `events()` and `wait()` follow) is checked like those tests/servers.py reads: a job's
    fraction never decreases within an attempt (tests/progress_check.py)."""
    original = EventCursor.feed

    def feed(cursor: EventCursor, line: str) -> JobEvent | None:
        event = original(cursor, line)
        if isinstance(event, ProgressEvent):
            LEDGER.see(event.model_dump(mode="json"))
        return event

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EventCursor, "feed", feed)
        yield


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


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler, built from the official Go modules) and the process node agent, shared
    by the session: each installation gets a namespace of its own."""
    if not BINARY.exists():
        message = f"{BINARY} is missing: run `make cluster-build` (or `make test`, which builds it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    plane = ControlPlane(tmp_path_factory.mktemp("cluster")).start()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (MinIO, built from the Go module proxy by scripts/s3.sh)
    on 127.0.0.1, shared by the session: each test makes a bucket of its own."""
    if not S3_BINARY.exists():
        message = f"{S3_BINARY} is missing: run `make s3-build` (or `make test`, which builds it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["local", "kubernetes"])
def any_backend(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiServer]:
    """The API with each backend in turn: the local one, and the kubernetes one against the
    real control plane, whose node agent runs each pod as a local process."""
    root = tmp_path_factory.mktemp(f"contract-{request.param}")
    url = own_database(redis_server.url)
    if request.param == "local":
        server = ApiServer(redis_url=url, data_dir=root / "api")
        server.start()
        yield server
        server.close()
        return
    plane = request.getfixturevalue("control_plane")
    with kubernetes_stack(plane, url, root) as stack:
        yield stack.api


@dataclass
class KubeStack:
    api: ApiServer
    plane: ControlPlane
    namespace: str
    kubeconfig: Path  # admin, in the installation's namespace (kubectl)
    installation: Installation
    proxy: FlakyProxy  # between the controller and the API server

    def client(self) -> k8s.ApiClient:
        """An admin client of the cluster."""
        return admin_client(self.plane)

    def controller_requests(self) -> list[AuditRecord]:
        """What the controller sent, as the API server's audit log has it."""
        return self.plane.requests(user=self.installation.user)


@contextlib.contextmanager
def kubernetes_stack(
    plane: ControlPlane,
    redis_url: str,
    root: Path,
    *,
    values: dict[str, Any] | None = None,
    **settings: object,
) -> Iterator[KubeStack]:
    """An API process (kubernetes backend) installed in a namespace of its own: the chart's
    ServiceAccount and Role (rendered with `values`), a restricted namespace, the artifacts
    claim on its folder."""
    namespace = f"kt-{uuid.uuid4().hex[:10]}"
    proxy = FlakyProxy(upstream_port=plane.api_port)  # proxy.drop() cuts its connections
    installation = install(
        plane,
        namespace=namespace,
        folder=root / "cluster",
        artifacts=root / "api" / "artifacts",
        values=values,
        server=f"https://127.0.0.1:{proxy.port}",
    )
    kubeconfig = plane.write_kubeconfig(
        root / "admin.kubeconfig", token=plane.pki.admin_token, namespace=namespace
    )
    server = ApiServer(
        redis_url=redis_url,
        data_dir=root / "api",
        backend="kubernetes",
        kubeconfig=str(installation.kubeconfig),
        namespace=namespace,
        **settings,
    )
    try:
        server.start()
        yield KubeStack(server, plane, namespace, kubeconfig, installation, proxy)
    finally:
        server.close()
        proxy.close()
        uninstall(plane, installation)


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
def kube_stack(
    control_plane: ControlPlane, redis_server: RedisServer, tmp_path: Path
) -> Iterator[KubeStack]:
    """A kubernetes-backed API of the test's own, in a namespace of its own."""
    url = own_database(redis_server.url)
    with kubernetes_stack(control_plane, url, tmp_path) as stack:
        yield stack
