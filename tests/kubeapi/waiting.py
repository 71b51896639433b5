"""Helpers for tests against the test server and the simulator: polling, and reading a watch
with the official client up to the server's first bookmark."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import watch as k8s_watch

T = TypeVar("T")


def wait_for(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout_s: float = 15.0,
    interval_s: float = 0.02,
    what: str = "the condition",
) -> T:
    """Call `fetch` until `done(value)`; return that value, or fail after `timeout_s`
    with the last value seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what}; last: {value!r}"
            )
        time.sleep(interval_s)


def watch_events(
    list_fn: Callable[..., Any],
    *args: Any,
    resource_version: str,
    deserialize: bool = True,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """The events `kubernetes.watch.Watch().stream(list_fn, ...)` yields after
    `resource_version`, up to the first BOOKMARK (by then every earlier change was sent).
    The server must send bookmarks (KubeApiServer(bookmark_interval_s=...))."""
    stream = k8s_watch.Watch()  # type: ignore[no-untyped-call]
    events: list[dict[str, Any]] = []
    for event in stream.stream(  # type: ignore[no-untyped-call]
        list_fn,
        *args,
        resource_version=resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=30,
        deserialize=deserialize,
        **kwargs,
    ):
        if event["type"] == "BOOKMARK":
            stream.stop()  # type: ignore[no-untyped-call]
        else:
            events.append(event)
    return events
