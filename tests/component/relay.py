"""A TCP relay on 127.0.0.1 in front of a local server, the base of the tests' network
faults (`FlakyProxy`, `SlowLink`): each connection it takes gets one of its own to the
server, and a thread per direction passes the bytes on (`pass_requests`, `pass_answers`: what a
subclass shapes). `drop()` cuts every connection; `close()`, or leaving the `with`, stops it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

PIECE = 64 << 10  # bytes read at a time
Pump = Callable[[socket.socket, socket.socket], None]  # (source, sink): one direction


class Relay:
    def __init__(self, upstream_port: int, *, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Self:
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

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.drop()

    def admit(self, client: socket.socket) -> bool:
        """Whether to relay a new connection (False: it is closed at once)."""
        return True

    def pass_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """The client's bytes to the server (here: as they come)."""
        while piece := client.recv(PIECE):
            upstream.sendall(piece)

    def pass_answers(self, upstream: socket.socket, client: socket.socket) -> None:
        """The server's bytes to the client (here: as they come)."""
        while piece := upstream.recv(PIECE):
            client.sendall(piece)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.admit(client):
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for pump, source, sink in (
                (self.pass_requests, client, upstream),
                (self.pass_answers, upstream, client),
            ):
                threading.Thread(target=self._run, args=(pump, source, sink), daemon=True).start()

    @staticmethod
    def _run(pump: Pump, source: socket.socket, sink: socket.socket) -> None:
        """One direction until its source ends or fails; then both ends are shut, as a
        closed connection would be."""
        with contextlib.suppress(OSError):
            pump(source, sink)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
