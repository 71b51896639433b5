"""One watch: a store watcher that keeps the changes one client asked for (kind, namespace,
label and field selectors), turned into watch events of the client's API version, queued
until the HTTP stream takes them.

As the real watch cache does, a MODIFIED change that makes an object start matching the
selectors is sent as ADDED, and one that makes it stop matching as DELETED."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from tests.kubeapi.selectors import FieldSelector, LabelSelector
from tests.kubeapi.storage import Change

Obj = dict[str, Any]


class WatchStream:
    """Thread-safe: `notify` runs under the store lock, `take` in the HTTP server's loop."""

    def __init__(
        self,
        *,
        store_key: str,
        namespace: str,
        labels: LabelSelector,
        fields: FieldSelector,
        encode: Callable[[Obj], Obj],
        start_rv: int,
    ) -> None:
        self.store_key = store_key
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.encode = encode
        self._lock = threading.Lock()
        self._events: deque[Obj] = deque()
        self._seen_rv = start_rv
        self._ended: str | None = None  # "closed" or "aborted"
        self._wake: Callable[[], None] = lambda: None

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Called (from any thread) whenever there is something to take."""
        self._wake = wake

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def event_for(self, change: Change) -> Obj | None:
        """The event this watch sends for a change, if any."""
        if change.store_key != self.store_key:
            return None
        if change.type == "DELETED":
            return self._event("DELETED", change.obj) if self.matches(change.obj) else None
        was, now = self.matches(change.old), self.matches(change.obj)
        if was and now:
            return self._event("MODIFIED", change.obj)
        if now:
            return self._event("ADDED", change.obj)
        if was:
            return self._event("DELETED", change.obj)
        return None

    def _event(self, kind: str, obj: Obj) -> Obj:
        return {"type": kind, "object": self.encode(obj)}

    def push(self, event: Obj, rv: int | None = None) -> None:
        with self._lock:
            if self._ended:
                return
            self._events.append(event)
            if rv is not None:
                self._seen_rv = max(self._seen_rv, rv)
        self._wake()

    def notify(self, change: Change) -> None:
        event = self.event_for(change)
        with self._lock:
            if self._ended:
                return
            if event is not None:
                self._events.append(event)
            self._seen_rv = change.rv
        if event is not None:
            self._wake()

    def take(self) -> tuple[list[Obj], int, str | None]:
        """The queued events, the version every change up to which has been queued, and
        whether the stream was ended (after these events)."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            return events, self._seen_rv, self._ended

    def end(self, *, abort: bool = False) -> None:
        with self._lock:
            if not self._ended:
                self._ended = "aborted" if abort else "closed"
        self._wake()
