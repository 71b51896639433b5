"""The Python SDK (sync and async) against the real API process: submit, wait, events and
their resumption after a dropped connection, cancel, errors as types, paging."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from kubetask import (
    AsyncClient,
    Client,
    ClientClosed,
    Conflict,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobState,
    NotFound,
    ProgressEvent,
    ServerUnreachable,
    StateEvent,
)
from kubetask.controller.redis_server import free_port
from kubetask.errors import WaitTimeout
from tests.component.flaky_proxy import FlakyProxy
from tests.servers import ApiServer


def _label() -> dict[str, str]:
    return {"test": uuid.uuid4().hex[:12]}


@pytest.fixture
def client(api: ApiServer) -> Iterator[Client]:
    with Client(api.base_url) as client:
        yield client


@pytest.fixture
def proxy(api: ApiServer) -> Iterator[FlakyProxy]:
    with FlakyProxy(api.port) as proxy:
        yield proxy


def test_submit_wait_and_result(client: Client) -> None:
    params = {"steps": 3, "fail": "exception", "fail_attempts": 1}  # the retry succeeds
    job = client.submit("noop", params, name="sdk-ok", labels=_label(), retries=1)
    view = job.wait(timeout=30, raise_on_failure=True)
    assert view.state is JobState.SUCCEEDED
    assert (view.name, view.request.retries, view.attempts) == ("sdk-ok", 1, 2)
    assert job.state is JobState.SUCCEEDED
    assert job.result == {"steps": 3, "attempt": 2, "payload_chars": 0}
    assert job.get() == job.result
    assert job.progress is not None
    assert job.progress.current == 3


def test_failure_is_raised_when_asked_with_the_error(client: Client) -> None:
    job = client.submit("noop", {"fail": "exception", "fail_message": "boom"})
    assert job.wait(timeout=30).state is JobState.FAILED  # not raised unless asked
    with pytest.raises(JobFailed, match="RuntimeError: boom") as caught:
        job.wait(raise_on_failure=True)
    assert caught.value.view.error is not None
    assert job.result is None


def test_events_come_in_order_and_end_with_the_terminal_state(client: Client) -> None:
    job = client.submit("noop", {"steps": 4, "step_s": 0.02})
    events = list(job.events(timeout=30))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert isinstance(events[0], StateEvent)
    assert events[0].state is JobState.QUEUED
    assert isinstance(events[-1], StateEvent)
    assert events[-1].state is JobState.SUCCEEDED
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert progress[-1].current == 4
    assert list(job.events(since=events[2].seq)) == events[3:]
    started = time.monotonic()
    assert list(job.events(since=events[-1].seq)) == []  # at the end: over at once (204)
    assert time.monotonic() - started < 1


def test_events_resume_after_a_dropped_connection(api: ApiServer, proxy: FlakyProxy) -> None:
    reconnects: list[tuple[int, str]] = []
    with Client(proxy.base_url) as client:
        job = client.submit("noop", {"steps": 10, "step_s": 0.1})
        stream = job.events(timeout=30, on_reconnect=lambda seq, why: reconnects.append((seq, why)))
        seen = [next(stream) for _ in range(4)]  # queued, pending, running, a first step
        proxy.drop()  # the network breaks mid-stream
        seen.extend(stream)
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1)), "a repeat or a hole"
    assert isinstance(seen[-1], StateEvent)
    assert seen[-1].state is JobState.SUCCEEDED
    assert len(reconnects) == 1
    resumed = [r for r in proxy.requests if "last-event-id" in r.headers]
    assert [r.headers["last-event-id"] for r in resumed] == [str(reconnects[0][0])]
    assert reconnects[0][0] >= 4
    with Client(api.base_url) as direct:
        assert seen == list(direct.job(job.id).events())  # the same as read in one go


def test_wait_polls_when_no_event_stream_gets_through(proxy: FlakyProxy) -> None:
    proxy.reject = "/events"
    with Client(proxy.base_url) as client:
        job = client.submit("noop", {"steps": 2, "step_s": 0.05})
        assert job.wait(timeout=30, poll_s=0.1).state is JobState.SUCCEEDED
    assert any(r.path.endswith("/events") for r in proxy.requests)


def test_wait_times_out_as_a_timeout_error(client: Client) -> None:
    job = client.submit("noop", {"steps": 100, "step_s": 0.1})
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        job.wait(timeout=0.5)
    assert time.monotonic() - started < 5
    assert isinstance(caught.value, WaitTimeout)
    job.cancel()


def test_cancel_ends_the_job_cancelled(client: Client) -> None:
    job = client.submit("noop", {"steps": 100, "step_s": 0.1})
    for event in job.events(timeout=30):
        if isinstance(event, ProgressEvent):
            break
    assert job.cancel().cancel_requested
    with pytest.raises(JobCancelled):
        job.wait(timeout=30, raise_on_failure=True)
    with pytest.raises(Conflict, match="409"):
        job.cancel()


def test_api_errors_are_typed_with_field_paths(client: Client) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.submit("datagen", {"n_per_class": 0})
    assert caught.value.status == 422
    assert [e.field for e in caught.value.errors] == ["params.n_per_class"]
    assert str(caught.value).startswith("422 params.n_per_class: ")
    with pytest.raises(InvalidRequest) as unknown:
        client.submit_request({"kind": "noop", "colour": "red"})
    assert "colour" in [e.field for e in unknown.value.errors]
    with pytest.raises(NotFound):
        client.get("0000000000000000")
    with pytest.raises(NotFound):
        list(client.job("0000000000000000").events())
    key = uuid.uuid4().hex
    first = client.submit("noop", idempotency_key=key)
    assert client.submit("noop", idempotency_key=key).id == first.id
    with pytest.raises(Conflict):
        client.submit("noop", {"steps": 1}, idempotency_key=key)


def test_an_unreachable_server_is_one_clear_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(ServerUnreachable):
        client.kinds()


def test_list_follows_the_cursor_page_by_page(api: ApiServer) -> None:
    labels = _label()
    with Client(api.base_url) as client:
        ids = [client.submit("noop", labels=labels).id for _ in range(5)]
    pages: list[httpx.Request] = []
    http = httpx.Client(base_url=api.base_url, event_hooks={"request": [pages.append]})
    with Client(api.base_url, http=http) as client:
        listed = [view.id for view in client.list(labels=labels, page_size=2)]
        assert listed == ids[::-1]  # newest first
        assert len(pages) == 3
        assert [v.id for v in client.list(labels=labels, limit=3, page_size=2)] == ids[:1:-1]
        assert all(v.kind == "noop" for v in client.list(kind="noop", labels=labels))


def test_kinds_logs_render_and_settings_from_the_environment(
    api: ApiServer, proxy: FlakyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETASK_URL", proxy.base_url)
    monkeypatch.setenv("KUBETASK_TOKEN", "s3cret")
    with Client() as client:
        assert "noop" in {k.kind for k in client.kinds()}
        rendered = client.render({"kind": "datagen", "params": {"n_per_class": 5}})
        job = client.submit("noop", {"fail": "exit", "fail_message": "to stderr"})
        job.wait(timeout=30)
        assert "to stderr" in job.logs()
        assert job.logs(tail=1).count("\n") <= 1
        assert "".join(client.follow_logs(job.id)) == job.logs()
    request = rendered["request"]
    assert isinstance(request, dict)
    params = request["params"]
    assert isinstance(params, dict)
    assert params["n_per_class"] == 5
    assert "object" in rendered
    assert {r.headers.get("authorization") for r in proxy.requests} == {"Bearer s3cret"}


# -- async: the same core, awaited -------------------------------------------------------------


def test_async_submit_events_wait_and_result(api: ApiServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.base_url) as client:
            job = await client.submit("noop", {"steps": 3}, labels=_label())
            events = [event async for event in job.events(timeout=30)]
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert isinstance(events[-1], StateEvent)
            assert [event async for event in job.events(since=events[-1].seq)] == []
            view = await job.wait(timeout=30, raise_on_failure=True)
            assert view.state is JobState.SUCCEEDED
            assert await job.state is JobState.SUCCEEDED
            assert (await job.result) == {"steps": 3, "attempt": 1, "payload_chars": 0}
            progress = await job.progress
            assert progress is not None
            assert progress.current == 3
            assert [v.id async for v in client.list(labels=view.labels)] == [job.id]
            assert "noop" in {k.kind for k in await client.kinds()}

    asyncio.run(scenario())


def test_async_resume_cancel_and_errors(api: ApiServer, proxy: FlakyProxy) -> None:
    async def scenario() -> None:
        async with AsyncClient(proxy.base_url) as client:
            job = await client.submit("noop", {"steps": 100, "step_s": 0.05})
            stream = job.events(timeout=30)
            seen = [await anext(stream) for _ in range(4)]
            proxy.drop()
            seen.append(await anext(stream))
            await job.cancel()
            seen.extend([event async for event in stream])
            assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
            assert isinstance(seen[-1], StateEvent)
            assert seen[-1].state is JobState.CANCELLED
            with pytest.raises(JobCancelled):
                await job.get(timeout=30)
            with pytest.raises(InvalidRequest) as caught:
                await client.submit("datagen", {"n_per_class": 0})
            assert caught.value.errors[0].field == "params.n_per_class"
            with pytest.raises(NotFound):
                await client.get("0000000000000000")
            with pytest.raises(JobFailed):
                await (await client.submit("noop", {"fail": "memory"})).get(timeout=30)

    asyncio.run(scenario())
    assert any("last-event-id" in r.headers for r in proxy.requests)


def test_wait_and_events_ride_through_a_restart_of_the_server(fresh_api: ApiServer) -> None:
    """The server away for 8 s (more than the reconnect back-off's first five tries, which
    gave up before): both carry on and end with the job's terminal state."""
    with Client(fresh_api.base_url) as client:
        job = client.submit("noop", {"steps": 40, "step_s": 0.3})
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            waited = pool.submit(job.wait, 120)
            followed = pool.submit(lambda: list(job.events(timeout=120)))
            while job.progress is None:  # running, both following
                time.sleep(0.1)
            fresh_api.stop()
            time.sleep(8)
            fresh_api.start()
            assert waited.result().state is JobState.SUCCEEDED
            seen = followed.result()
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1)), "a repeat or a hole"
    assert isinstance(seen[-1], StateEvent)
    assert seen[-1].state is JobState.SUCCEEDED


def test_a_closed_client_says_so_in_its_own_error(api: ApiServer) -> None:
    with Client(api.base_url) as client:
        job = client.submit("noop")
    for call in (lambda: client.get(job.id), lambda: list(job.events()), job.wait):
        with pytest.raises(ClientClosed, match="client is closed"):
            call()

    async def scenario() -> None:
        async with AsyncClient(api.base_url) as aclient:
            pass
        with pytest.raises(ClientClosed):
            await aclient.get(job.id)

    asyncio.run(scenario())
