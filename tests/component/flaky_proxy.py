"""A TCP proxy in front of the API that can drop every open connection on demand, refuse
new ones for a while (the API unreachable), or answer some paths itself with an error: the
network faults an SDK must live through.

It records the request line and headers of each request it forwards, so a test can see on
the wire what the client sent (e.g. `Last-Event-ID` on a reconnect)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

_REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|DELETE|PATCH|HEAD) (\S+) HTTP/1\.[01]\r\n")


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FlakyProxy:
    upstream_port: int
    reject: str | None = None  # a path fragment answered with 501 instead of forwarded
    requests: list[SeenRequest] = field(default_factory=list)
    refusing: bool = False  # each new connection is closed at once

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> FlakyProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def drop(self) -> None:
        """Cut every connection now, as a broken network would."""
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def refuse(self) -> None:
        """The API unreachable until `resume()`: every connection cut, each new one closed
        as soon as it is made."""
        self.refusing = True
        self.drop()

    def resume(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if from_client and self._inspect(chunk, source):
                    break
                sink.sendall(chunk)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

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
