"""The outbox against receivers that misbehave, real sockets on 127.0.0.1 and a real Redis:
one that drips its status line a byte at a time (each read within the timeout, the whole not)
is cut at the attempt's bound and retried, and holds no other message back; one that
answers with an endless body is taken at its status, the body never read; an SMTP server
dripping its greeting is cut at the same bound, its thread ended; one that asks to be left
alone for a while (429 with Retry-After) is."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis.asyncio as aioredis
from redis import Redis

from kubetask import keys
from kubetask.controller.notify import Channel, OutboxEntry
from kubetask.controller.outbox import Outbox, SmtpSettings
from tests.servers import own_database

TIMEOUT_S = 0.5  # each wait's limit: an attempt's bound is 4 times it
DRIP_S = 0.2  # a dripping server's pause between two bytes, within the timeout


class Server:
    """A TCP server on 127.0.0.1 that answers every connection with `answer(sock)` in a
    thread of its own; it counts the bytes it got written and sees connections end."""

    def __init__(self, answer: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.answer = answer
        self.sent = 0
        self.ended = threading.Event()  # a connection it served was closed by the client
        self.answered = threading.Event()  # it answered a request whole
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.answer != "smtp-drip":
                sock.recv(65536)  # the request (small: one read takes it)
            if self.answer == "http-ok":
                sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                self.answered.set()
            elif self.answer == "http-busy":
                sock.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\n\r\n")
            elif self.answer == "http-drip":  # its status line a byte at a time
                for byte in b"HTTP/1.1 204 No Content\r\n\r\n":
                    sock.sendall(bytes([byte]))
                    time.sleep(DRIP_S)
            elif self.answer == "http-endless":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n")
                while not self._stop.is_set():
                    sock.sendall(b"x" * 65536)
                    self.sent += 65536
            elif self.answer == "smtp-drip":
                self._drip(sock, b"2")
        except OSError:
            self.ended.set()
        finally:
            sock.close()

    def _drip(self, sock: socket.socket, piece: bytes) -> None:
        while not self._stop.is_set():
            sock.sendall(piece)
            time.sleep(DRIP_S)


@contextmanager
def server(answer: str) -> Iterator[Server]:
    made = Server(answer)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def url(redis_url: str) -> str:
    return own_database(redis_url)


def put(client: Redis, *entries: OutboxEntry) -> None:
    for entry in entries:
        client.hset(keys.OUTBOX_ENTRIES, entry.id, entry.model_dump_json())
        client.zadd(keys.OUTBOX, {entry.id: 0})


def webhook(name: str, port: int) -> OutboxEntry:
    target = f"http://127.0.0.1:{port}/{name}"
    return OutboxEntry(id=name, channel=Channel.WEBHOOK, target=target, body="{}")


async def one_pass(url: str, **settings: object) -> float:
    """One outbox pass over what is due; how long it took."""
    async with aioredis.Redis.from_url(url) as client:
        outbox = Outbox(client, timeout_s=TIMEOUT_S, allow_private=True, **settings)  # type: ignore[arg-type]
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            await outbox.deliver_due(http)
        return time.monotonic() - started


def attempts(client: Redis, entry_id: str) -> int | None:
    raw = client.hget(keys.OUTBOX_ENTRIES, entry_id)
    return None if raw is None else OutboxEntry.model_validate_json(raw).attempts


def test_a_receiver_dripping_its_answer_is_cut_at_the_bound_and_holds_nothing_back(
    url: str,
) -> None:
    with server("http-drip") as slow, server("http-ok") as fine, Redis.from_url(url) as client:
        put(client, webhook("slow", slow.port), webhook("fine", fine.port))
        took = asyncio.run(one_pass(url))
        bound = 4 * TIMEOUT_S
        assert bound <= took < bound + 2  # without the bound: for as long as it drips
        assert attempts(client, "fine") is None  # delivered (the pass ran them side by side)
        assert attempts(client, "slow") == 1  # cut, to be tried again
        assert client.zscore(keys.OUTBOX, "slow") is not None


def test_an_endless_body_is_taken_at_its_status_never_read(url: str) -> None:
    with server("http-endless") as endless, Redis.from_url(url) as client:
        put(client, webhook("endless", endless.port))
        took = asyncio.run(one_pass(url))
        assert took < 4 * TIMEOUT_S
        assert attempts(client, "endless") is None  # a 200: delivered
        assert endless.ended.wait(5)  # the connection was closed, not read on
        assert endless.sent < 64 << 20  # what the socket buffers held, not the body


def test_an_smtp_server_dripping_its_greeting_is_cut_at_the_bound(url: str) -> None:
    with server("smtp-drip") as slow, Redis.from_url(url) as client:
        smtp = SmtpSettings(host="127.0.0.1", port=slow.port, timeout_s=TIMEOUT_S)
        entry = OutboxEntry(id="mail", channel=Channel.EMAIL, target="ops@test", body="{}")
        put(client, entry)
        threads = threading.active_count()
        took = asyncio.run(one_pass(url, smtp=smtp))
        assert 4 * TIMEOUT_S <= took < 4 * TIMEOUT_S + 2
        assert attempts(client, "mail") == 1
        assert slow.ended.wait(5)  # its connection cut: the sending thread is not left behind
        deadline = time.monotonic() + 5
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads


def test_a_receiver_asking_for_time_gets_it(url: str) -> None:
    with server("http-busy") as busy, Redis.from_url(url) as client:
        put(client, webhook("busy", busy.port))
        asyncio.run(one_pass(url))
        due = client.zscore(keys.OUTBOX, "busy")
        assert due is not None
        assert 28 < due - time.time() <= 30  # Retry-After: 30, not the 1 s backoff
        assert attempts(client, "busy") == 1


def test_a_slow_receiver_holds_up_no_later_message_to_anyone_else(url: str) -> None:
    """The outbox's loop: an attempt that hangs (until its bound) holds its own message
    only; one that falls due meanwhile goes out at once."""

    async def scenario(client: Redis, slow: Server, fine: Server) -> float:
        async with aioredis.Redis.from_url(url) as store:
            outbox = Outbox(store, timeout_s=TIMEOUT_S, allow_private=True, poll_s=0.05)
            running = asyncio.create_task(outbox.run())
            put(client, webhook("slow", slow.port))
            await asyncio.sleep(0.3)  # its attempt under way, dripping
            put(client, webhook("fine", fine.port))
            started = time.monotonic()
            assert await asyncio.to_thread(fine.answered.wait, 10)
            took = time.monotonic() - started
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            return took

    with server("http-drip") as slow, server("http-ok") as fine, Redis.from_url(url) as client:
        took = asyncio.run(scenario(client, slow, fine))
        assert took < 4 * TIMEOUT_S / 2  # not after the slow one's cut (2 s)
        assert client.zscore(keys.OUTBOX, "slow") is not None  # claimed, to be tried again


def test_each_channel_is_cut_at_its_own_bound() -> None:
    outbox = Outbox(aioredis.Redis(), timeout_s=5, smtp=SmtpSettings(host="mail", timeout_s=10))
    assert (outbox.attempt_s(Channel.WEBHOOK), outbox.attempt_s(Channel.EMAIL)) == (20, 40)
    assert outbox.claim_lease_s() == 41  # a claim outlasts the longest attempt
