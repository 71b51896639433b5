"""A TCP proxy in front of the test MinIO that plays a slow or broken network: the server's
answers reach the client at `rate` bytes/s, and once `stall_after` bytes of them have passed,
nothing more does (a store that stops answering mid-body: the connection stays open, silent),
or, with `cut=True`, the connection is closed there; with `heal=True` that happens once, and
later connections work. The client's requests pass as they are.

    with SlowLink(upstream_port=server.port, port=free_port(), rate=2 * MiB) as link:
        ... link.endpoint ...
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

STEP = 16 << 10  # the server's bytes are passed on in pieces of this size


@dataclass
class SlowLink:
    upstream_port: int
    port: int
    rate: float | None = None  # bytes/s from the server; None: as fast as it comes
    stall_after: int | None = None  # bytes from the server (all connections) before silence
    cut: bool = False  # at `stall_after`: close the connection instead of going silent
    heal: bool = False  # after one stall or cut, new connections pass everything
    passed: int = 0  # bytes from the server passed on so far
    _open: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SlowLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sockets, self._open = {self._listener, *self._open}, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while piece := source.recv(STEP):
                sink.sendall(piece)

    def _answers(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while piece := source.recv(STEP):
                if self.stall_after is not None:
                    with self._lock:
                        room = max(0, self.stall_after - self.passed)
                    piece = piece[:room]
                sink.sendall(piece)
                with self._lock:
                    self.passed += len(piece)
                if self.stall_after is not None and self.passed >= self.stall_after:
                    if self.heal:
                        self.stall_after = None
                    if self.cut:
                        sink.shutdown(socket.SHUT_RDWR)
                    self._closed.wait()  # silent, the connection open, until closed
                    return
                if self.rate:
                    time.sleep(len(piece) / self.rate)
