"""Notifications end to end: a real API process, a real HTTP receiver and a real SMTP server
on 127.0.0.1. Webhooks are signed, retried with backoff, and delivered at least once even
when the API is killed between a job's end and the delivery."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from kubetask import keys
from kubetask.controller.notify import verify
from kubetask.controller.redis_server import free_port
from tests.servers import ApiServer

SECRET = "test-secret"
FAST = {
    "webhook_secret": SECRET,
    "notify_poll_s": 0.05,
    "notify_backoff_s": 0.1,
    "notify_backoff_cap_s": 0.4,
    "notify_max_attempts": 100,
    "webhook_timeout_s": 2,
    "webhook_allow_private": True,  # the receivers here listen on 127.0.0.1
}


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def signed(self) -> bool:
        return verify(
            self.body,
            secret=SECRET,
            timestamp=int(self.headers["X-Kubetask-Timestamp"]),
            signature=self.headers["X-Kubetask-Signature"],
        )


@dataclass
class Receiver:
    """A webhook receiver recording every POST; answers 500 to the first `fail_first`."""

    port: int = field(default_factory=free_port)
    fail_first: int = 0
    calls: int = 0
    received: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                if receiver.calls <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.received.append(Delivery(dict(self.headers.items()), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def wait(self, count: int = 1, timeout_s: float = 20) -> list[Delivery]:
        until(lambda: len(self.received) >= count, timeout_s, self.received)
        return self.received


def until(ready: Callable[[], bool], timeout_s: float, value: Any) -> Any:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; have {value!r}")
        time.sleep(0.05)
    return value


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


class SmtpServer(socketserver.ThreadingTCPServer):
    """Just enough SMTP to take messages: EHLO, MAIL, RCPT, DATA, QUIT."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []
        super().__init__(("127.0.0.1", 0), _SmtpHandler)


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        sender, recipients = "", []
        self.reply("220 test ESMTP")
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 test")
            elif verb == "MAIL":
                sender = command.split(":", 1)[1].strip()
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip())
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.server.messages.append((sender, recipients, data.decode()))
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            if verb in ("MAIL", "RCPT", "DATA", "RSET", "NOOP"):
                self.reply("250 ok")


def test_signed_webhooks_for_success_and_failure(fresh_api: ApiServer, receiver: Receiver) -> None:
    fresh_api.restart_with(**FAST, public_url="https://kt.example")
    ok = fresh_api.submit("noop", {"steps": 1, "step_s": 0}, notify={"webhook": receiver.url})
    bad = fresh_api.submit("noop", {"fail": "memory"}, notify={"webhook": receiver.url})
    failed = fresh_api.wait(bad)
    assert fresh_api.wait(ok)["state"] == "succeeded"
    deliveries = {d.json["job_id"]: d for d in receiver.wait(2)}
    assert all(d.signed() for d in deliveries.values())
    success = deliveries[ok].json
    assert success["state"] == "succeeded"
    assert success["kind"] == "noop"
    assert success["links"]["api"] == f"https://kt.example/v1/jobs/{ok}"
    assert success["links"]["dashboard"] == f"https://kt.example/#/jobs/{ok}"
    assert deliveries[ok].headers["X-Kubetask-Idempotency-Id"] == success["idempotency_id"]
    failure = deliveries[bad].json
    assert failure["state"] == "failed"
    assert failure["error"]["suggestion"]
    assert failure["error"]["suggestion"] == failed["error"]["suggestion"]


def test_retried_after_server_errors(fresh_api: ApiServer, receiver: Receiver) -> None:
    """Retried, and logged by the webhook's origin only: its user, password, path and query
    (where a webhook's secret usually is) are in no line of the server's log."""
    receiver.fail_first = 3
    secret_url = receiver.url.replace("://", "://user:pw-XYZ@") + "?token=tok-XYZ"
    fresh_api.restart_with(**FAST, webhooks=json.dumps([secret_url]))
    job_id = fresh_api.submit("noop", {"steps": 1, "step_s": 0})
    [delivery] = receiver.wait(1)
    assert receiver.calls == 4
    assert delivery.json["job_id"] == job_id
    assert delivery.signed()
    with redis.Redis.from_url(fresh_api.redis_url) as client:
        until(lambda: client.zcard(keys.OUTBOX) == 0, 5, "outbox not empty")
    log = (fresh_api.data_dir / "api.log").read_text()
    assert f"to http://127.0.0.1:{receiver.port} failed (attempt 3: HTTP 500)" in log
    assert "XYZ" not in log
    assert "/hook" not in log


def test_dead_lettered_after_bounded_attempts(fresh_api: ApiServer) -> None:
    receiver = Receiver(fail_first=1000).start()
    try:
        fresh_api.restart_with(**{**FAST, "notify_max_attempts": 3})
        job_id = fresh_api.submit(
            "noop", {"steps": 1, "step_s": 0}, notify={"webhook": receiver.url}
        )
        fresh_api.wait(job_id)
        with redis.Redis.from_url(fresh_api.redis_url) as client:
            until(lambda: client.llen(keys.OUTBOX_DEAD) == 1, 10, "nothing dead-lettered")
            dead = json.loads(client.lindex(keys.OUTBOX_DEAD, 0) or "{}")
            assert dead["attempts"] == 3
            assert client.zcard(keys.OUTBOX) == 0
        assert receiver.calls == 3
    finally:
        receiver.stop()


def test_a_webhook_to_an_internal_address_is_refused_not_sent(
    fresh_api: ApiServer, receiver: Receiver
) -> None:
    """By default a job's webhook may not reach loopback, link-local (a cloud's metadata
    service) or private addresses: checked on the resolved address at send time, and
    dead-lettered at once, never retried."""
    fresh_api.restart_with(**{**FAST, "webhook_allow_private": False})
    named = receiver.url.replace("127.0.0.1", "localhost")  # a name is resolved, then checked
    ids = [
        fresh_api.submit("noop", {"steps": 1, "step_s": 0}, notify={"webhook": target})
        for target in (receiver.url, named, "http://169.254.169.254/latest/meta-data/")
    ]
    for job_id in ids:
        fresh_api.wait(job_id)
    with redis.Redis.from_url(fresh_api.redis_url) as client:
        until(lambda: client.llen(keys.OUTBOX_DEAD) == 3, 10, "not all refused")
        dead = [json.loads(item) for item in client.lrange(keys.OUTBOX_DEAD, 0, -1)]
    assert [d["attempts"] for d in dead] == [1, 1, 1]
    time.sleep(0.3)
    assert receiver.calls == 0
    assert "resolves to a loopback address" in fresh_api.log_tail()
    assert "resolves to a link-local address" in fresh_api.log_tail()


def test_at_least_once_across_a_controller_crash(fresh_api: ApiServer) -> None:
    receiver = Receiver()  # not listening yet: connection refused
    fresh_api.restart_with(**FAST)
    job_id = fresh_api.submit("noop", {"steps": 1, "step_s": 0}, notify={"webhook": receiver.url})
    fresh_api.wait(job_id)
    fresh_api.kill()
    with redis.Redis.from_url(fresh_api.redis_url) as client:
        assert client.zcard(keys.OUTBOX) == 1  # durable: written with the terminal status
    receiver.start()
    try:
        fresh_api.start()
        deliveries = receiver.wait(1)
        time.sleep(0.5)  # any duplicate would show up by now
        assert {d.json["idempotency_id"] for d in receiver.received} == {
            deliveries[0].json["idempotency_id"]
        }
        assert deliveries[0].json["job_id"] == job_id
        assert deliveries[0].signed()
    finally:
        receiver.stop()


def test_email_through_smtp(fresh_api: ApiServer) -> None:
    smtp = SmtpServer()
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    try:
        fresh_api.restart_with(
            **FAST,
            smtp_host="127.0.0.1",
            smtp_port=smtp.server_address[1],
            smtp_from="kubetask@test",
            smtp_to=json.dumps(["ops@test"]),
        )
        job_id = fresh_api.wait(fresh_api.submit("noop", {"fail": "memory"}))["id"]
        until(lambda: len(smtp.messages) >= 1, 20, smtp.messages)
        sender, recipients, text = smtp.messages[0]
        assert "kubetask@test" in sender
        assert recipients == ["<ops@test>"]
        assert job_id in text
        assert "failed" in text
        assert "Suggestion:" in text
    finally:
        smtp.shutdown()
        smtp.server_close()
