"""Without tokens (the zero-config local mode), the server answers only requests addressed
to this machine by name: `Host` localhost, 127.0.0.1 or [::1] (any port), and a WebSocket's
`Origin`, when it has one, as well. Else a web page could reach it through a name of its
own that it points at 127.0.0.1 (DNS rebinding), and the browser would let it read the
answers: submit jobs, read artifacts. With tokens, every call carries one; any Host goes."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from kubetask.api.problems import problem

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(authority: str) -> str:
    """The name in a `Host` value: `[::1]:8000` -> `::1`, `LocalHost.:80` -> `localhost`."""
    if authority.startswith("["):
        name = authority[1:].partition("]")[0]
    else:
        name = authority.rpartition(":")[0] if ":" in authority else authority
    return name.rstrip(".").lower()


def addressed_locally(headers: dict[bytes, bytes]) -> bool:
    """Whether the request names this machine: its Host, and its Origin if it has one
    (`null`, a sandboxed frame's or a local file's, is no machine's)."""
    host = headers.get(b"host", b"").decode("latin-1")
    if host_name(host) not in LOCAL_NAMES:
        return False
    origin = headers.get(b"origin")
    if origin is None:  # not a browser's (a browser's WebSocket always says it)
        return True
    try:
        name = urlsplit(origin.decode("latin-1")).hostname or ""
    except ValueError:
        return False
    return name in LOCAL_NAMES


class LocalHostsOnly:
    """ASGI middleware: refuse what is not `addressed_locally` (400; a WebSocket: closed
    before it opens)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or addressed_locally(dict(scope["headers"])):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        refused = problem(
            400,
            "Bad Request",
            "without KUBETASK_TOKENS_FILE this server answers only requests addressed to "
            "localhost, 127.0.0.1 or [::1]",
        )
        await refused(scope, receive, send)
