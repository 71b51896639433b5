"""The kubernetes backend: every job is a `batch/v1` Job, through the official client.

Each job goes to its tenant's namespace (`tenant_namespaces`, else the installation's).
Per namespace, three informers (Jobs and Pods of this installation, by label selector; the
Job controller's `FailedCreate` Events on Jobs, by field selector) list and watch in
threads: each keeps a cache, resumes from the last `resourceVersion`, relists
on `410 Gone` and backs off on 429/5xx as `Retry-After` says; each change only names the
job for the reconciler, which then reads the caches (level-triggered, as Kubernetes
controllers do). Creating is idempotent (deterministic names, 409 AlreadyExists is success);
a create the API refuses for good (400, 403, 404, 413, 422) is CreateRejected, with its words.
The Event of each state transition is written off the hot path (`BestEffortWriter`: a
bounded queue, one worker, in order; dropped with a log line when full), so a job's creation
costs one API write; each Event waits (up to `EVENT_YIELD_S`) until no Job is being created
and none was for `EVENT_QUIET_S` (a burst of submissions gets its Jobs first, then the Events),
unless over half of `EVENT_QUEUE` is waiting.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from pydantic import JsonValue
from urllib3.exceptions import HTTPError

from kubetask.controller.backends.base import BackendError, CreateRejected, TaskSpec
from kubetask.controller.backends.informer import Informer
from kubetask.controller.backends.k8s_read import (
    FAILED_CREATE,
    api_message,
    event_job_id,
    latest_pods,
    observe_job,
    slim_job,
    slim_pod,
    termination_messages,
)
from kubetask.controller.best_effort import BestEffortWriter, InFlight
from kubetask.controller.clock import utcnow
from kubetask.controller.k8s_api import Obj, retry_after_s
from kubetask.controller.manifests import (
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
from kubetask.controller.records import JobStatus
from kubetask.controller.states import Observation
from kubetask.models import DEFAULT_TENANT, BackendRef

log = logging.getLogger("kubetask.kubernetes")

T = TypeVar("T")
API_THREADS = 16
WATCHES = 3  # per namespace: Jobs, Pods, Events
REJECTED = (400, 403, 404, 413, 422)  # a create answered so fails the same way when tried again
EVENTS_SELECTOR = f"involvedObject.kind=Job,reason={FAILED_CREATE}"
EVENT_QUEUE = 1000  # transitions whose Event is not written yet; beyond, Events are dropped
EVENT_YIELD_S = 1.0  # the longest an Event waits for the creates in progress to end
EVENT_QUIET_S = 0.25  # no create for this long: the creates of a burst are over
DELETED_KEPT = 1000  # deleted Jobs remembered for the Event of the transition that deleted them
ENDED_PHASES = ("Succeeded", "Failed")  # a pod in either runs nothing any more
SYNC_WAIT_S = 30.0  # at start, for every watch's first listing together: then it serves anyway


def api_client(kubeconfig: str | None, *, namespaces: int = 1) -> k8s.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig (path or default);
    connections for the calls and the watches of each namespace."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = API_THREADS + WATCHES * namespaces
    return k8s.ApiClient(configuration)


def read_json(fn: Callable[..., Any], *args: Any, **kw: Any) -> Obj:
    """`fn(*args, **kw)` with its answer's body read, and parsed, by the caller's thread
    (not after, on the event loop: reading it can block, or find the connection cut)."""
    data: Obj = json.loads(fn(*args, _preload_content=False, **kw).data)
    return data


JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
EVENTS = "/api/v1/namespaces/{namespace}/events"


def post(api: k8s.ApiClient, collection: str, namespace: str, manifest: Obj) -> Obj:
    """Create `manifest` in `collection` (JOBS, EVENTS) as the generated method sends it
    (the client's own serialization, auth and connection pool; non-2xx raised as
    ApiException), without first validating the manifest into a model (`V1Job`,
    `CoreV1Event`) and back, nor the answer into one: that took ~0.2 ms of CPU per create
    in the process that also serves the API. The created object, as JSON."""
    request = api.param_serialize(
        method="POST",
        resource_path=collection,
        path_params={"namespace": namespace},
        header_params={"Accept": "application/json"},
        body=manifest,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    if not 200 <= response.status <= 299:
        response.read()  # type: ignore[no-untyped-call]
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    data: Obj = json.loads(response.read())  # type: ignore[no-untyped-call]
    return data


class KubernetesBackend:
    """Runs each TaskSpec as a Job in its tenant's namespace (`tenant_namespaces`, else
    `cluster.namespace`), and watches every one of those namespaces."""

    def __init__(
        self,
        *,
        api: k8s.ApiClient,
        cluster: ClusterSettings,
        tenant_namespaces: Mapping[str, str] | None = None,
    ) -> None:
        self._cluster = cluster
        self._tenant_namespaces = dict(tenant_namespaces or {})
        self._api = api  # handed over: closed by stop()
        self._batch = k8s.BatchV1Api(api)
        self._core = k8s.CoreV1Api(api)
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self._reporter = socket.gethostname()
        # Jobs kubetask deleted (a cancel, a start timeout), as last seen: the Event of the
        # transition that deleted them still names them (Events outlive their object)
        self._deleted: OrderedDict[str, tuple[str, Obj]] = OrderedDict()
        labels = selector(cluster)
        self.namespaces = sorted({cluster.namespace, *self._tenant_namespaces.values()})
        self._jobs = self._informers_of(
            "jobs",
            self._batch.list_namespaced_job,
            selector=labels,
            on_change=self._changed,
            transform=slim_job,
        )
        self._pods = self._informers_of(
            "pods",
            self._core.list_namespaced_pod,
            selector=labels,
            on_change=self._changed,
            index_label=LABEL_JOB_ID,
            transform=slim_pod,
        )
        # Events have no labels: they are the Job controller's, about any Job; the name of
        # the Job they are about says which job (the uid, which Job of that name)
        self._events = self._informers_of(
            "events",
            self._core.list_namespaced_event,
            field_selector=EVENTS_SELECTOR,
            on_change=self._event_changed,
            index_key=event_job_id,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # API calls block (the official client is synchronous): they get threads of their own
        self._calls = ThreadPoolExecutor(API_THREADS, thread_name_prefix="kubernetes-api")
        self._creating = InFlight(EVENT_YIELD_S, quiet_s=EVENT_QUIET_S)
        self._transitions = BestEffortWriter[tuple[str, JobStatus]](
            self._write_event,
            name="kubernetes-events",
            capacity=EVENT_QUEUE,
            describe=lambda item: f"the Event of job {item[0]} turning {item[1].state}",
            yield_to=self._creating.idle,
        )

    def _informers_of(
        self, resource: str, list_fn: Callable[..., Any], **options: Any
    ) -> dict[str, Informer]:
        """One informer of `resource` per watched namespace."""
        return {
            namespace: Informer(
                name=f"{resource}/{namespace}", list_fn=list_fn, namespace=namespace, **options
            )
            for namespace in self.namespaces
        }

    def _informers(self) -> list[Informer]:
        return [*self._jobs.values(), *self._pods.values(), *self._events.values()]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transitions.start()
        for informer in self._informers():
            informer.start()
        deadline = time.monotonic() + SYNC_WAIT_S
        for informer in self._informers():
            await asyncio.to_thread(informer.synced.wait, max(deadline - time.monotonic(), 0))
        unsynced = [informer.name for informer in self._informers() if not informer.synced.is_set()]
        if unsynced:  # one namespace it cannot list must not keep every tenant waiting
            log.error(
                "not listed within %.0f s, serving all the same (what happens to their jobs "
                "is not seen until the listing works; the log above says why it fails): %s",
                SYNC_WAIT_S,
                ", ".join(unsynced),
            )

    async def stop(self) -> None:
        await self._transitions.stop()
        await asyncio.gather(*(asyncio.to_thread(i.stop) for i in self._informers()))
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._api.close()  # type: ignore[no-untyped-call]

    def _changed(self, obj: Obj) -> None:
        self._notify(obj.get("metadata", {}).get("labels", {}).get(LABEL_JOB_ID))

    def _event_changed(self, event: Obj) -> None:
        self._notify(event_job_id(event))

    def _notify(self, job_id: str | None) -> None:
        if job_id and self._loop is not None:
            self._loop.call_soon_threadsafe(self.changes.put_nowait, job_id)

    # -- where a job is --------------------------------------------------------------------
    def namespace_for(self, tenant: str) -> str:
        return self._tenant_namespaces.get(tenant, self._cluster.namespace)

    def _cluster_for(self, namespace: str) -> ClusterSettings:
        return replace(self._cluster, namespace=namespace)

    def _cached(self, job_id: str) -> tuple[str, Obj] | None:
        """(namespace, Job) from the caches, if a watch has seen the job."""
        name = job_name(job_id)
        for namespace, informer in self._jobs.items():
            job = informer.get(name)
            if job is not None:
                return namespace, job
        return None

    async def _find(self, job_id: str) -> tuple[str, Obj] | None:
        """(namespace, Job): from the caches, else read from the API in each namespace."""
        found = self._cached(job_id)
        if found is not None:
            return found
        for namespace in self.namespaces:
            job = await self._read_job(job_name(job_id), namespace)
            if job is not None:
                return namespace, job
        return None

    def _job_pods(self, job_id: str) -> tuple[str, list[Obj]]:
        """(namespace, the job's pods) from the caches; the installation's namespace when
        no pod has been seen."""
        for namespace, informer in self._pods.items():
            pods = informer.indexed(job_id)
            if pods:
                return namespace, pods
        return self._cluster.namespace, []

    # -- calls to the API ----------------------------------------------------------------
    async def _call(
        self,
        fn: Callable[..., T],
        *args: Any,
        ok: tuple[int, ...] = (),
        rejected: tuple[int, ...] = (),
        **kw: Any,
    ) -> T | None:
        """One API call in a thread; None for the statuses in `ok`; those in `rejected` as
        CreateRejected (with the API's message); others, and every way the connection can
        fail (refused, reset, cut before or during the answer, timed out), as BackendError."""
        try:
            call = functools.partial(fn, *args, **kw)
            return await asyncio.get_running_loop().run_in_executor(self._calls, call)
        except ApiException as exc:
            if exc.status in ok:
                return None
            if exc.status in rejected:
                raise CreateRejected(api_message(exc.body, exc.reason)) from exc
            raise BackendError(
                f"kubernetes API: {exc.status} {exc.reason}",
                retry_after_s=retry_after_s(exc.headers),
            ) from exc
        except (OSError, HTTPError) as exc:
            raise BackendError(f"kubernetes API unreachable: {exc}") from exc

    async def _read_job(self, name: str, namespace: str) -> Obj | None:
        return await self._call(
            read_json, self._batch.read_namespaced_job, name, namespace, ok=(404,)
        )

    # -- the Backend interface -----------------------------------------------------------
    async def create(self, spec: TaskSpec) -> None:
        with self._creating.one():
            await self._create(spec)

    async def _create(self, spec: TaskSpec) -> None:
        namespace = self.namespace_for(spec.tenant)
        cluster = self._cluster_for(namespace)
        manifest = build_job(spec, cluster)
        created = await self._call(
            post, self._api, JOBS, namespace, manifest, ok=(409,), rejected=REJECTED
        )
        job = (
            created
            if created is not None
            else await self._read_job(job_name(spec.job_id), namespace)
        )
        if job is None:
            raise BackendError(f"job {spec.job_id} neither created nor found")
        # in the cache without a change notice: the sync creating it goes on to observe it
        self._jobs[namespace].upsert(job, notify=False)
        configmap = build_params_configmap(spec, cluster)
        if configmap is not None:
            try:
                await self._call(
                    self._core.create_namespaced_config_map,
                    namespace,
                    owned_by(configmap, job),
                    ok=(409,),
                    rejected=REJECTED,
                )
            except CreateRejected:  # (too large): the Job's pods would wait for it forever
                await self._delete_job(spec.job_id, namespace)
                raise

    async def delete(self, job_id: str) -> None:
        found = await self._find(job_id)
        if found is None:
            return
        await self._delete_job(job_id, found[0])
        self._deleted[job_id] = found
        while len(self._deleted) > DELETED_KEPT:
            self._deleted.popitem(last=False)

    async def _delete_job(self, job_id: str, namespace: str) -> None:
        await self._call(
            self._batch.delete_namespaced_job,
            job_name(job_id),
            namespace,
            propagation_policy="Background",
            ok=(404,),
        )

    async def observe(self, job_id: str) -> Observation | None:
        found = await self._find(job_id)
        if found is None:
            return None
        namespace, job = found
        return observe_job(
            job, self._pods[namespace].indexed(job_id), self._events[namespace].indexed(job_id)
        )

    async def termination_messages(self, job_id: str) -> dict[int, str]:
        return termination_messages(self._job_pods(job_id)[1])

    async def logs(self, job_id: str, *, tail: int | None) -> str | None:
        namespace, all_pods = self._job_pods(job_id)
        pods = latest_pods(all_pods)
        if not pods:
            return None
        parts = []
        for index, pod in sorted(pods.items()):
            text = await self._call(
                self._core.read_namespaced_pod_log,
                pod["metadata"]["name"],
                namespace,
                container=CONTAINER,
                tail_lines=tail,
                ok=(400, 404),
            )
            if text:
                parts.append(text if len(pods) == 1 else f"==> index {index} <==\n{text}")
        return "".join(parts)

    async def purge(self, job_id: str) -> None:
        await self.delete(job_id)  # its pods and params ConfigMap go with it (owned by it)

    async def stopped(self, job_id: str) -> bool:
        """No pod of the job left that has not ended (a deleted Job's pods stay, terminating,
        until the kubelet has stopped their containers), as far as the pods watch of its
        namespace has listed them (before its first listing nothing is known: False)."""
        found = self._cached(job_id)
        watches = [self._pods[found[0]]] if found else list(self._pods.values())
        if not all(watch.synced.is_set() for watch in watches):
            return False
        _, pods = self._job_pods(job_id)
        return all(pod.get("status", {}).get("phase") in ENDED_PHASES for pod in pods)

    async def record_transition(self, job_id: str, status: JobStatus) -> None:
        """A Kubernetes Event on the Job, so `kubectl describe job` shows each transition:
        queued here, written in the background (best effort)."""
        self._transitions.offer((job_id, status))

    async def _write_event(self, transition: tuple[str, JobStatus]) -> None:
        job_id, status = transition
        found = await self._find(job_id) or self._deleted.pop(job_id, None)
        if found is None:
            return
        namespace, job = found
        event = build_event(job, status, now=utcnow(), reporting_instance=self._reporter)
        await self._call(post, self._api, EVENTS, namespace, event)

    def ref(
        self, job_id: str, *, tenant: str = DEFAULT_TENANT, namespace: str | None = None
    ) -> BackendRef:
        return BackendRef(
            backend="kubernetes",
            name=job_name(job_id),
            namespace=namespace or self.namespace_for(tenant),
        )

    def watches(self, namespace: str) -> bool:
        return namespace in self.namespaces

    def render(self, spec: TaskSpec) -> dict[str, JsonValue]:
        cluster = self._cluster_for(self.namespace_for(spec.tenant))
        rendered: dict[str, JsonValue] = {
            "backend": "kubernetes",
            "job": build_job(spec, cluster),
        }
        configmap = build_params_configmap(spec, cluster)
        if configmap is not None:
            rendered["configmap"] = configmap
        return rendered
