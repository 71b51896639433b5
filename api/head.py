"""HEAD wherever GET is (RFC 9110 9.3.2: a general-purpose server supports it): a route
that answers GET alone answers HEAD with the same status and headers and no body (an
uptime check's `HEAD /healthz`). Routes with a HEAD of their own (an artifact's) keep it.
A stream is not left running: once the headers are out, the route hears the client gone."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: a HEAD that only a GET route matches is that GET, without its body."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or not self._only_get(scope):
            await self.app(scope, receive, send)
            return
        started = False

        async def head_receive() -> Message:
            if started:  # the headers are out: nothing more is wanted
                return {"type": "http.disconnect"}
            return await receive()

        async def head_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, head_receive, head_send)

    def _only_get(self, scope: Scope) -> bool:
        """No route answers this HEAD itself, and one answers it as a GET."""
        if any(route.matches(scope)[0] is Match.FULL for route in self.routes):
            return False
        as_get = {**scope, "method": "GET"}
        return any(route.matches(as_get)[0] is Match.FULL for route in self.routes)
