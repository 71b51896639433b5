"""The two long responses: a watch (newline-delimited JSON events, bookmarks, a timeout,
ended cleanly or cut abruptly) and a followed pod log. Both end when the client goes away or
the server stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from tests.kubeapi import tables
from tests.kubeapi.registry import Registry
from tests.kubeapi.resources import ResourceType
from tests.kubeapi.watch import WatchStream

Obj = dict[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class WatchOptions:
    timeout_s: float
    bookmarks: bool
    bookmark_interval_s: float
    as_table: bool = False
    include_object: str = "Metadata"


def _line(obj: Obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def _chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _wait_disconnect(receive: Receive, wake: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    wake.set()


def _as_table(rt: ResourceType, event: Obj, options: WatchOptions) -> Obj:
    if not options.as_table or event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
        return event
    row = tables.table(
        rt, [event["object"]], resource_version="", include_object=options.include_object
    )
    return {**event, "object": row}


async def stream_watch(
    send: Send,
    receive: Receive,
    stream: WatchStream,
    *,
    rt: ResourceType,
    options: WatchOptions,
    stopping: threading.Event,
) -> None:
    """Send the stream's events as they come, a bookmark when idle long enough (if asked),
    until the timeout, the stream's end, the client's leaving or the server's stopping. An
    aborted stream returns without the final chunk: the client sees the connection cut."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def wake_up() -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be closing
            loop.call_soon_threadsafe(wake.set)

    stream.set_wake(wake_up)
    disconnect = asyncio.create_task(_wait_disconnect(receive, wake))
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-cache, private"),
                ],
            }
        )
        start = loop.time()
        deadline, next_bookmark = start + options.timeout_s, start + options.bookmark_interval_s
        while True:
            wake.clear()
            events, rv, ended = stream.take()
            for event in events:
                await _chunk(send, _line(_as_table(rt, event, options)))
            if ended == "aborted":
                return
            now = loop.time()
            if ended or disconnect.done() or now >= deadline or stopping.is_set():
                break
            if options.bookmarks and now >= next_bookmark:
                mark = {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(rv)},
                }
                await _chunk(send, _line({"type": "BOOKMARK", "object": mark}))
                next_bookmark = now + options.bookmark_interval_s
            until = min(deadline, next_bookmark) if options.bookmarks else deadline
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(until - now, 0.001))
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        stream.set_wake(lambda: None)
        disconnect.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await disconnect


async def stream_log(
    send: Send,
    receive: Receive,
    registry: Registry,
    *,
    namespace: str,
    name: str,
    container: str,
    stopping: threading.Event,
) -> None:
    """Follow a container's log until the container ends (`follow=true`)."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    wake = asyncio.Event()
    disconnect = asyncio.create_task(_wait_disconnect(receive, wake))
    sent = 0
    try:
        while not disconnect.done() and not stopping.is_set():
            source = registry.log_source
            pod = registry.get_pod(namespace, name)
            finished = pod is None or source is None or source.log_complete(pod, container)
            text = registry.read_log(namespace, name, container=container) if pod else ""
            if len(text) > sent:
                await _chunk(send, text[sent:].encode())
                sent = len(text)
            if finished:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 0.05)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        disconnect.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await disconnect
