"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler, each the upstream code (one multi-call binary built from the official Go
modules by scripts/cluster.sh), plus the process node agent (node_agent.py) that runs pods
as local processes. Test infrastructure, not product.

    plane = ControlPlane(folder).start()   # returns when the API is ready and nodes are Ready
    plane.kubeconfig                        # an admin kubeconfig (token over TLS)
    plane.stop()

Everything lives in `folder` (keys, etcd's data, logs, kubeconfig, pids), so `down` from
another process can stop what `up` started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetask.controller.redis_server import free_port
from tests.cluster.audit import AuditRecord
from tests.cluster.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".kubetask" / "cluster" / "bin" / "kubecluster"
KUBERNETES_VERSION = "v1.37.2"

CONTROLLERS = ",".join(
    [
        "job-controller",
        "ttl-after-finished-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "pod-garbage-collector-controller",
        "persistentvolume-binder-controller",
        "persistentvolumeclaim-protection-controller",
        "persistentvolume-protection-controller",
        "resourcequota-controller",
        "node-lifecycle-controller",
        "taint-eviction-controller",
        "disruption-controller",
        "root-ca-certificate-publisher-controller",
    ]
)


class ControlPlaneError(RuntimeError):
    """A component did not start; the message ends with its log's tail."""


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ControlPlane:
    folder: Path
    binary: Path = BINARY
    # The Job controller's pod-failure back-off (upstream: 10 s doubling); None keeps it.
    pod_failure_backoff: str | None = "1s"
    nodes: int = 1  # CPU nodes; a GPU node is always added
    api_port: int = 0
    etcd_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- where things are ------------------------------------------------------------------
    @property
    def pki(self) -> Pki:
        return Pki(self.folder / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.jsonl"

    @property
    def pids(self) -> Path:
        return self.folder / "pids.json"

    # -- start ------------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        if not self.binary.exists():
            raise ControlPlaneError(
                f"{self.binary} is missing: build it with `scripts/cluster.sh build`"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        pki = make_pki(self.folder / "pki")
        self.api_port = self.api_port or free_port()
        etcd_port, peer_port = free_port(), free_port()
        try:
            self._spawn("etcd", self._etcd_args(etcd_port, peer_port))
            self._spawn("kube-apiserver", self._apiserver_args(pki, etcd_port))
            self.write_kubeconfig(self.kubeconfig, token=pki.admin_token)
            self._wait_ready()
            env = {}
            if self.pod_failure_backoff:
                env["KUBECLUSTER_POD_FAILURE_BACKOFF"] = self.pod_failure_backoff
            self._spawn("kube-controller-manager", self._controller_args(pki), env=env)
            self._spawn("kube-scheduler", self._scheduler_args())
            self._spawn_agent()
            self._wait_nodes()
        except BaseException:
            self.stop()
            raise
        self.pids.write_text(json.dumps({n: p.pid for n, p in self.processes.items()}))
        return self

    def _spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        command = argv if name == "node-agent" else [str(self.binary), name, *argv]
        self.processes[name] = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        log.close()

    def _etcd_args(self, port: int, peer: int) -> list[str]:
        client, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
        self.etcd_url = client
        return [
            "--name=kubetask",
            f"--data-dir={self.folder / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=kubetask={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: Pki, etcd_port: int) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={self.folder / 'certs'}",
            f"--tls-cert-file={pki.cert}",
            f"--tls-private-key-file={pki.key}",
            f"--token-auth-file={pki.tokens}",
            "--anonymous-auth=false",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--endpoint-reconciler-type=none",
            "--kubelet-preferred-address-types=InternalIP",
            # configmaps uncached: their watches resume from etcd itself, where compact()
            # makes a real 410 (the watch cache would keep serving history for 75 s)
            "--watch-cache-sizes=configmaps#0",
            f"--audit-policy-file={self._audit_policy()}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",
            "--audit-log-format=json",
            "--v=1",
        ]

    def _audit_policy(self) -> Path:
        """Every request, with who sent it and what came back (no bodies): at its end, and
        a long-running one (a watch) also when its response starts."""
        path = self.folder / "audit-policy.json"
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata"}],
        }
        path.write_text(json.dumps(policy))
        return path

    def requests(self, *, user: str | None = None) -> list[AuditRecord]:
        """What the API server answered so far (from its audit log), optionally one user's."""
        records: dict[str, AuditRecord] = {}  # by audit id: a watch's end replaces its start
        text = self.audit_log.read_text() if self.audit_log.exists() else ""
        complete = text[: text.rfind("\n") + 1]  # the server may be halfway through a line
        for line in complete.splitlines():
            event = json.loads(line)
            record = AuditRecord.parse(event)
            if user is None or record.user == user:
                records[event["auditID"]] = record
        return list(records.values())

    def _controller_args(self, pki: Pki) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.cert}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--node-monitor-grace-period=40s",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--v=1",
        ]

    def _spawn_agent(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "tests.cluster.node_agent",
            f"--kubeconfig={self.kubeconfig}",
            f"--workdir={self.folder / 'node'}",
            f"--cpu-nodes={self.nodes}",
            f"--tls-cert={self.pki.cert}",
            f"--tls-key={self.pki.key}",
        ]
        self._spawn("node-agent", argv)

    def write_kubeconfig(
        self, path: Path, *, token: str, namespace: str = "default", server: str | None = None
    ) -> Path:
        """A kubeconfig for this cluster with a bearer token (admin, or a ServiceAccount's);
        `server`: another address of it (a proxy in front)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubetask",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority": str(self.pki.cert),
                    },
                }
            ],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "kubetask",
                    "context": {"cluster": "kubetask", "user": "user", "namespace": namespace},
                }
            ],
            "current-context": "kubetask",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # -- waiting -----------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, bytes]:
        """GET a path of the API as admin: (status, body)."""
        context = ssl.create_default_context(cafile=str(self.pki.cert))
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.pki.admin_token}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {process.returncode}:\n{_tail(self.logs / f'{name}.log')}"
                )

    def _wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise ControlPlaneError(
            f"kube-apiserver not ready:\n{_tail(self.logs / 'kube-apiserver.log')}"
        )

    def _wait_nodes(self, timeout_s: float = 90) -> None:
        """Every node Ready and free of the not-ready taint (the node lifecycle controller
        removes it once the agent's first heartbeat is seen)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            status, body = self.get("/api/v1/nodes")
            nodes = json.loads(body).get("items", []) if status == 200 else []
            if len(nodes) == self.nodes + 1 and all(_schedulable(n) for n in nodes):
                return
            time.sleep(0.3)
        raise ControlPlaneError(f"nodes not ready:\n{_tail(self.logs / 'node-agent.log')}")

    # -- what tests do to it -----------------------------------------------------------------
    def compact(self) -> int:
        """Compact etcd up to its current revision, as its periodic compaction would: a
        watch resuming from an older version then gets 410 Gone (from etcd, for resources
        the API server does not cache: configmaps here)."""

        def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(
                self.etcd_url + path, data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                answer: dict[str, Any] = json.load(response)
                return answer

        revision = int(call("/v3/kv/range", {"key": "AA=="})["header"]["revision"])
        try:
            call("/v3/kv/compaction", {"revision": revision, "physical": True})
        except urllib.error.HTTPError as error:  # nothing written since the last compaction
            if b"compacted" not in error.read():
                raise
        return revision

    # -- stop --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every component: the agent first (it kills its pods), then the rest."""
        order = [
            "node-agent",
            "kube-scheduler",
            "kube-controller-manager",
            "kube-apiserver",
            "etcd",
        ]
        for name in order:
            process = self.processes.pop(name, None)
            if process is not None:
                _stop(process.pid, exited=lambda: process.poll() is not None)  # noqa: B023
                process.wait(30)
        self.pids.unlink(missing_ok=True)


def _schedulable(node: dict[str, object]) -> bool:
    spec = node.get("spec") or {}
    assert isinstance(spec, dict)
    taints = spec.get("taints") or []
    return not any(t.get("key", "").startswith("node.kubernetes.io/") for t in taints)


def _stop(pid: int, grace_s: float = 10, *, exited: Callable[[], bool] | None = None) -> None:
    """SIGTERM the process group, SIGKILL what is left after `grace_s`. `exited`: how to
    tell that it ended (a child must be reaped: a zombie still takes signals)."""

    def gone() -> bool:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        return False

    check = exited or gone
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while not check():
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def stop_recorded(folder: Path) -> None:
    """Stop a control plane that another process started (`cluster.sh down`)."""
    pids = folder / "pids.json"
    if not pids.exists():
        return
    recorded: dict[str, int] = json.loads(pids.read_text())
    order = ["node-agent", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
    for name in order:
        if name in recorded:
            _stop(recorded[name])
    pids.unlink()
