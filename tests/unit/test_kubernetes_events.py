"""The kubernetes backend writes each transition's Event off the hot path: recording a
transition makes no API call of its own, the Event follows in the background (in order),
and a slow API server never holds up the caller."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import RESTClientObject, RESTResponse

from kubetask.controller.backends import kubernetes
from kubetask.controller.backends.kubernetes import KubernetesBackend
from kubetask.controller.manifests import LABEL_JOB_ID, ClusterSettings
from kubetask.controller.records import JobStatus
from kubetask.models import JobState
from tests.unit.test_kubernetes_create import SPEC, Answer, FakeTransport

JOB = {
    "metadata": {
        "name": "kt-0000000000abcdef",
        "namespace": "default",
        "uid": "u",
        "resourceVersion": "5",
    }
}
EVENTS = "/api/v1/namespaces/default/events"


class SlowEvents(FakeTransport):
    """Answers Event creates only once `gate` is open, as an API server under load would."""

    def __init__(self, answers: list[Answer | Exception]) -> None:
        super().__init__(answers)
        self.gate = threading.Event()
        self.two_events = threading.Event()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> RESTResponse:
        if url.split("?", maxsplit=1)[0].endswith("/events"):
            self.gate.wait(10)
            body = cast(dict[str, Any], kwargs.get("body") or {})
            self.calls.append((method, f"{EVENTS}#{body.get('reason')}"))
            if sum(path.startswith(EVENTS) for _, path in self.calls) == 2:
                self.two_events.set()
            return RESTResponse(Answer(201, "Created", body))
        return super().request(method, url, *args, **kwargs)


async def _transitions() -> tuple[list[tuple[str, str]], list[tuple[str, str]], float]:
    api = k8s.ApiClient(k8s.Configuration(host="http://kube"))
    transport = SlowEvents([Answer(201, "Created", JOB)])
    api.rest_client = cast(RESTClientObject, transport)
    backend = KubernetesBackend(api=api, cluster=ClusterSettings(artifacts_claim=None))
    try:
        await backend.create(SPEC)
        started = time.monotonic()
        await backend.record_transition(SPEC.job_id, JobStatus(state=JobState.QUEUED))
        await backend.record_transition(
            SPEC.job_id, JobStatus(state=JobState.RUNNING, reason="Running")
        )
        took = time.monotonic() - started
        await asyncio.sleep(0.1)  # the worker is waiting on the API server
        before = list(transport.calls)
        transport.gate.set()
        await asyncio.to_thread(transport.two_events.wait, 10)
        return before, list(transport.calls), took
    finally:
        await backend.stop()


def test_a_transition_returns_at_once_and_its_event_follows() -> None:
    before, after, took = asyncio.run(_transitions())
    assert took < 0.05  # no API round trip on the caller's path
    assert before == [("POST", "/apis/batch/v1/namespaces/default/jobs")]  # one write per job
    assert after[1:] == [("POST", f"{EVENTS}#Queued"), ("POST", f"{EVENTS}#Running")]


class Forbidden(FakeTransport):
    """Refuses every request (403), as an API server does a namespace not granted to us."""

    def __init__(self) -> None:
        super().__init__([])

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> RESTResponse:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403}
        return RESTResponse(Answer(403, "Forbidden", body))


def test_watches_that_cannot_list_hold_up_the_start_once_not_once_each(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two namespaces it may not list (6 watches): the start waits for them all together,
    then serves, naming them; one at a time it kept the port shut 30 s per watch."""
    monkeypatch.setattr(kubernetes, "SYNC_WAIT_S", 0.5)
    api = k8s.ApiClient(k8s.Configuration(host="http://kube"))
    api.rest_client = cast(RESTClientObject, Forbidden())
    backend = KubernetesBackend(
        api=api, cluster=ClusterSettings(artifacts_claim=None), tenant_namespaces={"a": "locked"}
    )

    async def start() -> float:
        began = time.monotonic()
        try:
            await backend.start()
            return time.monotonic() - began
        finally:
            await backend.stop()

    took = asyncio.run(start())
    assert 0.5 <= took < 1.5
    (line,) = [r.getMessage() for r in caplog.records if "serving all the same" in r.getMessage()]
    assert line.endswith(
        "jobs/default, jobs/locked, pods/default, pods/locked, events/default, events/locked"
    )


def pod(name: str, phase: str, *, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "resourceVersion": "1",
        "labels": {LABEL_JOB_ID: SPEC.job_id},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase}}


def test_a_jobs_tasks_have_stopped_once_no_pod_of_it_runs_even_a_terminating_one() -> None:
    """A cancelled job's Job is deleted at once; its pods go on (terminating, SIGTERM) until
    the kubelet has stopped them: only then have its tasks stopped."""
    api = k8s.ApiClient(k8s.Configuration(host="http://kube"))
    backend = KubernetesBackend(api=api, cluster=ClusterSettings(artifacts_claim=None))
    pods = backend._pods["default"]  # the pods watch's cache, filled as its events would

    async def stopped() -> bool:
        return await backend.stopped(SPEC.job_id)

    assert not asyncio.run(stopped())  # not listed yet: nothing is known
    pods.synced.set()
    assert asyncio.run(stopped())  # listed: no pod at all
    pods.upsert(pod("a", "Failed"), notify=False)
    pods.upsert(pod("b", "Running", deleting=True), notify=False)
    assert not asyncio.run(stopped())
    ended = pod("b", "Succeeded", deleting=True)
    ended["metadata"]["resourceVersion"] = "2"
    pods.upsert(ended, notify=False)
    assert asyncio.run(stopped())
