"""The Python SDK, synchronous: `Client` and `JobHandle`, a thin shell over `httpx.Client`.

What to send, how to read answers, when to reconnect and when to stop live in the sans-I/O
modules (`_calls`, `_sse`, `_wait`) shared with the async flavour in `kubetask.aio`.

    from kubetask import Client
    job = Client().submit("datagen", {"n_per_class": 50})
    for event in job.events():
        print(event)
    print(job.wait(raise_on_failure=True).result)
"""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar, Unpack

import httpx
from pydantic import JsonValue

from kubetask import _calls, _files
from kubetask._calls import Call, JobOptions, LogFollower, Pager
from kubetask._files import OnProgress, PathArg
from kubetask._sse import NO_CONTENT, EventCursor, JobEvent, OnReconnect
from kubetask._wait import Deadline, Waiter
from kubetask.errors import ApiError, ClientClosed, ServerUnreachable, StreamLost
from kubetask.models import (
    Artifact,
    JobRequest,
    JobState,
    JobView,
    KindInfo,
    ProgressEvent,
    Upload,
)

T = TypeVar("T")
TIMEOUT_S = 30.0


class Client:
    """A kubetask server. `base_url`: else `KUBETASK_URL`, else http://127.0.0.1:8000;
    `token`: else `KUBETASK_TOKEN`, sent as a bearer token when set."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = TIMEOUT_S,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = _calls.base_url(base_url)
        self._http = http or httpx.Client(
            base_url=self.base_url, headers=_calls.auth_headers(token), timeout=timeout
        )

    # -- plumbing ----------------------------------------------------------------------
    def _do(self, call: Call[T]) -> T:
        try:
            response = self._live().request(
                call.method,
                call.path,
                params=call.params,
                json=call.body,
                headers=dict(call.headers),
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, _calls.unreachable_reason(exc)) from exc
        return _calls.answer(response, call.parse)

    def _download(
        self, url: str, write: Callable[[bytes], object], on_progress: OnProgress | None
    ) -> int:
        """GET `url` and hand its body to `write` chunk by chunk; the bytes received."""
        try:
            with self._live().stream("GET", url) as response:
                if response.is_error or not _calls.is_file(response):
                    response.read()
                    raise _calls.refused(response)
                size = _calls.content_length(response)
                for chunk in response.iter_bytes(_files.CHUNK):
                    write(chunk)
                    if on_progress is not None:
                        on_progress(response.num_bytes_downloaded, size)
                received = response.num_bytes_downloaded
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, _calls.unreachable_reason(exc)) from exc
        if (short := _calls.cut_short(size, received)) is not None:
            raise ServerUnreachable(self.base_url, short)
        return received

    def _follow(self, cursor: EventCursor) -> Iterator[JobEvent]:
        while not cursor.done:
            try:
                with self._live().stream(
                    "GET", cursor.path, headers=cursor.connect(), timeout=_stream(cursor)
                ) as response:
                    if response.is_error:
                        response.read()
                        delay = cursor.refused(_calls.api_error(response))
                    elif response.status_code == NO_CONTENT:
                        cursor.ended_before()
                        return
                    elif not _calls.is_event_stream(response):  # a proxy's page, a redirect
                        response.read()
                        raise _calls.not_kubetask(response)
                    else:
                        cursor.opened()
                        for line in response.iter_lines():
                            event = cursor.feed(line)
                            if event is not None:
                                yield event
                            if cursor.done:
                                return
                        delay = cursor.lost("the server ended the stream early")
            except httpx.TransportError as exc:
                delay = cursor.lost(_calls.unreachable_reason(exc))
            time.sleep(delay)

    def _live(self) -> httpx.Client:
        """The HTTP client; `ClientClosed` once this client was closed."""
        if self._http.is_closed:
            raise ClientClosed
        return self._http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- jobs --------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        params: Mapping[str, object] | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[JobOptions],
    ) -> JobHandle:
        """Submit a job; `options` are the other `JobRequest` fields (retries, labels...)."""
        body = _calls.request_body(kind, params, options)
        return self.submit_request(body, idempotency_key=idempotency_key)

    def submit_request(
        self, request: JobRequest | Mapping[str, object], *, idempotency_key: str | None = None
    ) -> JobHandle:
        """Submit a whole job request (a `JobRequest`, or its JSON as a mapping)."""
        body = _calls.request_json(request)
        view = self._do(_calls.submit(body, idempotency_key=idempotency_key))
        return JobHandle(self, view.id)

    def job(self, job_id: str) -> JobHandle:
        """A handle on an existing job (no request made)."""
        return JobHandle(self, job_id)

    def get(self, job_id: str) -> JobView:
        return self._do(_calls.get(job_id))

    def cancel(self, job_id: str) -> JobView:
        """Ask for the job to stop; `Conflict` if it has already finished."""
        return self._do(_calls.cancel(job_id))

    def logs(self, job_id: str, *, tail: int | None = None) -> str:
        return self._do(_calls.logs(job_id, tail=tail))

    def follow_logs(
        self, job_id: str, *, tail: int | None = None, poll_s: float = 1.0
    ) -> Iterator[str]:
        """The log, then what is added to it, until the job has finished."""
        follower = LogFollower(tail=tail)
        while True:
            finished = self.get(job_id).state.terminal
            chunk = follower.feed(self.logs(job_id))
            if chunk:
                yield chunk
            if finished:
                return
            time.sleep(poll_s)

    def kinds(self) -> builtins.list[KindInfo]:
        return self._do(_calls.kinds())

    def render(self, request: JobRequest | Mapping[str, object]) -> dict[str, JsonValue]:
        """A dry run: the validated request and what the backend would create."""
        return self._do(_calls.dry_run(_calls.request_json(request)))

    def list(
        self,
        *,
        state: JobState | str | None = None,
        kind: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
        page_size: int = _calls.PAGE_SIZE,
    ) -> Iterator[JobView]:
        """Jobs, newest first, fetched page by page as the iterator is read."""
        pager = Pager(state=state, kind=kind, labels=labels, limit=limit, page_size=page_size)
        while (call := pager.next_call()) is not None:
            yield from pager.take(self._do(call))

    # -- files -------------------------------------------------------------------------
    def artifacts(self, job_id: str) -> builtins.list[Artifact]:
        """A job's files (paths relative to its folder, sorted); `NotFound` for no such job."""
        return self._do(_calls.artifacts(job_id))

    def download(
        self,
        job_id: str,
        path: str,
        to: PathArg | None = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Path:
        """Save one of a job's files to `to` (a file, or a folder to put it in; default: its
        name in the current folder), streamed to a temporary name then renamed; the path
        written. `on_progress(bytes so far, size)` after each chunk."""
        url = _calls.artifact_url(job_id, path)
        target = _files.download_target(to, path)
        with _files.PartFile(target) as part:
            self._download(url, part.write, on_progress)
        return target

    def download_into(
        self, job_id: str, path: str, out: BinaryIO, *, on_progress: OnProgress | None = None
    ) -> int:
        """Write one of a job's files to an open binary stream; the bytes written."""
        return self._download(_calls.artifact_url(job_id, path), out.write, on_progress)

    def upload(
        self,
        local_path: PathArg,
        remote_path: str | None = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Upload:
        """Store a local file (streamed) as the caller's upload `remote_path` (default: its
        name), replacing one already there. `.path` is where it is stored, `.ref` how a job's
        params name it (`upload:<path>`). `RequestTooLarge` when over the server's limit.
        `on_progress(bytes so far, size)` after each chunk read."""
        url = _calls.upload_url(_files.upload_name(local_path, remote_path))
        local = Path(local_path)
        size = local.stat().st_size
        try:
            with local.open("rb") as file:
                body = _files.chunks(file, total=size, on_progress=on_progress)
                response = self._live().put(url, content=body, headers=_calls.upload_headers(size))
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, _calls.unreachable_reason(exc)) from exc
        return _calls.answer(response, _calls.uploaded)

    def uploads(self, prefix: str | None = None) -> builtins.list[Artifact]:
        """The caller's uploads (paths relative to their area), only under `prefix` if given."""
        return self._do(_calls.uploads(prefix))


class JobHandle:
    """One job: its id, and live ways to read it, wait for it and stop it."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def view(self) -> JobView:
        """Everything about the job, read now."""
        return self.client.get(self.id)

    @property
    def state(self) -> JobState:
        return self.view().state

    @property
    def progress(self) -> ProgressEvent | None:
        """The latest progress event, if any."""
        return self.view().progress

    @property
    def result(self) -> dict[str, JsonValue] | None:
        """The result once the job has succeeded, else None."""
        return self.view().result

    def events(
        self,
        *,
        since: int = 0,
        timeout: float | None = None,
        on_reconnect: OnReconnect | None = None,
    ) -> Iterator[JobEvent]:
        """Progress and state events after `since`, in seq order, ending with the terminal
        state; a dropped connection is resumed after the last seq seen."""
        deadline = None if timeout is None else Deadline.start(self.id, timeout)
        cursor = EventCursor(self.id, since=since, deadline=deadline, on_reconnect=on_reconnect)
        return self.client._follow(cursor)

    def wait(
        self, timeout: float | None = None, *, raise_on_failure: bool = False, poll_s: float = 1.0
    ) -> JobView:
        """The final view once the job has finished. `WaitTimeout` (a `TimeoutError`) after
        `timeout` seconds; with `raise_on_failure`, `JobFailed` or `JobCancelled`."""
        waiter = Waiter(self.id, timeout, raise_on_failure=raise_on_failure, poll_s=poll_s)
        view = self.view()
        if (done := waiter.settle(view)) is not None:
            return done
        with contextlib.suppress(StreamLost, ApiError):  # no stream: polling will do
            for _ in self.client._follow(EventCursor(self.id, deadline=waiter.deadline)):
                pass
        while True:
            try:
                view = self.view()
            except (ServerUnreachable, ApiError) as exc:  # away for a while: a restart
                time.sleep(waiter.unanswered(exc))
                continue
            if (done := waiter.settle(view)) is not None:
                return done
            time.sleep(waiter.poll_delay(view))

    def get(self, timeout: float | None = None) -> dict[str, JsonValue]:
        """Wait and return the result; raise if the job failed or was cancelled."""
        return self.wait(timeout, raise_on_failure=True).result or {}

    def cancel(self) -> JobView:
        return self.client.cancel(self.id)

    def logs(self, *, tail: int | None = None) -> str:
        return self.client.logs(self.id, tail=tail)

    def artifacts(self) -> builtins.list[Artifact]:
        """The job's files (see `Client.artifacts`)."""
        return self.client.artifacts(self.id)

    def download(
        self, path: str, to: PathArg | None = None, *, on_progress: OnProgress | None = None
    ) -> Path:
        """Save one of the job's files (see `Client.download`)."""
        return self.client.download(self.id, path, to, on_progress=on_progress)


def _stream(cursor: EventCursor) -> httpx.Timeout:
    return httpx.Timeout(TIMEOUT_S, read=cursor.read_timeout())
