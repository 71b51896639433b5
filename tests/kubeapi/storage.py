"""The object store: what etcd plus the watch cache are to a real API server.

One global, increasing resourceVersion; every write gets the next one and is recorded as a
change (ADDED, MODIFIED, DELETED) in a bounded history that watches resume from. A version
older than the history's window is expired (410 Gone). Everything runs under one lock, and
watchers are notified under it, in resourceVersion order. Stored objects are never mutated in
place: a write stores a new dict, so sharing them read-only is safe."""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from tests.kubeapi.errors import ApiError, expired

Obj = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One write: `obj` is the object after it (for DELETED, its last state at `rv`)."""

    rv: int
    type: str
    store_key: str
    obj: Obj
    old: Obj | None


class Watcher(Protocol):
    def notify(self, change: Change) -> None:
        """Called under the store lock for every change, in order; must not block."""


class Store:
    """Objects by store key, namespace and name, with a global resourceVersion."""

    def __init__(self, *, first_rv: int = 1, history: int = 10_000) -> None:
        self.lock = threading.RLock()
        self._rv = first_rv
        self._window_start = first_rv  # changes with rv > this are all in the history
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._history: deque[Change] = deque()
        self._history_size = history
        self._watchers: list[Watcher] = []

    @property
    def rv(self) -> int:
        return self._rv

    def get(self, store_key: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            return self._objects.get(store_key, {}).get((namespace, name))

    def scan(self, store_key: str, namespace: str | None = None) -> list[Obj]:
        """Every object of a kind (in one namespace, or all), in (namespace, name) order."""
        with self.lock:
            objects = self._objects.get(store_key, {})
            return [
                objects[key] for key in sorted(objects) if namespace is None or key[0] == namespace
            ]

    def write(self, store_key: str, obj: Obj) -> Obj:
        """Store `obj` (a copy) at the next resourceVersion: ADDED or MODIFIED."""
        with self.lock:
            stored = copy.deepcopy(obj)
            meta = stored["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            objects = self._objects.setdefault(store_key, {})
            old = objects.get(key)
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            objects[key] = stored
            self._record(Change(self._rv, "MODIFIED" if old else "ADDED", store_key, stored, old))
            return stored

    def remove(self, store_key: str, namespace: str, name: str) -> Obj:
        """Delete the object; the DELETED change carries its last state at a new version."""
        with self.lock:
            old = self._objects[store_key].pop((namespace, name))
            self._rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._record(Change(self._rv, "DELETED", store_key, gone, old))
            return gone

    def _record(self, change: Change) -> None:
        self._history.append(change)
        while len(self._history) > self._history_size:
            self._window_start = self._history.popleft().rv
        for watcher in list(self._watchers):
            watcher.notify(change)

    def changes_since(self, store_key: str, rv: int) -> list[Change]:
        """The changes after `rv`; 410 Expired if some of them are no longer retained."""
        with self.lock:
            if rv < self._window_start:
                raise too_old(rv, self._window_start + 1)
            return [c for c in self._history if c.rv > rv and c.store_key == store_key]

    def check_not_expired(self, rv: int) -> None:
        with self.lock:
            if rv < self._window_start:
                raise too_old(rv, self._window_start + 1)

    def add_watcher(self, watcher: Watcher) -> None:
        with self.lock:
            self._watchers.append(watcher)

    def remove_watcher(self, watcher: Watcher) -> None:
        with self.lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

    def compact(self) -> None:
        """Forget the history: every version older than the current one is now expired."""
        with self.lock:
            self._history.clear()
            self._window_start = self._rv


def too_old(rv: int, oldest: int) -> ApiError:
    return expired(f"too old resource version: {rv} ({oldest})")
