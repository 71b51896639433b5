"""`Simulator`: the Job controller, the scheduler and the kubelet of simulated nodes, beside
the test server in the same process, working on the server's objects through the registry —
so every write bumps the same resourceVersion and reaches the same watches as a client's.

    with KubeApiServer() as server, Simulator(server, workdir=tmp_path) as sim:
        ...  # create Jobs with any client; their pods run as local processes

Level-triggered like the real controllers: a change only marks a Job or Pod dirty; a loop
thread syncs dirty objects (and everything every `resync_s`), re-reading them from storage.
Knobs: `nodes` (labels, allocatable, taints: what cannot fit stays Pending/Unschedulable),
`missing_images` (ErrImagePull, then ImagePullBackOff), `evict()`, `oom_kill()`,
`retry_backoff_s` (the Job controller's back-off before replacing a failed pod, doubling up to
`max_retry_backoff_s`), `max_grace_s` (caps termination grace periods), `claims` (claim name
-> host folder for persistentVolumeClaim volumes; default `<workdir>/claims/<name>`),
`base_env`, `entrypoints` (image -> command for containers without one). See containers.py
for how container paths map to host folders, kubelet.py and job_controller.py for what is
simulated. `stop()` kills every process it started and raises the first internal error.

Not simulated: images (every container runs on the host, `python` as this interpreter),
probes (running means ready), resource limits (but `oom_kill()`), securityContext and a
read-only root filesystem (a hard-coded absolute path outside the mounts is the host's own),
networking, PersistentVolumeClaim objects (a claim needs no object), secrets (only optional
ones), native sidecars, backoffLimitPerIndex and successPolicy, log timestamps;
`status.uncountedTerminatedPods` stays empty (the tracking finalizer is removed in the same
sync that counts a pod)."""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.cluster.containers import default_base_env
from tests.kubeapi.errors import ApiError
from tests.kubeapi.job_controller import JobPlan, plan_job
from tests.kubeapi.job_pods import TRACKING_FINALIZER, is_finished, pod_for
from tests.cluster.kubelet import Kubelet
from tests.kubeapi.patch import MERGE_PATCH
from tests.kubeapi.recorder import EventRecorder
from tests.kubeapi.registry import Registry
from tests.kubeapi.resources import JOBS, PODS
from tests.kubeapi.scheduler import SimNode, schedule
from tests.kubeapi.server import KubeApiServer
from tests.kubeapi.storage import Change

Obj = dict[str, Any]
Key = tuple[str, str]  # namespace, name
log = logging.getLogger(__name__)


class SimulatorError(RuntimeError):
    """The simulator failed internally (a bug in it, not in the code under test)."""


def _controller_uid(obj: Obj) -> str | None:
    return next(
        (r.get("uid") for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")),
        None,
    )


class Simulator:
    """Job controller + scheduler + kubelet for the objects of one test server."""

    def __init__(
        self,
        server: KubeApiServer | Registry,
        *,
        workdir: Path,
        nodes: Sequence[SimNode] | None = None,
        claims: Mapping[str, Path] | None = None,
        base_env: Mapping[str, str] | None = None,
        entrypoints: Mapping[str, Sequence[str]] | None = None,
        missing_images: Iterable[str] = (),
        retry_backoff_s: float = 0.05,
        max_retry_backoff_s: float = 1.0,
        restart_backoff_s: float = 0.1,
        image_retry_s: float = 0.3,
        max_grace_s: float | None = None,
        resync_s: float = 0.5,
    ) -> None:
        self.registry = server.registry if isinstance(server, KubeApiServer) else server
        self.workdir = workdir
        self.nodes = list(nodes or [SimNode()])
        self.claims = dict(claims or {})
        self.missing_images = set(missing_images)
        self.retry_backoff_s = retry_backoff_s
        self.max_retry_backoff_s = max_retry_backoff_s
        self.resync_s = resync_s
        self.errors: list[BaseException] = []
        self.events = EventRecorder(self.registry)
        self.kubelet = Kubelet(
            workdir=workdir,
            configmaps=self._configmap,
            secrets=self._secret,
            claim_dir=lambda _namespace, claim: self.claim_dir(claim),
            node_ips={n.name: f"10.0.0.{i + 1}" for i, n in enumerate(self.nodes)},
            base_env=dict(base_env if base_env is not None else default_base_env()),
            entrypoints=dict(entrypoints or {}),
            missing_images=self.missing_images,
            now=self.registry.now,
            restart_backoff_s=restart_backoff_s,
            image_retry_s=image_retry_s,
            max_grace_s=max_grace_s,
        )
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._dirty_pods: set[Key] = set()
        self._dirty_jobs: set[Key] = set()
        self._timers: list[tuple[float, str, str, str]] = []
        self._pod_uids: dict[Key, str] = {}
        self._backoff_until: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._next_resync = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Simulator:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.registry.store.add_watcher(self)
        self.registry.log_source = self.kubelet
        self._thread = threading.Thread(target=self._loop, name="kubeapi-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop, kill every process started; raise SimulatorError on internal errors."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.registry.store.remove_watcher(self)
        if self.registry.log_source is self.kubelet:
            self.registry.log_source = None
        self.kubelet.stop()
        if self.errors:
            raise SimulatorError(f"the simulator failed: {self.errors[0]!r}") from self.errors[0]

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if error is None:
            self.stop()
        else:
            with contextlib.suppress(SimulatorError):
                self.stop()

    # -- knobs -------------------------------------------------------------------------------
    def claim_dir(self, claim: str) -> Path:
        """The host folder standing for a PersistentVolumeClaim."""
        return self.claims.get(claim) or self.workdir / "claims" / claim

    def _configmap(self, namespace: str, name: str) -> Obj | None:
        return self.registry.store.get("/configmaps", namespace, name)

    def _secret(self, namespace: str, name: str) -> Obj | None:
        return self.registry.store.get("/secrets", namespace, name)

    def evict(
        self,
        namespace: str,
        name: str,
        *,
        reason: str = "EvictionByEvictionAPI",
        message: str = "Eviction API: evicting",
    ) -> None:
        """Evict a pod: DisruptionTarget condition, then a graceful delete (it ends Failed)."""
        self.registry.evict(namespace, name, reason=reason, message=message)

    def oom_kill(self, namespace: str, name: str, container: str = "") -> bool:
        uid = self._pod_uids.get((namespace, name), "")
        killed = self.kubelet.oom_kill(uid, container)
        self._wake.set()
        return killed

    def pod_dir(self, namespace: str, name: str) -> Path | None:
        """The host folder of a pod that has run here (volumes/, logs/, termination/)."""
        run = self.kubelet.runs.get(self._pod_uids.get((namespace, name), ""))
        return run.folder if run else None

    # -- the store watcher -------------------------------------------------------------------
    def notify(self, change: Change) -> None:
        meta = change.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        with self._lock:
            if change.store_key == PODS.store_key:
                self._dirty_pods.add(key)
                owner = next(
                    (
                        r
                        for r in meta.get("ownerReferences") or []
                        if r.get("controller") and r.get("kind") == "Job"
                    ),
                    None,
                )
                if owner:
                    self._dirty_jobs.add((key[0], owner["name"]))
            elif change.store_key == JOBS.store_key:
                self._dirty_jobs.add(key)
        self._wake.set()

    def _after(self, delay_s: float, kind: str, key: Key) -> None:
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay_s, kind, *key))

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.02)
            self._wake.clear()
            try:
                self._step()
            except Exception as error:  # a bug in the simulator: report it on stop()
                log.exception("kubeapi simulator step failed")
                self.errors.append(error)
                self._stopping.wait(0.2)

    def _step(self) -> None:
        mono = time.monotonic()
        with self._lock:
            pods, jobs = self._dirty_pods, self._dirty_jobs
            self._dirty_pods, self._dirty_jobs = set(), set()
            while self._timers and self._timers[0][0] <= mono:
                _, kind, namespace, name = heapq.heappop(self._timers)
                (pods if kind == "pod" else jobs).add((namespace, name))
        if mono >= self._next_resync:
            self._next_resync = mono + self.resync_s
            store = self.registry.store
            pods |= {_key(p) for p in store.scan(PODS.store_key)}
            jobs |= {_key(j) for j in store.scan(JOBS.store_key)}
        pods |= set(self.kubelet.exited())
        for key in sorted(pods):
            self._guarded(self._sync_pod, key, "pod")
        if jobs:
            owned: dict[str, list[Obj]] = {}
            for pod in self.registry.store.scan(PODS.store_key):
                owned.setdefault(_controller_uid(pod) or "", []).append(pod)
            for key in sorted(jobs):
                self._guarded(lambda k: self._sync_job(k, owned), key, "job")

    def _guarded(self, sync: Callable[[Key], None], key: Key, kind: str) -> None:
        try:
            sync(key)
        except ApiError as error:  # a conflict or a race with a client: try again soon
            log.debug("simulator %s %s: %s", kind, key, error)
            self._after(0.05, kind, key)

    # -- pods: scheduler + kubelet -----------------------------------------------------------
    def _sync_pod(self, key: Key) -> None:
        pod = self.registry.store.get(PODS.store_key, *key)
        known = self._pod_uids.get(key)
        if pod is None or (known and known != pod["metadata"]["uid"]):
            if known:
                self.kubelet.forget(known)
                del self._pod_uids[key]
            if pod is None:
                return
        meta, spec = pod["metadata"], pod["spec"]
        self._pod_uids[key] = meta["uid"]
        if TRACKING_FINALIZER in (meta.get("finalizers") or []) and not self._job_exists(pod):
            self._release(key)
        node = spec.get("nodeName")
        if not node:
            if not meta.get("deletionTimestamp"):
                self._schedule(pod)
            return
        if node not in {n.name for n in self.nodes}:
            return
        result = self.kubelet.sync(pod, time.monotonic())
        for kind, reason, message in result.events:
            self.events.record(pod, kind, reason, message, component="kubelet", host=node)
        if result.status is not None and result.status != pod.get("status"):
            self.registry.update(PODS, *key, {**pod, "status": result.status}, subresource="status")
        if result.remove:
            with contextlib.suppress(ApiError):
                self.registry.delete(PODS, *key, {"gracePeriodSeconds": 0})
        if result.requeue_s is not None:
            self._after(result.requeue_s, "pod", key)

    def _schedule(self, pod: Obj) -> None:
        key = _key(pod)
        bound = [
            p
            for p in self.registry.store.scan(PODS.store_key)
            if p["spec"].get("nodeName")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        ]
        node, message = schedule(pod, self.nodes, bound)
        if node is not None:
            self.registry.bind(*key, node)
            message = f"Successfully assigned {key[0]}/{key[1]} to {node}"
            self.events.record(pod, "Normal", "Scheduled", message, component="default-scheduler")
            return
        status = dict(pod.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if c["type"] != "PodScheduled"]
        before = next(
            (c for c in status.get("conditions") or [] if c["type"] == "PodScheduled"), None
        )
        if before is None or before.get("message") != message:
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastTransitionTime": self.registry.now(),
                }
            )
            status["conditions"] = conditions
            self.registry.update(PODS, *key, {**pod, "status": status}, subresource="status")
            self.events.record(
                pod, "Warning", "FailedScheduling", message, component="default-scheduler"
            )
        self._after(1.0, "pod", key)

    def _job_exists(self, pod: Obj) -> bool:
        uid = _controller_uid(pod)
        return any(
            j["metadata"]["uid"] == uid
            for j in self.registry.store.scan(JOBS.store_key, pod["metadata"]["namespace"])
        )

    def _release(self, key: Key) -> None:
        """Remove the job-tracking finalizer (the pod's outcome is counted, or moot)."""
        pod = self.registry.store.get(PODS.store_key, *key)
        if pod is None:
            return
        remaining = [f for f in pod["metadata"].get("finalizers") or [] if f != TRACKING_FINALIZER]
        patch = {
            "metadata": {
                "finalizers": remaining or None,
                "resourceVersion": pod["metadata"]["resourceVersion"],
            }
        }
        self.registry.patch(PODS, *key, patch, MERGE_PATCH)

    # -- jobs: the Job controller and the TTL-after-finished controller ----------------------
    def _sync_job(self, key: Key, owned: Mapping[str, list[Obj]]) -> None:
        """One sync of the Job controller (and the TTL controller) for a Job; `owned`: the
        pods by the uid of their controller."""
        job = self.registry.store.get(JOBS.store_key, *key)
        if job is None:
            return
        uid = job["metadata"]["uid"]
        pods = list(owned.get(uid, []))
        if job["metadata"].get("deletionTimestamp"):
            for pod in pods:
                if TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or []):
                    self._release(_key(pod))
            return
        mono, now = time.monotonic(), self.registry.clock()
        plan = plan_job(job, pods, now, hold=mono < self._backoff_until.get(uid, 0.0))
        self._manage_pods(job, plan)
        if plan.status != job.get("status"):
            update = {**job, "status": plan.status}
            job = self.registry.update(JOBS, *key, update, subresource="status").obj
        for name in plan.release:
            self._release((key[0], name))
        for kind, reason, message in plan.events:
            self._job_event(job, kind, reason, message)
        if plan.new_failures:
            failed = plan.status.get("failed", 1)
            delay = min(self.retry_backoff_s * 2 ** (failed - 1), self.max_retry_backoff_s)
            self._backoff_until[uid] = mono + delay
            self._after(delay, "job", key)
        elif plan.held:
            self._after(max(self._backoff_until.get(uid, mono) - mono, 0.0), "job", key)
        if plan.requeue_s is not None:
            self._after(plan.requeue_s, "job", key)
        self._expire(job, now)

    def _manage_pods(self, job: Obj, plan: JobPlan) -> None:
        """Create and delete the plan's pods, as the Job controller does, with its events."""
        namespace = job["metadata"]["namespace"]
        for index in plan.create:
            try:
                created = self.registry.create(PODS, namespace, pod_for(job, index)).obj
            except ApiError as error:
                message = f"Error creating: {error.message}"
                self.events.record(
                    job, "Warning", "FailedCreate", message, component="job-controller"
                )
                plan.status["active"] = plan.status.get("active", 1) - 1
                self._after(1.0, "job", _key(job))
                continue
            message = f"Created pod: {created['metadata']['name']}"
            self.events.record(
                job, "Normal", "SuccessfulCreate", message, component="job-controller"
            )
        if not plan.status.get("active"):
            plan.status.pop("active", None)
        for name in plan.delete:
            with contextlib.suppress(ApiError):
                self.registry.delete(PODS, namespace, name)
                message = f"Deleted pod: {name}"
                self.events.record(
                    job, "Normal", "SuccessfulDelete", message, component="job-controller"
                )

    def _job_event(self, job: Obj, kind: str, reason: str, message: str) -> None:
        self.events.record(job, kind, reason, message, component="job-controller")

    def _expire(self, job: Obj, now: datetime) -> None:
        """ttlSecondsAfterFinished: delete a finished Job (foreground) once its time is up."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None or not is_finished(job):
            return
        status = job.get("status", {})
        finished = status.get("completionTime") or next(
            (
                c.get("lastTransitionTime")
                for c in status.get("conditions") or []
                if c["type"] in ("Complete", "Failed") and c.get("status") == "True"
            ),
            None,
        )
        if not finished:
            return
        moment = datetime.fromisoformat(finished.replace("Z", "+00:00"))
        remaining = (moment - now).total_seconds() + ttl
        if remaining > 0:
            self._after(remaining, "job", _key(job))
            return
        with contextlib.suppress(ApiError):
            self.registry.delete(JOBS, *_key(job), {"propagationPolicy": "Foreground"})


def _key(obj: Obj) -> Key:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
