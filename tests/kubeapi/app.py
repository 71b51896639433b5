"""The HTTP face of the registry: a small ASGI app that routes Kubernetes API paths to verbs,
answers errors as `Status` objects (with `Retry-After` and `Warning` headers where due),
serves discovery and Tables for kubectl, applies injected faults and logs every request.
Watches and followed logs are streamed by streams.py."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from tests.kubeapi import discovery, openapi, tables
from tests.kubeapi.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    unsupported_media_type,
)
from tests.kubeapi.faults import Faults, RequestRecord
from tests.kubeapi.pods import container_of
from tests.kubeapi.registry import Registry, Result
from tests.kubeapi.resources import ResourceType, lookup
from tests.kubeapi.streams import WatchOptions, stream_log, stream_watch
from tests.kubeapi.watch import WatchStream

Obj = dict[str, Any]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)
MAX_BODY = 3 * 1024 * 1024
NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource")


@dataclass(frozen=True)
class Target:
    """What a resource path addresses."""

    rt: ResourceType
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    @property
    def resource(self) -> str:
        """`jobs`, or `jobs/status` for a subresource (as faults and the log name it)."""
        return self.rt.plural + (f"/{self.subresource}" if self.subresource else "")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]

    def flag(self, key: str) -> bool:
        return self.query.get(key) in ("true", "1")

    def number(self, key: str) -> int | None:
        value = self.query.get(key)
        if value in (None, ""):
            return None
        try:
            return int(str(value))
        except ValueError:
            raise bad_request(f"invalid {key}: {value!r}") from None


def parse_path(parts: list[str]) -> Target | None:
    """`/api/v1/...` or `/apis/{group}/{version}/...`, already split on `/`."""
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        rt = lookup(group, version, rest[2])
        if rt is not None and rt.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    rt = lookup(group, version, rest[0])
    if rt is None:
        return None
    subresource = rest[2] if len(rest) == 3 else ""
    if subresource and subresource not in rt.subresources:
        return None
    return Target(rt, namespace, rest[1] if len(rest) > 1 else "", subresource)


def _verb(request: Request, target: Target) -> str:
    verbs = {
        ("GET", False): "watch" if request.flag("watch") else "list",
        ("GET", True): "get",
        ("POST", False): "create",
        ("POST", True): "create" if target.subresource in ("eviction", "binding") else "",
        ("PUT", True): "update",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }
    return verbs.get((request.method, bool(target.name)), "")


def _json(obj: Obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class KubeApp:
    """ASGI application over a `Registry`; `requests` logs what it answered."""

    def __init__(
        self,
        registry: Registry,
        faults: Faults,
        *,
        address: Callable[[], str],
        bookmark_interval_s: float = 1.0,
        watch_timeout_s: float = 1800.0,
    ) -> None:
        self.registry = registry
        self.faults = faults
        self.address = address
        self.bookmark_interval_s = bookmark_interval_s
        self.watch_timeout_s = watch_timeout_s
        self.requests: list[RequestRecord] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._streams: set[WatchStream] = set()

    def drop_watches(self, *, abort: bool = True) -> int:
        """End every open watch stream: abruptly (the connection is cut mid-stream) or, with
        abort=False, cleanly (the stream just ends). Returns how many there were."""
        with self.lock:
            streams = list(self._streams)
        for stream in streams:
            stream.end(abort=abort)
        return len(streams)

    @property
    def open_watches(self) -> int:
        with self.lock:
            return len(self._streams)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        request = Request(
            scope["method"],
            scope["path"].rstrip("/") or "/",
            {k: v[-1] for k, v in query.items()},
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
        )
        record: dict[str, Any] = {
            "method": request.method,
            "path": scope["path"],
            "query": request.query,
            "content_type": request.headers.get("content-type", ""),
            "user_agent": request.headers.get("user-agent", ""),
        }

        async def send_recorded(message: Message) -> None:
            """Log the request as its response starts (before the client can see it)."""
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                retry_after = headers.get(b"retry-after", b"").decode()
                with self.lock:
                    self.requests.append(
                        RequestRecord(status=message["status"], retry_after=retry_after, **record)
                    )
            await send(message)

        try:
            await self._handle(request, receive, send_recorded, record)
        except ApiError as error:
            extra = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
            await _send(send_recorded, error.code, _json(error.status()), extra=extra)
        except Exception as error:  # a bug here: answer like the real server's panic handler
            log.exception("kubeapi: %s %s failed", request.method, request.path)
            failure = ApiError(500, "InternalError", f"Internal error occurred: {error!r}")
            await _send(send_recorded, 500, _json(failure.status()))

    async def _handle(
        self, request: Request, receive: Receive, send: Send, record: dict[str, Any]
    ) -> None:
        parts = [p for p in request.path.split("/") if p]
        target = parse_path(parts)
        if target is None:
            self.faults.check("get", "", "", "")
            body = self._non_resource(parts)
            if body is None or request.method != "GET":
                raise NOT_FOUND
            text = isinstance(body, bytes)
            await _send(
                send,
                200,
                body if isinstance(body, bytes) else _json(body),
                "text/plain" if text else "application/json",
            )
            return
        verb = _verb(request, target)
        record.update(
            verb=verb, resource=target.resource, namespace=target.namespace, name=target.name
        )
        if not verb:
            raise method_not_allowed()
        body = None
        if request.method != "GET":  # read first, so that the log names what a create named
            body = await _read_body(receive, request.headers.get("content-type", ""))
            if verb == "create" and not target.name and isinstance(body, dict):
                record["name"] = str((body.get("metadata") or {}).get("name") or "")
        self.faults.check(verb, target.resource, target.namespace, target.name)
        if target.rt.namespaced and not target.namespace and verb not in ("list", "watch"):
            raise NOT_FOUND
        if verb == "watch":
            await self._watch(request, receive, send, target)
        elif target.subresource == "log":
            await self._log(request, receive, send, target)
        else:
            result = self._serve(verb, request, target, body)
            extra = [(b"warning", f'299 - "{w}"'.encode()) for w in result.warnings]
            await _send(
                send, result.code, _json(self._as_table(request, target, verb, result)), extra=extra
            )

    def _as_table(self, request: Request, target: Target, verb: str, result: Result) -> Obj:
        obj = result.obj
        wanted = "as=Table" in request.headers.get("accept", "")
        if not wanted or verb not in ("get", "list") or obj.get("kind") == "Status":
            return obj
        items = obj["items"] if verb == "list" else [obj]
        return tables.table(
            target.rt,
            items,
            resource_version=obj["metadata"].get("resourceVersion", ""),
            include_object=request.query.get("includeObject", "Metadata"),
        )

    def _non_resource(self, parts: list[str]) -> Obj | bytes | None:
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return b"ok"
        if parts == ["version"]:
            return discovery.version_info(self.registry.version)
        if parts == ["api"]:
            return discovery.api_versions(self.address())
        if parts == ["apis"]:
            return discovery.api_groups()
        if len(parts) == 2 and parts[0] == "apis":
            return discovery.api_group(parts[1])
        if parts == ["openapi", "v3"]:
            return openapi.root()
        if parts[:2] == ["openapi", "v3"]:
            return openapi.group_version("/".join(parts[2:]), self.registry.version)
        if (len(parts) == 3 and parts[0] == "apis") or parts == ["api", "v1"]:
            return discovery.resource_list(*(parts[1:] if parts[0] == "apis" else ["", "v1"]))
        return None

    def _serve(self, verb: str, request: Request, target: Target, body: Any) -> Result:
        reg, rt, ns, name, sub = (
            self.registry,
            target.rt,
            target.namespace,
            target.name,
            target.subresource,
        )
        query = request.query
        dry_run = query.get("dryRun") == "All"
        checking = query.get("fieldValidation", "")
        selectors = {
            "label_selector": query.get("labelSelector", ""),
            "field_selector": query.get("fieldSelector", ""),
        }
        if verb == "get":
            return Result(reg.get(rt, ns, name))
        if verb == "list":
            return Result(
                reg.list(
                    rt,
                    ns,
                    **selectors,
                    limit=request.number("limit") or 0,
                    continue_token=query.get("continue", ""),
                )
            )
        if verb == "create" and sub == "eviction":
            return reg.evict(ns, name, body if isinstance(body, dict) else None)
        if verb == "create" and sub == "binding":
            return reg.bind(ns, name, ((body or {}).get("target") or {}).get("name", ""))
        if verb == "create":
            return reg.create(rt, ns, body, dry_run=dry_run, field_validation=checking)
        if verb == "update":
            return reg.update(
                rt, ns, name, body, subresource=sub, dry_run=dry_run, field_validation=checking
            )
        if verb == "patch":
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            return reg.patch(
                rt,
                ns,
                name,
                body,
                content_type,
                subresource=sub,
                dry_run=dry_run,
                field_validation=checking,
            )
        options = _delete_options(body, request)
        if verb == "delete":
            return reg.delete(rt, ns, name, options, dry_run=dry_run)
        return Result(reg.delete_collection(rt, ns, **selectors, options=options))

    async def _watch(self, request: Request, receive: Receive, send: Send, target: Target) -> None:
        query = request.query
        stream = self.registry.watch(
            target.rt,
            target.namespace,
            label_selector=query.get("labelSelector", ""),
            field_selector=query.get("fieldSelector", ""),
            resource_version=query.get("resourceVersion", ""),
            send_initial_events=request.flag("sendInitialEvents"),
        )
        options = WatchOptions(
            timeout_s=float(request.number("timeoutSeconds") or self.watch_timeout_s),
            bookmarks=request.flag("allowWatchBookmarks"),
            bookmark_interval_s=self.bookmark_interval_s,
            as_table="as=Table" in request.headers.get("accept", ""),
            include_object=query.get("includeObject", "Metadata"),
        )
        with self.lock:
            self._streams.add(stream)
        try:
            await stream_watch(
                send, receive, stream, rt=target.rt, options=options, stopping=self.stopping
            )
        finally:
            self.registry.stop_watch(stream)
            with self.lock:
                self._streams.discard(stream)

    async def _log(self, request: Request, receive: Receive, send: Send, target: Target) -> None:
        reg, ns, name = self.registry, target.namespace, target.name
        container = request.query.get("container", "")
        text = reg.read_log(
            ns,
            name,
            container=container,
            tail_lines=request.number("tailLines"),
            previous=request.flag("previous"),
        )
        if not request.flag("follow"):
            await _send(send, 200, text.encode(), "text/plain")
            return
        pod = reg.get_pod(ns, name) or {}
        await stream_log(
            send,
            receive,
            reg,
            namespace=ns,
            name=name,
            container=container_of(pod, container),
            stopping=self.stopping,
        )


def _delete_options(body: Any, request: Request) -> Obj:
    options: Obj = dict(body) if isinstance(body, dict) else {}
    if "propagationPolicy" in request.query:
        options["propagationPolicy"] = request.query["propagationPolicy"]
    if "gracePeriodSeconds" in request.query:
        options["gracePeriodSeconds"] = request.number("gracePeriodSeconds")
    if "orphanDependents" in request.query:
        options["orphanDependents"] = request.flag("orphanDependents")
    return options


async def _read_body(receive: Receive, content_type: str) -> Any:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY:
            raise ApiError(
                413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
            )
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    if "protobuf" in content_type or "cbor" in content_type:
        raise unsupported_media_type(f"the test server reads JSON only, not {content_type}")
    try:
        return json.loads(raw)
    except ValueError as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
