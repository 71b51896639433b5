"""The Python SDK, asynchronous: `AsyncClient` and `AsyncJobHandle` over `httpx.AsyncClient`.

The same calls, cursor and waiting rules as `kubetask.client` (from the sans-I/O modules);
only the I/O is awaited. A handle's `state`, `progress` and `result` are awaitable:

    async with AsyncClient() as client:
        job = await client.submit("noop", {"steps": 3})
        async for event in job.events():
            print(event)
        print(await job.result)
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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


class AsyncClient:
    """A kubetask server, for asyncio code; arguments as for `kubetask.Client`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = TIMEOUT_S,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = _calls.base_url(base_url)
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url, headers=_calls.auth_headers(token), timeout=timeout
        )

    # -- plumbing ----------------------------------------------------------------------
    async def _do(self, call: Call[T]) -> T:
        try:
            response = await self._live().request(
                call.method,
                call.path,
                params=call.params,
                json=call.body,
                headers=dict(call.headers),
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, _calls.unreachable_reason(exc)) from exc
        return _calls.answer(response, call.parse)

    async def _download(
        self, url: str, write: Callable[[bytes], object], on_progress: OnProgress | None
    ) -> int:
        """GET `url` and hand its body to `write` (run in a thread) chunk by chunk."""
        try:
            async with self._live().stream("GET", url) as response:
                if response.is_error or not _calls.is_file(response):
                    await response.aread()
                    raise _calls.refused(response)
                size = _calls.content_length(response)
                async for chunk in response.aiter_bytes(_files.CHUNK):
                    await asyncio.to_thread(write, chunk)
                    if on_progress is not None:
                        on_progress(response.num_bytes_downloaded, size)
                received = response.num_bytes_downloaded
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, _calls.unreachable_reason(exc)) from exc
        if (short := _calls.cut_short(size, received)) is not None:
            raise ServerUnreachable(self.base_url, short)
        return received

    async def _follow(self, cursor: EventCursor) -> AsyncIterator[JobEvent]:
        while not cursor.done:
            try:
                async with self._live().stream(
                    "GET", cursor.path, headers=cursor.connect(), timeout=_stream(cursor)
                ) as response:
                    if response.is_error:
                        await response.aread()
                        delay = cursor.refused(_calls.api_error(response))
                    elif response.status_code == NO_CONTENT:
                        cursor.ended_before()
                        return
                    elif not _calls.is_event_stream(response):  # a proxy's page, a redirect
                        await response.aread()
                        raise _calls.not_kubetask(response)
                    else:
                        cursor.opened()
                        async for line in response.aiter_lines():
                            event = cursor.feed(line)
                            if event is not None:
                                yield event
                            if cursor.done:
                                return
                        delay = cursor.lost("the server ended the stream early")
            except httpx.TransportError as exc:
                delay = cursor.lost(_calls.unreachable_reason(exc))
            await asyncio.sleep(delay)

    def _live(self) -> httpx.AsyncClient:
        """The HTTP client; `ClientClosed` once this client was closed."""
        if self._http.is_closed:
            raise ClientClosed
        return self._http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- jobs --------------------------------------------------------------------------
    async def submit(
        self,
        kind: str,
        params: Mapping[str, object] | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[JobOptions],
    ) -> AsyncJobHandle:
        """Submit a job; `options` are the other `JobRequest` fields (retries, labels...)."""
        body = _calls.request_body(kind, params, options)
        return await self.submit_request(body, idempotency_key=idempotency_key)

    async def submit_request(
        self, request: JobRequest | Mapping[str, object], *, idempotency_key: str | None = None
    ) -> AsyncJobHandle:
        """Submit a whole job request (a `JobRequest`, or its JSON as a mapping)."""
        body = _calls.request_json(request)
        view = await self._do(_calls.submit(body, idempotency_key=idempotency_key))
        return AsyncJobHandle(self, view.id)

    def job(self, job_id: str) -> AsyncJobHandle:
        """A handle on an existing job (no request made)."""
        return AsyncJobHandle(self, job_id)

    async def get(self, job_id: str) -> JobView:
        return await self._do(_calls.get(job_id))

    async def cancel(self, job_id: str) -> JobView:
        """Ask for the job to stop; `Conflict` if it has already finished."""
        return await self._do(_calls.cancel(job_id))

    async def logs(self, job_id: str, *, tail: int | None = None) -> str:
        return await self._do(_calls.logs(job_id, tail=tail))

    async def follow_logs(
        self, job_id: str, *, tail: int | None = None, poll_s: float = 1.0
    ) -> AsyncIterator[str]:
        """The log, then what is added to it, until the job has finished."""
        follower = LogFollower(tail=tail)
        while True:
            finished = (await self.get(job_id)).state.terminal
            chunk = follower.feed(await self.logs(job_id))
            if chunk:
                yield chunk
            if finished:
                return
            await asyncio.sleep(poll_s)

    async def kinds(self) -> builtins.list[KindInfo]:
        return await self._do(_calls.kinds())

    async def render(self, request: JobRequest | Mapping[str, object]) -> dict[str, JsonValue]:
        """A dry run: the validated request and what the backend would create."""
        return await self._do(_calls.dry_run(_calls.request_json(request)))

    async def list(
        self,
        *,
        state: JobState | str | None = None,
        kind: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
        page_size: int = _calls.PAGE_SIZE,
    ) -> AsyncIterator[JobView]:
        """Jobs, newest first, fetched page by page as the iterator is read."""
        pager = Pager(state=state, kind=kind, labels=labels, limit=limit, page_size=page_size)
        while (call := pager.next_call()) is not None:
            for view in pager.take(await self._do(call)):
                yield view

    # -- files -------------------------------------------------------------------------
    async def artifacts(self, job_id: str) -> builtins.list[Artifact]:
        """A job's files (paths relative to its folder, sorted); `NotFound` for no such job."""
        return await self._do(_calls.artifacts(job_id))

    async def download(
        self,
        job_id: str,
        path: str,
        to: PathArg | None = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Path:
        """Save one of a job's files, as `Client.download` does; the path written."""
        url = _calls.artifact_url(job_id, path)
        target = await asyncio.to_thread(_files.download_target, to, path)
        part = await asyncio.to_thread(_files.PartFile, target)
        whole = False
        try:
            await self._download(url, part.write, on_progress)
            whole = True
        finally:
            await asyncio.to_thread(part.finish, whole=whole)
        return target

    async def download_into(
        self, job_id: str, path: str, out: BinaryIO, *, on_progress: OnProgress | None = None
    ) -> int:
        """Write one of a job's files to an open binary stream; the bytes written."""
        return await self._download(_calls.artifact_url(job_id, path), out.write, on_progress)

    async def upload(
        self,
        local_path: PathArg,
        remote_path: str | None = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Upload:
        """Store a local file (streamed), as `Client.upload` does."""
        url = _calls.upload_url(_files.upload_name(local_path, remote_path))
        local = Path(local_path)
        size = (await asyncio.to_thread(local.stat)).st_size
        file = await asyncio.to_thread(local.open, "rb")
        try:
            response = await self._live().put(
                url, content=_read(file, size, on_progress), headers=_calls.upload_headers(size)
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, _calls.unreachable_reason(exc)) from exc
        finally:
            await asyncio.to_thread(file.close)
        return _calls.answer(response, _calls.uploaded)

    async def uploads(self, prefix: str | None = None) -> builtins.list[Artifact]:
        """The caller's uploads (paths relative to their area), only under `prefix` if given."""
        return await self._do(_calls.uploads(prefix))


class AsyncJobHandle:
    """One job, for asyncio code: `await job.state`, `async for e in job.events()`."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"AsyncJobHandle({self.id!r})"

    async def view(self) -> JobView:
        """Everything about the job, read now."""
        return await self.client.get(self.id)

    @property
    def state(self) -> Awaitable[JobState]:
        return self._field(lambda view: view.state)

    @property
    def progress(self) -> Awaitable[ProgressEvent | None]:
        """The latest progress event, if any."""
        return self._field(lambda view: view.progress)

    @property
    def result(self) -> Awaitable[dict[str, JsonValue] | None]:
        """The result once the job has succeeded, else None."""
        return self._field(lambda view: view.result)

    async def _field(self, pick: Callable[[JobView], T]) -> T:
        return pick(await self.view())

    def events(
        self,
        *,
        since: int = 0,
        timeout: float | None = None,
        on_reconnect: OnReconnect | None = None,
    ) -> AsyncIterator[JobEvent]:
        """Progress and state events after `since`, in seq order, ending with the terminal
        state; a dropped connection is resumed after the last seq seen."""
        deadline = None if timeout is None else Deadline.start(self.id, timeout)
        cursor = EventCursor(self.id, since=since, deadline=deadline, on_reconnect=on_reconnect)
        return self.client._follow(cursor)

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (as in the sync JobHandle.wait)
        *,
        raise_on_failure: bool = False,
        poll_s: float = 1.0,
    ) -> JobView:
        """The final view once the job has finished; errors as for `JobHandle.wait`."""
        waiter = Waiter(self.id, timeout, raise_on_failure=raise_on_failure, poll_s=poll_s)
        view = await self.view()
        if (done := waiter.settle(view)) is not None:
            return done
        with contextlib.suppress(StreamLost, ApiError):  # no stream: polling will do
            async for _ in self.client._follow(EventCursor(self.id, deadline=waiter.deadline)):
                pass
        while True:  # polling a remote server: there is no local event to wait on
            try:
                view = await self.view()
            except (ServerUnreachable, ApiError) as exc:  # away for a while: a restart
                await asyncio.sleep(waiter.unanswered(exc))
                continue
            if (done := waiter.settle(view)) is not None:
                return done
            await asyncio.sleep(waiter.poll_delay(view))

    async def get(self, timeout: float | None = None) -> dict[str, JsonValue]:  # noqa: ASYNC109
        """Wait and return the result; raise if the job failed or was cancelled."""
        return (await self.wait(timeout, raise_on_failure=True)).result or {}

    async def cancel(self) -> JobView:
        return await self.client.cancel(self.id)

    async def logs(self, *, tail: int | None = None) -> str:
        return await self.client.logs(self.id, tail=tail)

    async def artifacts(self) -> builtins.list[Artifact]:
        """The job's files (see `AsyncClient.artifacts`)."""
        return await self.client.artifacts(self.id)

    async def download(
        self, path: str, to: PathArg | None = None, *, on_progress: OnProgress | None = None
    ) -> Path:
        """Save one of the job's files (see `AsyncClient.download`)."""
        return await self.client.download(self.id, path, to, on_progress=on_progress)


async def _read(file: BinaryIO, total: int, on_progress: OnProgress | None) -> AsyncIterator[bytes]:
    """An open file, a chunk at a time, each read in a thread."""
    done = 0
    while chunk := await asyncio.to_thread(file.read, _files.CHUNK):
        done += len(chunk)
        _files.check_size(file, total, done, end=False)
        yield chunk
        if on_progress is not None:
            on_progress(done, total)
    _files.check_size(file, total, done, end=True)


def _stream(cursor: EventCursor) -> httpx.Timeout:
    return httpx.Timeout(TIMEOUT_S, read=cursor.read_timeout())
