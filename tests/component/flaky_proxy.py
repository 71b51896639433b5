"""A TCP proxy in front of the API that can drop every open connection on demand, refuse
new ones for a while (the API unreachable), or answer some paths itself with an error: the
network faults an SDK must live through.

It records the request line and headers of each request it forwards, so a test can see on
the wire what the client sent (e.g. `Last-Event-ID` on a reconnect)."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass

from tests.component.relay import PIECE, Relay

_REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|DELETE|PATCH|HEAD) (\S+) HTTP/1\.[01]\r\n")


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


class FlakyProxy(Relay):
    def __init__(self, upstream_port: int, *, reject: str | None = None) -> None:
        self.reject = reject  # a path fragment answered with 501 instead of forwarded
        self.requests: list[SeenRequest] = []
        self.refusing = False  # each new connection is closed at once
        super().__init__(upstream_port)

    def refuse(self) -> None:
        """The API unreachable until `resume()`: every connection cut, each new one closed
        as soon as it is made."""
        self.refusing = True
        self.drop()

    def resume(self) -> None:
        self.refusing = False

    def drop_once_streaming(
        self, *, after_s: float = 0.3, within_s: float = 20
    ) -> threading.Thread:
        """In a thread (join it): once a request for an event stream has passed, wait
        `after_s` and cut every connection, the stream's mid-flight (none in `within_s`:
        nothing is cut)."""

        def cut() -> None:
            deadline = time.monotonic() + within_s
            while not any(r.path.endswith("/events") for r in self.requests):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
            time.sleep(after_s)
            self.drop()

        cutter = threading.Thread(target=cut)
        cutter.start()
        return cutter

    def admit(self, client: socket.socket) -> bool:
        return not self.refusing

    def pass_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        while chunk := client.recv(PIECE):
            if self._inspect(chunk, client):
                return
            upstream.sendall(chunk)

    def _inspect(self, chunk: bytes, client: socket.socket) -> bool:
        """Record a request; True if it was answered here (rejected) instead."""
        match = _REQUEST_LINE.match(chunk)
        if match is None:
            return False
        head = chunk.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head)}
        path = match.group(2).decode()
        self.requests.append(SeenRequest(match.group(1).decode(), path, headers))
        if self.reject is None or self.reject not in path:
            return False
        body = b'{"status": 501, "title": "Not Implemented", "detail": "not behind this proxy"}'
        client.sendall(
            b"HTTP/1.1 501 Not Implemented\r\ncontent-type: application/problem+json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        return True
