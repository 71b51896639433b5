"""The task's own Redis connection, without a server: which URLs it takes, the bytes it
sends, the replies it reads (fed through a socket pair), and a refused connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from kubetask.controller.redis_server import free_port
from kubetask.jobs.resp import (
    Address,
    RedisPyConnection,
    RedisUnavailable,
    ReplyError,
    RespConnection,
    _Reader,
    connect,
    encode,
    plain_address,
)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1:6390/3", Address(("127.0.0.1", 6390), None, None, 3)),
        ("redis://redis", Address(("redis", 6379), None, None, 0)),
        ("redis://:s%40cret@redis:6379/0", Address(("redis", 6379), None, "s@cret", 0)),
        ("redis://task:pw@redis/1", Address(("redis", 6379), "task", "pw", 1)),
        ("redis://redis/?db=2", Address(("redis", 6379), None, None, 2)),
        ("unix:///run/redis.sock", Address("/run/redis.sock", None, None, 0)),
        ("unix:///run/redis.sock?db=4", Address("/run/redis.sock", None, None, 4)),
    ],
)
def test_plain_urls_are_spoken_to_directly(url: str, address: Address) -> None:
    assert plain_address(url) == address


@pytest.mark.parametrize(
    "url",
    [
        "rediss://redis:6380/0",  # TLS
        "redis://redis/0?socket_timeout=3",  # an option only redis-py knows
        "redis+sentinel://sentinel/mymaster",
        "redis://redis/not-a-number",
    ],
)
def test_other_urls_go_to_redis_py(url: str) -> None:
    assert plain_address(url) is None


def test_connect_picks_the_connection_by_url() -> None:
    plain = connect("redis://127.0.0.1:1/0", timeout_s=1, connect_timeout_s=1)
    assert isinstance(plain, RespConnection)
    other = connect("rediss://127.0.0.1:1/0", timeout_s=1, connect_timeout_s=1)
    assert isinstance(other, RedisPyConnection)
    other.close()


def test_commands_are_encoded_as_arrays_of_bulk_strings() -> None:
    assert encode([["SET", "k", "vé", "EX", 60], ["GET", b"k"]]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\xc3\xa9\r\n$2\r\nEX\r\n$2\r\n60\r\n"
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, _Reader]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    try:
        yield theirs, _Reader(socket.SocketIO(ours, "rb"))
    finally:
        ours.close()
        theirs.close()


def test_every_reply_type_is_read(pair: tuple[socket.socket, _Reader]) -> None:
    server, reader = pair
    server.sendall(b"+OK\r\n:42\r\n$5\r\nhe\r\no\r\n$-1\r\n*2\r\n:1\r\n*1\r\n$0\r\n\r\n*-1\r\n")
    server.sendall(b"-NOSCRIPT No matching script\r\n")
    assert [reader.reply() for _ in range(6)] == [b"OK", 42, b"he\r\no", None, [1, [b""]], None]
    error = reader.reply()
    assert isinstance(error, ReplyError)
    assert str(error) == "NOSCRIPT No matching script"


def test_a_reply_split_across_reads_is_put_together(pair: tuple[socket.socket, _Reader]) -> None:
    server, reader = pair
    server.sendall(b"$10\r\n01234")
    server.sendall(b"56789\r\n")
    assert reader.reply() == b"0123456789"


def test_a_closed_connection_mid_reply_is_unavailable(pair: tuple[socket.socket, _Reader]) -> None:
    server, reader = pair
    server.sendall(b"$10\r\n012")
    server.shutdown(socket.SHUT_WR)
    with pytest.raises(RedisUnavailable, match="closed"):
        reader.reply()


def test_no_server_is_unavailable_and_the_next_call_tries_again() -> None:
    connection = RespConnection(
        Address(("127.0.0.1", free_port()), None, None, 0), timeout_s=1, connect_timeout_s=1
    )
    for _ in range(2):
        with pytest.raises(RedisUnavailable, match="ConnectionRefusedError"):
            connection.execute([["PING"]])
