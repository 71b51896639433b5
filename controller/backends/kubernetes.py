"""The kubernetes backend: every job is a `batch/v1` Job, through the official client.

Two informers (Jobs and Pods of this installation, by label selector) list and watch in
threads: each keeps a cache, resumes from the last `resourceVersion`, relists on `410 Gone`
and backs off on 429/5xx as `Retry-After` says; each change only names the job for the
reconciler, which then reads the cache (level-triggered, as Kubernetes controllers do).
Creating is idempotent (deterministic names, 409 AlreadyExists is success).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from pydantic import JsonValue

from controller.backends.base import BackendError, TaskSpec
from controller.backends.informer import Informer
from controller.backends.k8s_read import latest_pods, observe_job, termination_messages
from controller.manifests import (
    CONTAINER,
    LABEL_JOB_ID,
    ClusterSettings,
    build_event,
    build_job,
    build_params_configmap,
    job_name,
    owned_by,
    selector,
)
from controller.records import JobStatus
from controller.states import Observation
from kubetask.models import BackendRef

log = logging.getLogger("kubetask.kubernetes")

T = TypeVar("T")
API_THREADS = 16
Obj = dict[str, Any]


def api_client(kubeconfig: str | None) -> k8s.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig (path or default)."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = API_THREADS + 2  # and the two watches
    return k8s.ApiClient(configuration)


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _json(response: Any) -> Obj:
    data: Obj = json.loads(response.data)
    return data


class KubernetesBackend:
    """Runs each TaskSpec as a Job in `cluster.namespace`."""

    def __init__(self, *, api: k8s.ApiClient, cluster: ClusterSettings) -> None:
        self._cluster = cluster
        self._api = api  # handed over: closed by stop()
        self._batch = k8s.BatchV1Api(api)
        self._core = k8s.CoreV1Api(api)
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self._reporter = socket.gethostname()
        namespace, labels = cluster.namespace, selector(cluster)
        self._jobs = Informer(
            name="jobs",
            list_fn=self._batch.list_namespaced_job,
            namespace=namespace,
            selector=labels,
            on_change=self._changed,
        )
        self._pods = Informer(
            name="pods",
            list_fn=self._core.list_namespaced_pod,
            namespace=namespace,
            selector=labels,
            on_change=self._changed,
            index_label=LABEL_JOB_ID,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # API calls block (the official client is synchronous): they get threads of their own
        self._calls = ThreadPoolExecutor(API_THREADS, thread_name_prefix="kubernetes-api")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs.start()
        self._pods.start()
        await asyncio.to_thread(self._jobs.synced.wait, 30)
        await asyncio.to_thread(self._pods.synced.wait, 30)

    async def stop(self) -> None:
        await asyncio.to_thread(self._jobs.stop)
        await asyncio.to_thread(self._pods.stop)
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._api.close()  # type: ignore[no-untyped-call]

    def _changed(self, obj: Obj) -> None:
        job_id = obj.get("metadata", {}).get("labels", {}).get(LABEL_JOB_ID)
        if job_id and self._loop is not None:
            self._loop.call_soon_threadsafe(self.changes.put_nowait, job_id)

    # -- calls to the API ----------------------------------------------------------------
    async def _call(
        self, fn: Callable[..., T], *args: Any, ok: tuple[int, ...] = (), **kw: Any
    ) -> T | None:
        """One API call in a thread; None for the statuses in `ok`; others as BackendError."""
        try:
            call = functools.partial(fn, *args, **kw)
            return await asyncio.get_running_loop().run_in_executor(self._calls, call)
        except ApiException as exc:
            if exc.status in ok:
                return None
            raise BackendError(
                f"kubernetes API: {exc.status} {exc.reason}", retry_after_s=_retry_after(exc)
            ) from exc
        except OSError as exc:  # connection refused, reset, timeouts (urllib3 wraps in these)
            raise BackendError(f"kubernetes API unreachable: {exc}") from exc

    async def _read_job(self, name: str) -> Obj | None:
        response = await self._call(
            self._batch.read_namespaced_job,
            name,
            self._cluster.namespace,
            _preload_content=False,
            ok=(404,),
        )
        return _json(response) if response is not None else None

    # -- the Backend interface -----------------------------------------------------------
    async def create(self, spec: TaskSpec) -> None:
        manifest = build_job(spec, self._cluster)
        response = await self._call(
            self._batch.create_namespaced_job,
            self._cluster.namespace,
            manifest,
            _preload_content=False,
            ok=(409,),
        )
        job = (
            _json(response) if response is not None else await self._read_job(job_name(spec.job_id))
        )
        if job is None:
            raise BackendError(f"job {spec.job_id} neither created nor found")
        self._jobs.upsert(job)
        configmap = build_params_configmap(spec, self._cluster)
        if configmap is not None:
            await self._call(
                self._core.create_namespaced_config_map,
                self._cluster.namespace,
                owned_by(configmap, job),
                ok=(409,),
            )

    async def delete(self, job_id: str) -> None:
        await self._call(
            self._batch.delete_namespaced_job,
            job_name(job_id),
            self._cluster.namespace,
            propagation_policy="Background",
            ok=(404,),
        )

    async def observe(self, job_id: str) -> Observation | None:
        name = job_name(job_id)
        job = self._jobs.get(name) or await self._read_job(name)
        if job is None:
            return None
        return observe_job(job, self._pods.indexed(job_id))

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        return termination_messages(self._pods.indexed(job_id))

    async def logs(self, job_id: str, *, tail: int | None) -> str | None:
        pods = latest_pods(self._pods.indexed(job_id))
        parts = []
        for index, pod in sorted(pods.items()):
            text = await self._call(
                self._core.read_namespaced_pod_log,
                pod["metadata"]["name"],
                self._cluster.namespace,
                container=CONTAINER,
                tail_lines=tail,
                ok=(400, 404),
            )
            if text:
                parts.append(text if len(pods) == 1 else f"==> index {index} <==\n{text}")
        return "".join(parts)

    async def record_transition(self, job_id: str, status: JobStatus) -> None:
        """A Kubernetes Event on the Job, so `kubectl describe job` shows each transition."""
        job = self._jobs.get(job_name(job_id)) or await self._read_job(job_name(job_id))
        if job is None:
            return
        event = build_event(job, status, now=datetime.now(UTC), reporting_instance=self._reporter)
        await self._call(self._core.create_namespaced_event, self._cluster.namespace, event)

    def ref(self, job_id: str) -> BackendRef:
        return BackendRef(
            backend="kubernetes", name=job_name(job_id), namespace=self._cluster.namespace
        )

    def render(self, spec: TaskSpec) -> dict[str, JsonValue]:
        rendered: dict[str, JsonValue] = {
            "backend": "kubernetes",
            "job": build_job(spec, self._cluster),
        }
        configmap = build_params_configmap(spec, self._cluster)
        if configmap is not None:
            rendered["configmap"] = configmap
        return rendered
