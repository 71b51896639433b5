"""List + watch for one kind of Kubernetes object, in a thread, as client-go's informers do:
objects chosen by a label and/or field selector, a cache by name (and optionally by one
index key: a label's value, or what `index_key` reads off the object), resumed from the
last `resourceVersion`, relisted on `410 Gone` (an ERROR event in the stream, or the watch
call's own status), backing off on 429/5xx as long as `Retry-After` says (else an
exponential backoff). A watch that was up for a while and is cut resumes at once: only
failing calls back off. Each change calls `on_change(object)`; nothing else is decided here.

What is cached is `transform(object)` (client-go's `SetTransform`): by default the object
without `metadata.managedFields` (its `TransformStripManagedFields`), which nobody here
reads. A full collection of the garbage collector walks every object it tracks in the
process, the event loop waiting meanwhile: with 6,400 of kubetask's Jobs cached whole
(70 tracked objects and 7.1 KB each, 41 and 3.3 KB of them managedFields) one took ~250 ms.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from kubetask.controller.k8s_api import Obj, retry_after_s

log = logging.getLogger("kubetask.informer")

WATCH_TIMEOUT_S = 55
MAX_BACKOFF_S = 30.0
ESTABLISHED_S = 1.0  # a watch cut after this long was no failure of the call


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def pause_s(headers: Mapping[str, str] | None, failures: int) -> float:
    """The wait before calling again after the `failures`-th failed call in a row: what the
    answer's `Retry-After` asks, else an exponential backoff up to MAX_BACKOFF_S."""
    asked = retry_after_s(headers)
    return asked if asked is not None else min(0.2 * 2**failures, MAX_BACKOFF_S)


def without_managed_fields(obj: Obj) -> Obj:
    obj["metadata"].pop("managedFields", None)
    return obj


def _rv(obj: Obj) -> int:
    return int(obj.get("metadata", {}).get("resourceVersion") or 0)


class Informer:
    def __init__(
        self,
        *,
        name: str,
        list_fn: Callable[..., Any],
        namespace: str,
        selector: str | None = None,
        field_selector: str | None = None,
        on_change: Callable[[Obj], None],
        index_label: str | None = None,
        index_key: Callable[[Obj], str | None] | None = None,
        transform: Callable[[Obj], Obj] = without_managed_fields,
    ) -> None:
        self.name = name
        self._list = list_fn
        self._namespace = namespace
        self._selectors: dict[str, str] = {}
        if selector is not None:
            self._selectors["label_selector"] = selector
        if field_selector is not None:
            self._selectors["field_selector"] = field_selector
        self._on_change = on_change
        self._index_label = index_label
        self._index_key = index_key
        self._transform = transform
        self._lock = threading.Lock()
        self._cache: dict[str, Obj] = {}
        self._by_label: dict[str, dict[str, Obj]] = defaultdict(dict)
        self._stop = threading.Event()
        self._response: Any = None
        self._watch_opened: float | None = None  # when the current watch call was answered
        self.synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    # -- the cache ---------------------------------------------------------------------
    def get(self, name: str) -> Obj | None:
        with self._lock:
            return self._cache.get(name)

    def indexed(self, value: str) -> list[Obj]:
        """Objects whose `index_label` (or `index_key`) has this value."""
        with self._lock:
            return list(self._by_label.get(value, {}).values())

    def upsert(self, obj: Obj, *, notify: bool = True) -> None:
        """Put an object in, transformed (unless the cache has this version or a newer
        one), and report the change, unless `notify` is False (the caller acts on the
        object itself)."""
        obj = self._transform(obj)
        name = obj["metadata"]["name"]
        with self._lock:
            current = self._cache.get(name)
            if current is not None and (
                _rv(current) > _rv(obj) or (_rv(obj) > 0 and _rv(current) == _rv(obj))
            ):
                return
            self._cache[name] = obj
            label = self._label(obj)
            if label is not None:
                self._by_label[label][name] = obj
        if notify:
            self._on_change(obj)

    def _remove(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            self._cache.pop(name, None)
            label = self._label(obj)
            if label is not None:
                self._by_label[label].pop(name, None)
                if not self._by_label[label]:
                    del self._by_label[label]
        self._on_change(obj)

    def _label(self, obj: Obj) -> str | None:
        if self._index_key is not None:
            return self._index_key(obj)
        if self._index_label is None:
            return None
        value = obj.get("metadata", {}).get("labels", {}).get(self._index_label)
        return str(value) if value is not None else None

    # -- the thread --------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread: close its watch, and the next one if it was opening one."""
        self._stop.set()
        deadline = time.monotonic() + 5
        while self._thread.is_alive() and time.monotonic() < deadline:
            response = self._response
            if response is not None:
                try:
                    # shutdown() unblocks the read in the other thread; a plain close() of
                    # a TLS stream waits for that read (up to the watch's timeout)
                    response.shutdown()
                    response.close()
                except Exception:  # closing a stream another thread reads may raise anything
                    log.debug("closing the %s watch", self.name, exc_info=True)
            self._thread.join(0.05)

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stop.is_set():
            self._watch_opened = None
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
                failures = 0
            except Expired:
                log.info("%s watch expired (410); listing again", self.name)
                version = None
            except ApiException as exc:
                if exc.status == 410:  # the version is gone: resuming from it cannot work
                    log.info("%s watch answered 410 Gone; listing again", self.name)
                    version = None
                    continue
                failures += 1
                self._pause(exc, failures)
            except Exception as exc:  # dropped connections, timeouts: back off and resume
                if self._stop.is_set():
                    return
                opened = self._watch_opened
                if opened is not None and time.monotonic() - opened >= ESTABLISHED_S:
                    log.info("%s watch cut (%s); resuming", self.name, exc)
                    failures = 0
                    continue
                failures += 1
                log.warning("%s watch interrupted (%s); resuming", self.name, exc)
                self._stop.wait(min(0.2 * 2**failures, MAX_BACKOFF_S))

    def _pause(self, exc: ApiException, failures: int) -> None:
        delay = pause_s(exc.headers, failures)
        log.warning("%s: %s %s; retrying in %.1fs", self.name, exc.status, exc.reason, delay)
        self._stop.wait(delay)

    def _relist(self) -> str:
        response = self._list(self._namespace, **self._selectors, _preload_content=False)
        listing = json.loads(response.data)
        items = {item["metadata"]["name"]: item for item in listing.get("items", [])}
        with self._lock:
            gone = [obj for name, obj in self._cache.items() if name not in items]
        for obj in gone:
            self._remove(obj)
        for obj in items.values():
            self.upsert(obj)
        self.synced.set()
        version: str = listing["metadata"]["resourceVersion"]
        return version

    def _watch(self, version: str) -> str:
        """Follow changes after `version` until the server ends the watch; the last seen
        version is where the next watch resumes."""
        self._response = self._list(
            self._namespace,
            **self._selectors,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_S,
            _preload_content=False,
            _request_timeout=(5, WATCH_TIMEOUT_S + 10),
        )
        self._watch_opened = time.monotonic()
        try:
            for line in iter_resp_lines(self._response):  # type: ignore[no-untyped-call]
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if kind == "DELETED":
                    self._remove(obj)
                elif kind in ("ADDED", "MODIFIED"):
                    self.upsert(obj)
        finally:
            self._response.release_conn()
            self._response = None
        return version
