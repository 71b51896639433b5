"""The task's Redis connection: a few pipelined commands at a time, synchronous.

`import redis` (redis-py 8) imports its asyncio client, asyncio and OpenTelemetry: ~60 ms of
a task's start, for a process that only appends events and stores its outcome. So a task
speaks RESP2 itself over one socket for plain `redis://` and `unix://` URLs (password, user
and database number included); any other URL (TLS, query options) goes through redis-py,
imported only then. Both answer the same way: `execute` returns one reply per command (an
error reply as a `ReplyError`, not raised) and raises `RedisUnavailable` when the server
cannot be reached or the connection breaks; the next call connects again.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

Arg = str | bytes | int | float
Reply = bytes | int | list["Reply"] | None | Exception


class RedisUnavailable(Exception):
    """The server could not be reached, or the connection broke mid-call."""


class ReplyError(Exception):
    """An error reply to one command (the others of the batch still ran)."""


class Connection(Protocol):
    def execute(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]: ...

    def close(self) -> None: ...


def connect(url: str, *, timeout_s: float, connect_timeout_s: float) -> Connection:
    """A connection for `url` (made on first use): `RespConnection` when it can speak to it,
    else redis-py's client."""
    where = plain_address(url)
    if where is not None:
        return RespConnection(where, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
    return RedisPyConnection(url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)


class Address(NamedTuple):
    """Where a plain URL points, and how to log in."""

    target: str | tuple[str, int]  # a unix socket's path, or (host, port)
    user: str | None
    password: str | None
    database: int


def plain_address(url: str) -> Address | None:
    """Where a `redis://` or `unix://` URL points, or None for any other URL (TLS, a query
    other than `db`), which redis-py handles."""
    parts = urlsplit(url)
    query = dict(item.partition("=")[::2] for item in parts.query.split("&") if item)
    if parts.scheme not in ("redis", "unix") or set(query) - {"db"}:
        return None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    try:
        if parts.scheme == "unix":
            return Address(unquote(parts.path), user, password, int(query.get("db") or 0))
        database = parts.path.lstrip("/") or query.get("db") or "0"
        host = parts.hostname or "localhost"
        return Address((host, parts.port or 6379), user, password, int(database))
    except ValueError:
        return None


def encode(commands: Sequence[Sequence[Arg]]) -> bytes:
    """Commands as RESP arrays of bulk strings."""
    out = bytearray()
    for command in commands:
        out += b"*%d\r\n" % len(command)
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out += b"$%d\r\n%b\r\n" % (len(data), data)
    return bytes(out)


class _Reader:
    """Parses RESP2 replies from a socket file."""

    def __init__(self, stream: socket.SocketIO) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer[:] = rest
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[: size + 2]
        return data

    def _fill(self) -> None:
        chunk = self._stream.read(65536)
        if not chunk:
            raise RedisUnavailable("the server closed the connection")
        self._buffer += chunk

    def reply(self) -> Reply:
        line = self._line()
        kind, body = line[:1], line[1:]
        if kind == b"+":
            return body
        if kind == b"-":
            return ReplyError(body.decode(errors="replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            return None if body == b"-1" else self._exactly(int(body))
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise RedisUnavailable(f"unexpected reply from the server: {line[:40]!r}")


class RespConnection:
    """One socket to a Redis-protocol server, opened (with AUTH and SELECT) on first use."""

    def __init__(self, address: Address, *, timeout_s: float, connect_timeout_s: float) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._socket: socket.socket | None = None
        self._reader: _Reader | None = None

    def execute(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        try:
            return self._execute(commands)
        except (OSError, ValueError, RedisUnavailable) as exc:
            self.close()
            if isinstance(exc, RedisUnavailable):
                raise
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _execute(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        sock, reader = self._connected()
        sock.sendall(encode(commands))
        return [reader.reply() for _ in commands]

    def _connected(self) -> tuple[socket.socket, _Reader]:
        if self._socket is not None and self._reader is not None:
            return self._socket, self._reader
        target, user, password, database = self._address
        if isinstance(target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._connect_timeout_s)
            sock.connect(target)
        else:
            sock = socket.create_connection(target, timeout=self._connect_timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._timeout_s)
        self._socket, self._reader = sock, _Reader(socket.SocketIO(sock, "rb"))
        setup: list[list[Arg]] = []
        if password is not None:
            setup.append(["AUTH", user, password] if user else ["AUTH", password])
        if database:
            setup.append(["SELECT", database])
        for reply in self._execute(setup) if setup else []:
            if isinstance(reply, ReplyError):
                raise RedisUnavailable(f"the server refused the connection: {reply}")
        return sock, self._reader

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = self._reader = None


class RedisPyConnection:
    """The same calls through redis-py, for the URLs `RespConnection` does not take."""

    def __init__(self, url: str, *, timeout_s: float, connect_timeout_s: float) -> None:
        import redis

        self._redis = redis
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s
        )

    def execute(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                replies: list[Reply] = pipe.execute(raise_on_error=False)
        except self._redis.RedisError as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return [
            ReplyError(str(reply)) if isinstance(reply, self._redis.ResponseError) else reply
            for reply in replies
        ]

    def close(self) -> None:
        self._client.close()
