"""A TCP proxy in front of the test MinIO that plays a slow or broken network: the server's
answers reach the client at `rate` bytes/s, and once `stall_after` bytes of them have passed,
nothing more does (a store that stops answering mid-body: the connection stays open, silent),
or, with `cut=True`, the connection is closed there; with `heal=True` that happens once, and
later connections work. The client's requests pass as they are.

    with SlowLink(upstream_port=server.port, port=free_port(), rate=2 * MiB) as link:
        ... link.endpoint ...
"""

from __future__ import annotations

import socket
import time

from tests.component.relay import Relay

STEP = 16 << 10  # the server's bytes are passed on in pieces of this size


class SlowLink(Relay):
    def __init__(
        self,
        *,
        upstream_port: int,
        port: int = 0,
        rate: float | None = None,  # bytes/s from the server; None: as fast as it comes
        stall_after: int | None = None,  # bytes from the server (all connections) till silence
        cut: bool = False,  # at `stall_after`: close the connection instead of going silent
        heal: bool = False,  # after one stall or cut, new connections pass everything
    ) -> None:
        self.rate, self.stall_after, self.cut, self.heal = rate, stall_after, cut, heal
        self.passed = 0  # bytes from the server passed on so far
        super().__init__(upstream_port, port=port)

    @property
    def endpoint(self) -> str:
        return self.base_url

    def pass_answers(self, upstream: socket.socket, client: socket.socket) -> None:
        while piece := upstream.recv(STEP):
            if self.stall_after is not None:
                with self._lock:
                    room = max(0, self.stall_after - self.passed)
                piece = piece[:room]
            client.sendall(piece)
            with self._lock:
                self.passed += len(piece)
            if self.stall_after is not None and self.passed >= self.stall_after:
                if self.heal:
                    self.stall_after = None
                if self.cut:
                    client.shutdown(socket.SHUT_RDWR)
                self._closed.wait()  # silent, the connection open, until closed
                return
            if self.rate:
                time.sleep(len(piece) / self.rate)
