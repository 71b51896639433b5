"""`KubeApiServer`: the Kubernetes API test server on 127.0.0.1 and a free port, plain HTTP
with no authentication, run by uvicorn in a background thread of the test process.

    with KubeApiServer() as server:
        config = server.kubeconfig(tmp_path / "kubeconfig")
        kubernetes.config.load_kube_config(config_file=str(config))  # or kubectl --kubeconfig
        server.faults.fail_next(verb="create", resource="jobs", status=429, retry_after_s=1)
        server.drop_watches(); server.compact()
        assert server.requests[-1].status == 201
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
import yaml
from kubernetes import client as k8s

from tests.kubeapi.app import KubeApp
from tests.kubeapi.faults import Faults, RequestRecord
from tests.kubeapi.registry import Registry


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, woken at once by `request_exit()` instead of polling every 0.1 s."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown without its fixed 0.1 s pause: stop listening, ask every
        connection to close, wait (briefly) only while some are still open."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.timeout_graceful_shutdown or 2)
        while self.server_state.connections or self.server_state.tasks:
            if loop.time() > deadline:
                for task in self.server_state.tasks:
                    task.cancel()
                break
            await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()

    def request_exit(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._wakeup.set)


class KubeApiServer:
    """A Kubernetes API server for tests (see the package docstring for what it keeps)."""

    def __init__(
        self,
        *,
        version: str | None = None,
        namespaces: Iterable[str] = (),
        priority_classes: Mapping[str, int] | None = None,
        history: int = 10_000,
        seed: int | None = None,
        bookmark_interval_s: float = 1.0,
        watch_timeout_s: float = 1800.0,
    ) -> None:
        """`version`: the Kubernetes version whose schemas validate objects (default: the
        newest bundled with kubernetes-validate); `namespaces`: created besides default and
        the kube-* ones; `priority_classes`: name -> value that pods may name; `history`: how
        many changes watches can resume over; `seed`: makes uids and generated names
        reproducible (default: random, as on a real server) and seeds the fault rates
        (default 0); `bookmark_interval_s`: how often an idle watch that allows bookmarks
        gets one; `watch_timeout_s`: how long a watch lasts without `timeoutSeconds`."""
        self.registry = Registry(
            version=version,
            namespaces=namespaces,
            priority_classes=priority_classes,
            history=history,
            seed=seed,
        )
        self.faults = Faults(seed or 0)
        self.port = 0
        self.app = KubeApp(
            self.registry,
            self.faults,
            address=lambda: f"127.0.0.1:{self.port}",
            bookmark_interval_s=bookmark_interval_s,
            watch_timeout_s=watch_timeout_s,
        )
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, in order (a copy)."""
        with self.app.lock:
            return list(self.app.requests)

    def clear_requests(self) -> None:
        with self.app.lock:
            self.app.requests.clear()

    def start(self, timeout_s: float = 10) -> KubeApiServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # NODELAY
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = _Uvicorn(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"kubeapi-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the Kubernetes API test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """End open watches and log streams, then stop serving."""
        if self._server is None or self._thread is None:
            return
        self.app.stopping.set()
        self.app.drop_watches(abort=False)
        self._server.request_exit()
        self._thread.join(15)
        self._server = self._thread = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- for tests ---------------------------------------------------------------------------
    def kubeconfig(
        self, path: Path, *, namespace: str = "default", context: str = "kubeapi-test"
    ) -> Path:
        """Write a kubeconfig for this server (current context, default namespace)."""
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": namespace},
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def api_client(self) -> k8s.ApiClient:
        """An official-client ApiClient for this server; close it (`with ... as api:`)."""
        configuration = k8s.Configuration()
        configuration.host = self.url
        return k8s.ApiClient(configuration)

    def drop_watches(self, *, abort: bool = True) -> int:
        """Cut every open watch stream (abort=False: end them cleanly). Returns the count."""
        return self.app.drop_watches(abort=abort)

    def compact(self) -> None:
        """Forget the watch history: every resourceVersion older than now answers 410."""
        self.registry.store.compact()

    @property
    def resource_version(self) -> int:
        """The current (latest) resourceVersion."""
        return self.registry.store.rv
