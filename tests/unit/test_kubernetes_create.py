"""The kubernetes backend's create, and its informers' selectors, against a fake API client
that records each call and answers as a real kube-apiserver does: a create the API refuses
for good is CreateRejected with the API's own words; one it may accept later stays a
retryable BackendError."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.client import RemoteDisconnected
from typing import Any, cast

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import RESTClientObject, RESTResponse
from urllib3.exceptions import ProtocolError

from kubetask.controller.backends.base import BackendError, CreateRejected, TaskSpec
from kubetask.controller.backends.informer import Informer
from kubetask.controller.backends.k8s_read import event_job_id
from kubetask.controller.backends.kubernetes import (
    EVENTS,
    EVENTS_SELECTOR,
    JOBS,
    KubernetesBackend,
    post,
)
from kubetask.controller.manifests import ClusterSettings, build_event, build_job
from kubetask.controller.records import JobStatus
from kubetask.models import JobState

SPEC = TaskSpec(
    job_id="0000000000abcdef",
    kind="noop",
    image="kubetask/trainer:1.0",
    command=("python", "-m", "kubetask.jobs", "noop"),
    env={},
    retries=0,
    timeout_s=None,
)


class Answer:
    """One HTTP answer, as urllib3 hands it to the client."""

    def __init__(self, status: int, reason: str, obj: dict[str, Any]) -> None:
        self.status = status
        self.reason = reason
        self.data = json.dumps(obj).encode()
        self.headers: dict[str, str] = {"Content-Type": "application/json"}


def status_error(code: int, reason: str, message: str) -> Answer:
    """An error answer: a Status object, as kube-apiserver sends it."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return Answer(code, reason, body)


class FakeTransport:
    """Takes the place of the client's HTTP layer: notes each request and answers with the
    next of `answers` (raised if an exception)."""

    def __init__(self, answers: list[Answer | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> RESTResponse:
        self.calls.append((method, url.split("?", maxsplit=1)[0].removeprefix("http://kube")))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return RESTResponse(answer)

    def close(self) -> None:
        return None


async def _create(answers: list[Answer | Exception]) -> tuple[FakeTransport, Exception | None]:
    api = k8s.ApiClient(k8s.Configuration(host="http://kube"))
    transport = FakeTransport(answers)
    api.rest_client = cast(RESTClientObject, transport)
    backend = KubernetesBackend(api=api, cluster=ClusterSettings(artifacts_claim=None))
    try:
        await backend.create(SPEC)
    except BackendError as exc:
        return transport, exc
    finally:
        await backend.stop()
    return transport, None


POD_SECURITY = (
    'jobs.batch "kt-0000000000abcdef" is forbidden: violates PodSecurity "restricted:latest"'
)


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (400, "BadRequest", "the server rejected our request for an unknown reason"),
        (403, "Forbidden", POD_SECURITY),
        (404, "NotFound", 'namespaces "ml" not found'),
        (
            422,
            "Invalid",
            'Job.batch "kt-0000000000abcdef" is invalid: metadata.annotations: Too long',
        ),
    ],
)
def test_a_create_refused_for_good_is_create_rejected_with_the_apis_message(
    code: int, reason: str, message: str
) -> None:
    api, error = asyncio.run(_create([status_error(code, reason, message)]))
    assert isinstance(error, CreateRejected)
    assert str(error) == message
    assert api.calls == [("POST", "/apis/batch/v1/namespaces/default/jobs")]


@pytest.mark.parametrize(
    ("code", "reason"), [(429, "TooManyRequests"), (500, "InternalError"), (503, "Unavailable")]
)
def test_a_create_that_may_work_later_stays_retryable(code: int, reason: str) -> None:
    _, error = asyncio.run(_create([status_error(code, reason, "try again")]))
    assert isinstance(error, BackendError)
    assert not isinstance(error, CreateRejected)


def test_a_create_that_cannot_reach_the_api_stays_retryable() -> None:
    _, error = asyncio.run(_create([ConnectionRefusedError("connection refused")]))
    assert isinstance(error, BackendError)
    assert not isinstance(error, CreateRejected)


CUT_OFF = ProtocolError(
    "Connection aborted.", RemoteDisconnected("Remote end closed connection without response")
)


def test_a_create_cut_off_before_its_answer_stays_retryable() -> None:
    """urllib3 does not retry a POST whose connection drops before the answer, and raises
    its own ProtocolError (no OSError): still a passing fault, never a failed job."""
    _, error = asyncio.run(_create([CUT_OFF]))
    assert isinstance(error, BackendError)
    assert not isinstance(error, CreateRejected)


def test_a_read_cut_off_after_the_create_found_the_job_existing_stays_retryable() -> None:
    exists = status_error(409, "AlreadyExists", "already exists")
    api, error = asyncio.run(_create([exists, CUT_OFF]))
    assert isinstance(error, BackendError)
    assert len(api.calls) == 2


def test_a_job_that_exists_already_is_created() -> None:
    job = {"metadata": {"name": "kt-0000000000abcdef", "uid": "u", "resourceVersion": "5"}}
    exists = status_error(409, "AlreadyExists", "already exists")
    api, error = asyncio.run(_create([exists, Answer(200, "OK", job)]))
    assert error is None
    assert api.calls == [
        ("POST", "/apis/batch/v1/namespaces/default/jobs"),
        ("GET", "/apis/batch/v1/namespaces/default/jobs/kt-0000000000abcdef"),
    ]


def test_a_created_job_is_cached_without_waking_the_reconciler_again() -> None:
    """The sync that creates a Job observes it next, from the cache: no GET, and no change
    notice that would sync the job once more for nothing."""

    async def scenario() -> tuple[FakeTransport, bool, int]:
        job = {"metadata": {"name": "kt-0000000000abcdef", "uid": "u", "resourceVersion": "5"}}
        api = k8s.ApiClient(k8s.Configuration(host="http://kube"))
        transport = FakeTransport([Answer(201, "Created", job)])
        api.rest_client = cast(RESTClientObject, transport)
        backend = KubernetesBackend(api=api, cluster=ClusterSettings(artifacts_claim=None))
        backend._loop = asyncio.get_running_loop()  # as start() sets it, without watches
        try:
            await backend.create(SPEC)
            await asyncio.sleep(0)  # a notice would be queued by now
            observed = await backend.observe(SPEC.job_id)
        finally:
            await backend.stop()
        return transport, observed is not None, backend.changes.qsize()

    transport, observed, notices = asyncio.run(scenario())
    assert observed
    assert transport.calls == [("POST", "/apis/batch/v1/namespaces/default/jobs")]
    assert notices == 0


class Sent:
    """Takes the place of the client's HTTP layer: keeps what each request sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []

    def request(
        self, method: str, url: str, headers: dict[str, str], body: Any, **kwargs: Any
    ) -> RESTResponse:
        self.requests.append((method, url, headers, body))
        return RESTResponse(Answer(201, "Created", {"metadata": {"name": "kt-0000000000abcdef"}}))


def _job_and_event() -> tuple[dict[str, Any], dict[str, Any]]:
    job = build_job(SPEC, ClusterSettings(namespace="ml", artifacts_claim=None))
    job["metadata"]["uid"] = "u1"
    status = JobStatus(state=JobState.QUEUED, reason="Suspended", message="waiting")
    return job, build_event(job, status, now=datetime.now(UTC), reporting_instance="api-0")


def _times_parsed(body: dict[str, Any]) -> dict[str, Any]:
    times = ("firstTimestamp", "lastTimestamp")
    return {k: datetime.fromisoformat(v) if k in times else v for k, v in body.items()}


@pytest.mark.parametrize(
    ("collection", "generated", "which"),
    [
        (JOBS, lambda api: k8s.BatchV1Api(api).create_namespaced_job, 0),
        (EVENTS, lambda api: k8s.CoreV1Api(api).create_namespaced_event, 1),
    ],
    ids=["job", "event"],
)
def test_post_sends_what_the_generated_method_sends(
    collection: str, generated: Callable[[k8s.ApiClient], Any], which: int
) -> None:
    """A create skips the generated method's model round trip, not its request: the same
    method, URL, headers (the token included) and body (an Event's times as the API server
    writes them, `Z`; the model writes `+00:00`)."""
    api = k8s.ApiClient(
        k8s.Configuration(host="http://kube", api_key={"BearerToken": "Bearer t0ken"})
    )
    sent = Sent()
    api.rest_client = cast(RESTClientObject, sent)
    manifest = _job_and_event()[which]
    generated(api)("ml", manifest, _preload_content=False)  # typed for its model
    answer = post(api, collection, "ml", manifest)
    generated_request, ours = sent.requests
    assert ours[:3] == generated_request[:3]
    assert ours[3] == manifest
    assert _times_parsed(ours[3]) == _times_parsed(generated_request[3])
    assert ours[2]["authorization"] == "Bearer t0ken"
    assert answer == {"metadata": {"name": "kt-0000000000abcdef"}}


# --- the events informer ----------------------------------------------------------------------


def failed_create(name: str, kind: str = "Job") -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}.18a2b3c4d5e6f708", "resourceVersion": "7"},
        "involvedObject": {"kind": kind, "name": name, "uid": "u"},
        "reason": "FailedCreate",
        "message": "Error creating: pods is forbidden",
    }


class Stream:
    """A watch that sends nothing and ends when closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def stream(self, amt: Any = None, decode_content: Any = None) -> Any:
        self.closed.wait(5)
        return iter(())

    def close(self) -> None:
        self.closed.set()

    def release_conn(self) -> None:
        return None


def test_the_events_informer_selects_by_field_and_indexes_by_job_id() -> None:
    calls: list[dict[str, Any]] = []
    changed: list[str | None] = []
    events = [failed_create("kt-0000000000abcdef"), failed_create("kt-other", kind="Pod")]

    def list_events(namespace: str, **kw: Any) -> Any:
        calls.append(kw)
        if kw.get("watch"):
            return Stream()
        return Answer(200, "OK", {"metadata": {"resourceVersion": "9"}, "items": events})

    informer = Informer(
        name="events/ml",
        list_fn=list_events,
        namespace="ml",
        field_selector=EVENTS_SELECTOR,
        on_change=lambda event: changed.append(event_job_id(event)),
        index_key=event_job_id,
    )
    informer.start()
    assert informer.synced.wait(5)
    informer.stop()
    assert EVENTS_SELECTOR == "involvedObject.kind=Job,reason=FailedCreate"
    assert all(call["field_selector"] == EVENTS_SELECTOR for call in calls)
    assert all("label_selector" not in call for call in calls)
    assert informer.indexed("0000000000abcdef") == [events[0]]
    assert sorted(changed, key=str) == ["0000000000abcdef", None]
