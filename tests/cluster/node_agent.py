"""The process node agent: a kubelet for a real API server whose pods run as local processes.

    python -m tests.cluster.node_agent --kubeconfig K --workdir D --cpu-nodes 1 \
        --tls-cert C --tls-key K

It registers its Nodes (CPU nodes, and one GPU node with `nvidia.com/gpu` capacity, labelled
and tainted as a GPU node is), renews their Leases in `kube-node-lease` (the node lifecycle
controller then removes the not-ready taint, and would mark them NotReady if the agent
stopped), watches the pods bound to them and runs each container as a local process with
the pod's command, env and volumes mapped to folders (kubelet.py, containers.py): status is
patched as a kubelet writes it; a deleted pod gets SIGTERM, SIGKILL after its grace period,
its final status, then a delete with grace period 0 and a UID precondition. Container logs
are served over HTTPS at `/containerLogs/{namespace}/{pod}/{container}`, where the API
server's `pods/log` proxy asks, so `kubectl logs` works.

A `persistentVolumeClaim` volume is the folder of the `hostPath` PersistentVolume bound to
the claim (the PersistentVolume binder binds them; an unbound claim keeps the pod unscheduled,
as on a real cluster). Test infrastructure, not product.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import http.server
import logging
import signal
import ssl
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from tests.cluster.containers import default_base_env
from tests.cluster.kubelet import Kubelet
from tests.cluster.nodes import micro_now, node_manifest, node_status, now

Obj = dict[str, Any]
Key = tuple[str, str]
log = logging.getLogger("node-agent")

LEASE_S = 40
RENEW_S = 5.0
STRATEGIC = "application/strategic-merge-patch+json"
TASK_IMAGES = ("kubetask/trainer", "kubetask/gan")


class NodeAgent:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        workdir: Path,
        nodes: dict[str, bool],
        port: int,
        images: tuple[str, ...] = TASK_IMAGES,
    ) -> None:
        # bodies go as plain dicts and lists come back raw (_preload_content=False), which
        # the client's annotations do not allow for: its APIs are used untyped here
        self.core: Any = k8s.CoreV1Api(api)
        self.coordination: Any = k8s.CoordinationV1Api(api)
        self.nodes = nodes  # name -> is a GPU node
        self.port = port
        self.pods: dict[Key, Obj] = {}
        self.uids: dict[Key, str] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.dirty: set[Key] = set()
        self.timers: list[tuple[float, str, str]] = []
        self.seen_events: set[tuple[str, str, str]] = set()
        self.kubelet = Kubelet(
            workdir=workdir,
            configmaps=self._configmap,
            secrets=self._secret,
            claim_dir=self._claim_dir,
            node_ips=dict.fromkeys(nodes, "127.0.0.1"),
            base_env=default_base_env(),
            now=now,
            restart_backoff_s=1.0,
            image_retry_s=1.0,
            # The images "present" on this node: the task images, whose containers say
            # their command. Others (the controller's, Redis) fail to pull, as on a node
            # that cannot reach their registry: nothing is pulled here.
            has_image=lambda image: image.rsplit(":", 1)[0].endswith(images),
        )

    # -- what a kubelet reads from the API ---------------------------------------------------
    def _read(self, fn: Any, *args: Any) -> Obj | None:
        try:
            return fn(*args).to_dict(serialize=True)  # type: ignore[no-any-return]
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _configmap(self, namespace: str, name: str) -> Obj | None:
        return self._read(self.core.read_namespaced_config_map, name, namespace)

    def _secret(self, namespace: str, name: str) -> Obj | None:
        return self._read(self.core.read_namespaced_secret, name, namespace)

    def _claim_dir(self, namespace: str, claim: str) -> Path:
        pvc = self._read(self.core.read_namespaced_persistent_volume_claim, claim, namespace)
        volume = (pvc or {}).get("spec", {}).get("volumeName")
        pv = self._read(self.core.read_persistent_volume, volume) if volume else None
        path = (pv or {}).get("spec", {}).get("hostPath", {}).get("path")
        if not path:
            raise RuntimeError(f"claim {namespace}/{claim} is not bound to a hostPath volume")
        return Path(path)

    # -- nodes -------------------------------------------------------------------------------
    def register(self) -> None:
        for name, gpu in self.nodes.items():
            with contextlib.suppress(ApiException):
                self.core.create_node(node_manifest(name, gpu=gpu))
            self.core.patch_node_status(name, {"status": node_status(gpu=gpu, port=self.port)})
            self._renew(name)

    def _renew(self, name: str) -> None:
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_S, "renewTime": micro_now()}
        try:
            self.coordination.patch_namespaced_lease(name, "kube-node-lease", {"spec": spec})
        except ApiException as error:
            if error.status != 404:
                raise
            lease = {"metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": spec}
            self.coordination.create_namespaced_lease("kube-node-lease", lease)

    def heartbeat(self) -> None:
        beats = 0
        while not self.stopping.wait(RENEW_S):
            beats += 1
            for name, gpu in self.nodes.items():
                try:
                    self._renew(name)
                    if beats % 6 == 0:  # the status itself, as a kubelet does, less often
                        self.core.patch_node_status(
                            name, {"status": node_status(gpu=gpu, port=self.port)}
                        )
                except Exception:
                    log.exception("heartbeat of %s", name)

    # -- pods --------------------------------------------------------------------------------
    def watch_pods(self) -> None:
        while not self.stopping.is_set():
            try:
                listed = self.core.list_pod_for_all_namespaces(_preload_content=False)
                import json

                body = json.loads(listed.data)
                with self.lock:
                    self.pods = {_key(p): p for p in body["items"] if self._mine(p)}
                    self.dirty |= set(self.pods)
                self.wake.set()
                version = body["metadata"]["resourceVersion"]
                stream = k8s_watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    resource_version=version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                )
                for event in stream:
                    if self.stopping.is_set():
                        return
                    self._seen(event["type"], event["raw_object"])
            except Exception:
                if not self.stopping.is_set():
                    log.exception("pod watch; listing again")
                    time.sleep(0.5)

    def _mine(self, pod: Obj) -> bool:
        return pod.get("spec", {}).get("nodeName") in self.nodes

    def _seen(self, kind: str, pod: Obj) -> None:
        if kind not in ("ADDED", "MODIFIED", "DELETED") or not self._mine(pod):
            return
        key = _key(pod)
        with self.lock:
            if kind == "DELETED":
                self.pods.pop(key, None)
            else:
                self.pods[key] = pod
            self.dirty.add(key)
        self.wake.set()

    def _after(self, delay_s: float, key: Key) -> None:
        with self.lock:
            heapq.heappush(self.timers, (time.monotonic() + delay_s, *key))

    def run(self) -> None:
        next_resync = 0.0
        while not self.stopping.is_set():
            self.wake.wait(0.05)
            self.wake.clear()
            mono = time.monotonic()
            with self.lock:
                keys, self.dirty = self.dirty, set()
                while self.timers and self.timers[0][0] <= mono:
                    _, namespace, name = heapq.heappop(self.timers)
                    keys.add((namespace, name))
                if mono >= next_resync:
                    next_resync = mono + 1.0
                    keys |= set(self.pods) | set(self.uids)
            keys |= set(self.kubelet.exited())
            for key in sorted(keys):
                try:
                    self._sync(key)
                except ApiException as error:  # a conflict or a race: try again soon
                    log.info("pod %s/%s: %s %s", *key, error.status, error.reason)
                    self._after(0.2, key)
                except Exception:
                    log.exception("pod %s/%s", *key)
                    self._after(1.0, key)

    def _sync(self, key: Key) -> None:
        with self.lock:
            pod = self.pods.get(key)
        known = self.uids.get(key)
        if pod is None or (known and known != pod["metadata"]["uid"]):
            if known:
                self.kubelet.forget(known)
                del self.uids[key]
            if pod is None:
                return
        self.uids[key] = pod["metadata"]["uid"]
        result = self.kubelet.sync(pod, time.monotonic())
        for kind, reason, message in result.events:
            self._event(pod, kind, reason, message)
        if result.status is not None and result.status != pod.get("status"):
            self.core.patch_namespaced_pod_status(
                key[1],
                key[0],
                {"status": _replacing_states(result.status)},
                _content_type=STRATEGIC,
            )
        if result.remove:
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(
                    key[1],
                    key[0],
                    body=k8s.V1DeleteOptions(
                        grace_period_seconds=0,
                        preconditions=k8s.V1Preconditions(uid=pod["metadata"]["uid"]),
                    ),
                )
        if result.requeue_s is not None:
            self._after(result.requeue_s, key)

    def _event(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        if (meta["uid"], reason, message) in self.seen_events:
            return
        self.seen_events.add((meta["uid"], reason, message))
        stamp = now()
        event = {
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "kind": "Pod",
                "apiVersion": "v1",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        with contextlib.suppress(ApiException):  # e.g. the namespace is being deleted
            self.core.create_namespaced_event(meta["namespace"], event)

    # -- logs ----------------------------------------------------------------------------------
    def log_text(
        self, namespace: str, name: str, container: str, *, tail: int | None
    ) -> str | None:
        with self.lock:
            pod = self.pods.get((namespace, name))
        if pod is None:
            return None
        text = self.kubelet.read_log(pod, container, previous=False)
        if text is not None and tail is not None and tail >= 0:  # kubectl sends -1 for all
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:] if tail else [])
        return text

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.kubelet.stop()


def _replacing_states(status: Obj) -> Obj:
    """Container states as a strategic merge patch must say them: the states a container
    left named as null, or the patch would keep `waiting` beside `running`."""
    out = dict(status)
    for field in ("containerStatuses", "initContainerStatuses"):
        if field in out:
            out[field] = [
                {
                    **entry,
                    "state": {
                        "waiting": None,
                        "running": None,
                        "terminated": None,
                        **entry.get("state", {}),
                    },
                }
                for entry in out[field]
            ]
    return out


def _key(pod: Obj) -> Key:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]


def log_server(agent: NodeAgent, cert: str, key: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            query = urllib.parse.parse_qs(url.query)
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404)
                return
            tail = int(query["tailLines"][0]) if "tailLines" in query else None
            text = agent.log_text(parts[1], parts[2], parts[3], tail=tail)
            if text is None:
                self.send_error(404, f"container {parts[3]} of {parts[1]}/{parts[2]} has no log")
                return
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--cpu-nodes", type=int, default=1)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = 8
    api = k8s.ApiClient(configuration)
    nodes = {f"node-cpu-{i}": False for i in range(args.cpu_nodes)} | {"node-gpu-0": True}
    server: http.server.ThreadingHTTPServer | None = None
    agent = NodeAgent(api, workdir=args.workdir, nodes=nodes, port=0)
    server = log_server(agent, args.tls_cert, args.tls_key)
    agent.port = server.server_address[1]
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    agent.register()
    for target in (server.serve_forever, agent.heartbeat, agent.watch_pods):
        threading.Thread(target=target, daemon=True).start()
    log.info("nodes %s registered; logs on 127.0.0.1:%d", ", ".join(nodes), agent.port)
    agent.run()
    server.shutdown()


if __name__ == "__main__":
    main()
