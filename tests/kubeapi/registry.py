"""The verbs of the API with the real server's semantics, independent of HTTP: create, get,
list, watch, update, patch, delete (with propagation and garbage collection), pod eviction,
binding and logs. The HTTP app calls these; so does the simulator, so its writes bump the same
resourceVersion and reach the same watches.

Every verb runs under the store's lock and works on copies. Objects go in and out in the
version of the resource they were addressed through (`ResourceType`); the store keeps one
internal form per storage (core/v1 for Events)."""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.kubeapi import gc, pods, writes
from tests.kubeapi.errors import (
    ApiError,
    bad_request,
    expired,
    not_found_error,
)
from tests.kubeapi.events import to_events_v1
from tests.kubeapi.pods import LogSource
from tests.kubeapi.resources import EVENTS_V1, NAMESPACES, PODS, ResourceType
from tests.kubeapi.schema import SchemaValidator, newest_version
from tests.kubeapi.selectors import parse_fields, parse_labels
from tests.kubeapi.storage import Store
from tests.kubeapi.strategies import STRATEGIES, Context, Strategy
from tests.kubeapi.watch import WatchStream

Obj = dict[str, Any]

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SYSTEM_PRIORITY_CLASSES = {
    "system-cluster-critical": 2_000_000_000,
    "system-node-critical": 2_000_001_000,
}
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator alphabet
_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


@dataclass(frozen=True)
class Result:
    """A verb's answer: the body, the HTTP code and `Warning` headers."""

    obj: Obj
    code: int = 200
    warnings: tuple[str, ...] = ()


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Registry:
    """The API's objects and verbs. `version` selects the schemas (default: newest bundled)."""

    def __init__(
        self,
        *,
        version: str | None = None,
        namespaces: Iterable[str] = (),
        priority_classes: Mapping[str, int] | None = None,
        history: int = 10_000,
        seed: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.schema = SchemaValidator(version or newest_version())
        self.version = version or self.schema.version
        minor = int(self.schema.version.split(".")[1])
        self.relaxed_env = minor >= 32  # RelaxedEnvironmentVariableValidation, on since 1.32
        self.priority_classes = {**SYSTEM_PRIORITY_CLASSES, **(priority_classes or {})}
        self.store = Store(first_rv=100, history=history)
        self.rng = random.Random(seed)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.log_source: LogSource | None = None
        for name in dict.fromkeys([*SYSTEM_NAMESPACES, *namespaces]):
            self.create(NAMESPACES, "", {"metadata": {"name": name}})

    # -- helpers ---------------------------------------------------------------------------
    def now(self, delta_s: float = 0) -> str:
        return timestamp(self.clock() + timedelta(seconds=delta_s))

    def new_uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def strategy(self, rt: ResourceType) -> Strategy:
        return STRATEGIES[rt.store_key]

    def context(self, namespace: str) -> Context:
        ns = self.store.get(NAMESPACES.store_key, "", namespace) if namespace else None
        labels = (ns or {}).get("metadata", {}).get("labels") or {}
        return Context(self.relaxed_env, self.priority_classes, labels)

    def encode(self, rt: ResourceType, obj: Obj) -> Obj:
        """The stored object as this resource's version shows it (a copy)."""
        out = to_events_v1(obj) if rt == EVENTS_V1 else copy.deepcopy(obj)
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
        return out

    def stored(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.store_key, namespace, name)
        if obj is None:
            raise not_found_error(rt, name)
        return obj

    # -- create, get, list -----------------------------------------------------------------
    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "",
    ) -> Result:
        with self.store.lock:
            return writes.create(
                self, rt, namespace, body, dry_run=dry_run, field_validation=field_validation
            )

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self.store.lock:
            return self.encode(rt, self.stored(rt, namespace, name))

    def list(
        self,
        rt: ResourceType,
        namespace: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> Obj:
        """A `<Kind>List`; paged with `limit`/`continue` (a later page reads the current state,
        and its token expires with the watch history, like the real server's)."""
        labels = parse_labels(label_selector)
        fields = parse_fields(field_selector, rt.store_key)
        with self.store.lock:
            rv, after = self.store.rv, ""
            if continue_token:
                rv, after = _decode_continue(continue_token)
                try:
                    self.store.check_not_expired(rv)
                except ApiError:
                    raise expired(_CONTINUE_EXPIRED) from None
            items = [
                o
                for o in self.store.scan(rt.store_key, namespace or None)
                if labels.matches(o["metadata"].get("labels"))
                and fields.matches(o)
                and _key(o) > after
            ]
            meta: Obj = {"resourceVersion": str(rv)}
            if limit and len(items) > limit:
                meta["continue"] = _encode_continue(rv, _key(items[limit - 1]))
                meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
            encoded = []
            for item in items:
                out = self.encode(rt, item)
                del out["apiVersion"], out["kind"]  # list items carry no kind, as on the wire
                encoded.append(out)
            return {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": meta,
                "items": encoded,
            }

    def watch(
        self,
        rt: ResourceType,
        namespace: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        send_initial_events: bool = False,
    ) -> WatchStream:
        """A registered watch, already holding what comes before live changes: the current
        objects as ADDED (no or "0" resourceVersion), the retained changes after a given one,
        or a 410 ERROR event (then it is ended)."""
        labels = parse_labels(label_selector)
        fields = parse_fields(field_selector, rt.store_key)
        with self.store.lock:
            stream = WatchStream(
                store_key=rt.store_key,
                namespace=namespace,
                labels=labels,
                fields=fields,
                encode=lambda o: self.encode(rt, o),
                start_rv=self.store.rv,
            )
            if resource_version in ("", "0") or send_initial_events:
                for obj in self.store.scan(rt.store_key, namespace or None):
                    if stream.matches(obj):
                        stream.push({"type": "ADDED", "object": self.encode(rt, obj)})
                if send_initial_events:
                    mark = {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {
                            "resourceVersion": str(self.store.rv),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    }
                    stream.push({"type": "BOOKMARK", "object": mark})
            else:
                if not resource_version.isdigit():
                    raise bad_request(f"invalid resource version: {resource_version}")
                try:
                    changes = self.store.changes_since(rt.store_key, int(resource_version))
                except ApiError as error:
                    stream.push({"type": "ERROR", "object": error.status()})
                    stream.end()
                    return stream
                for change in changes:
                    event = stream.event_for(change)
                    if event is not None:
                        stream.push(event)
            self.store.add_watcher(stream)
            return stream

    def stop_watch(self, stream: WatchStream) -> None:
        self.store.remove_watcher(stream)

    # -- update, patch ---------------------------------------------------------------------
    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
        field_validation: str = "",
    ) -> Result:
        with self.store.lock:
            return writes.update(
                self,
                rt,
                namespace,
                name,
                body,
                subresource=subresource,
                dry_run=dry_run,
                field_validation=field_validation,
            )

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        content_type: str,
        *,
        subresource: str = "",
        dry_run: bool = False,
        field_validation: str = "",
    ) -> Result:
        with self.store.lock:
            return writes.patch(
                self,
                rt,
                namespace,
                name,
                body,
                content_type=content_type,
                subresource=subresource,
                dry_run=dry_run,
                field_validation=field_validation,
            )

    # -- delete ----------------------------------------------------------------------------
    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: Obj | None = None,
        *,
        dry_run: bool = False,
    ) -> Result:
        """Delete with DeleteOptions (preconditions, gracePeriodSeconds, propagationPolicy)."""
        with self.store.lock:
            return gc.delete(
                self, rt, self.stored(rt, namespace, name), options or {}, dry_run=dry_run
            )

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        options: Obj | None = None,
    ) -> Obj:
        with self.store.lock:
            found = self.list(
                rt, namespace, label_selector=label_selector, field_selector=field_selector
            )
            for item in found["items"]:
                meta = item["metadata"]
                obj = self.store.get(rt.store_key, meta.get("namespace", ""), meta["name"])
                if obj is not None:
                    gc.delete(self, rt, obj, options or {}, dry_run=False)
            return found

    # -- pods: eviction, binding, logs (see pods.py) ---------------------------------------
    def evict(
        self,
        namespace: str,
        name: str,
        body: Obj | None = None,
        *,
        reason: str = "EvictionByEvictionAPI",
        message: str = "Eviction API: evicting",
    ) -> Result:
        """POST pods/{name}/eviction: a DisruptionTarget condition, then a graceful delete."""
        with self.store.lock:
            return pods.evict(self, namespace, name, body, reason=reason, message=message)

    def bind(self, namespace: str, name: str, node: str) -> Result:
        """POST pods/{name}/binding: set spec.nodeName and PodScheduled=True."""
        with self.store.lock:
            return pods.bind(self, namespace, name, node)

    def get_pod(self, namespace: str, name: str) -> Obj | None:
        with self.store.lock:
            pod = self.store.get(PODS.store_key, namespace, name)
            return copy.deepcopy(pod) if pod is not None else None

    def read_log(
        self,
        namespace: str,
        name: str,
        *,
        container: str = "",
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> str:
        """A container's log from the log source (the simulator's kubelet)."""
        pod = self.get_pod(namespace, name)
        if pod is None:
            raise not_found_error(PODS, name)
        return pods.read_log(
            self.log_source, pod, container=container, tail_lines=tail_lines, previous=previous
        )


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _encode_continue(rv: int, after: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": after + "\x00"}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"]).rstrip("\x00")
    except (ValueError, KeyError, TypeError):
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)"
        ) from None
