"""The notification outbox in Redis and the loop that empties it.

`RedisStore.save_status` adds entries in the same script that writes a terminal status; this
loop claims the due ones (pushing their due time out by a lease, so a crash mid-delivery only
delays them), sends each (webhook: a signed POST; email: SMTP in a thread), and removes it on
success or reschedules it with backoff, until it runs out of attempts and is dead-lettered.
Each attempt ends within a bound, shorter than the lease, however slowly a receiver answers
(the client's timeouts bound each wait, not the whole: a server dripping a byte at a time
would hold one for ever, and with it every later message), and a webhook's answer is read
no further than its status. Delivery is at least once: receivers drop duplicates by the
idempotency id. Nothing here ever touches a job's state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

import httpx
import redis.asyncio as aioredis

from kubetask import keys
from kubetask.controller.egress import RefusedTarget, resolve_public
from kubetask.controller.notify import Backoff, Channel, OutboxEntry, email_text, webhook_headers
from kubetask.controller.redaction import url_origin

log = logging.getLogger("kubetask.outbox")

# KEYS: outbox, entries. ARGV: now, lease end, batch size. Returns the claimed entries.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local claimed = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(claimed, entry)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
"""


def _why(exc: Exception) -> str:
    """What failed, for a log line (a timeout's message is often empty: its type then)."""
    return str(exc) or type(exc).__name__


def _shown(entry: OutboxEntry) -> str:
    """Where a message goes, as a log may say it: a webhook's origin (its path and query
    are often its secret), an email address as it is."""
    return url_origin(entry.target) if entry.channel is Channel.WEBHOOK else entry.target


class DeliveryError(Exception):
    """A message was not accepted; it will be retried, not before `retry_after_s` when the
    receiver said when (a 429 or 503 with `Retry-After` in seconds)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after(response: httpx.Response) -> float | None:
    """A 429's or 503's `Retry-After` in seconds (an HTTP date is not read); None else."""
    if response.status_code not in (429, 503):
        return None
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "kubetask@localhost"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout_s: float = 10.0


def _cut(client: smtplib.SMTP) -> None:
    """End a client's connection from another thread: a read blocked on it returns."""
    sock = client.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def send_email(
    smtp: SmtpSettings, *, to: str, subject: str, text: str, message_id: str, within_s: float
) -> None:
    """Blocking: one message through the SMTP server (run it in a thread), its connection
    cut if it is not sent within `within_s` (longer than a connect's own timeout)."""
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = to
    message["Subject"] = subject
    message["X-Kubetask-Idempotency-Id"] = message_id
    message.set_content(text)
    client = smtplib.SMTP(timeout=smtp.timeout_s)  # connected below, within the deadline
    deadline = threading.Timer(within_s, _cut, args=(client,))
    deadline.start()
    try:
        client.connect(smtp.host, smtp.port)
        with client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        if deadline.finished.is_set():  # it went off: the cut is what failed
            raise DeliveryError(f"no complete answer within {within_s:g} s") from exc
        raise
    finally:
        deadline.cancel()
        client.close()


@dataclass
class Outbox:
    redis: aioredis.Redis
    secret: str | None = field(default=None, repr=False)
    backoff: Backoff = field(default_factory=Backoff)
    smtp: SmtpSettings | None = None
    poll_s: float = 1.0
    timeout_s: float = 5.0
    # How long a claimed entry is hidden from other passes: longer than an attempt takes
    # (each httpx phase may take timeout_s), short enough that an entry whose sender died
    # mid-send (a crash) is soon tried again. None: from the timeouts.
    lease_s: float | None = None
    batch: int = 50
    dead_letters: int = 1000  # the newest kept in kubetask:outbox:dead; older ones dropped
    allow_private: bool = False  # targets resolving to loopback/link-local/private addresses
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._claim = self.redis.register_script(_CLAIM)

    def attempt_s(self, channel: Channel = Channel.WEBHOOK) -> float:
        """The longest one attempt may take: connect, write, read and the pool may each
        take the channel's timeout; a receiver slower in all is cut there (and retried)."""
        if channel is Channel.EMAIL and self.smtp is not None:
            return 4 * self.smtp.timeout_s
        return 4 * self.timeout_s

    def claim_lease_s(self) -> float:
        if self.lease_s is not None:
            return self.lease_s
        longest = max(self.attempt_s(Channel.WEBHOOK), self.attempt_s(Channel.EMAIL))
        return longest + 1  # an attempt ends before another pass may take its entry

    async def run(self) -> None:
        """Deliver due entries forever, each attempt on its own (at most `batch` at once): a
        slow receiver holds up its own messages only, never a later one to anyone else.
        Errors are logged, never raised; on the way out, the attempts under way are
        cancelled (their entries are tried again once their claims lapse)."""
        under_way: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            try:
                while True:
                    room = self.batch - len(under_way)
                    try:
                        entries = await self._claim_due(room) if room > 0 else []
                    except Exception:
                        log.exception("outbox pass failed; trying again")
                        entries = []
                    for entry in entries:
                        attempt = asyncio.create_task(self._attempt_logged(http, entry))
                        under_way.add(attempt)
                        attempt.add_done_callback(under_way.discard)
                    if not entries:
                        await asyncio.sleep(self.poll_s)
            finally:
                for attempt in under_way:
                    attempt.cancel()
                await asyncio.gather(*under_way, return_exceptions=True)

    async def deliver_due(self, http: httpx.AsyncClient) -> int:
        """One pass: claim what is due and try each, to the end; the number tried."""
        entries = await self._claim_due(self.batch)
        await asyncio.gather(*(self._attempt(http, entry) for entry in entries))
        return len(entries)

    async def _claim_due(self, most: int) -> list[OutboxEntry]:
        now = self.clock()
        raw: Sequence[str | bytes] = await self._claim(
            keys=[keys.OUTBOX, keys.OUTBOX_ENTRIES],
            args=[now, now + self.claim_lease_s(), most],
        )
        return [OutboxEntry.model_validate_json(item) for item in raw]

    async def _attempt_logged(self, http: httpx.AsyncClient, entry: OutboxEntry) -> None:
        try:
            await self._attempt(http, entry)
        except Exception:  # the store failed as the attempt was recorded: its claim lapses
            log.exception("notification %s: recording the attempt failed", entry.id)

    async def _attempt(self, http: httpx.AsyncClient, entry: OutboxEntry) -> None:
        bound = self.attempt_s(entry.channel)
        try:
            try:
                async with asyncio.timeout(bound):
                    await self._send(http, entry)
            except TimeoutError as exc:
                raise DeliveryError(f"no complete answer within {bound:g} s") from exc
        except RefusedTarget as exc:  # no retry can change where it points
            await self._failed(entry, exc, final=True)
            return
        except Exception as exc:
            await self._failed(entry, exc)
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.OUTBOX, entry.id)
            pipe.hdel(keys.OUTBOX_ENTRIES, entry.id)
            await pipe.execute()
        log.info("notification %s delivered to %s", entry.id, _shown(entry))

    async def _send(self, http: httpx.AsyncClient, entry: OutboxEntry) -> None:
        if entry.channel is Channel.WEBHOOK:
            headers = webhook_headers(entry, secret=self.secret, timestamp=int(self.clock()))
            url, extensions = httpx.URL(entry.target), {}
            if not self.allow_private:  # connect to the address checked, not a new lookup
                default_port = 443 if url.scheme == "https" else 80
                pinned = await resolve_public(url.host, url.port or default_port)
                headers["Host"] = url.netloc.decode("ascii")
                extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
                url = url.copy_with(host=pinned.address)
            async with http.stream(
                "POST", url, content=entry.body, headers=headers, extensions=extensions
            ) as response:  # its status is the answer: the body is never read
                if not response.is_success:
                    raise DeliveryError(
                        f"HTTP {response.status_code}", retry_after_s=retry_after(response)
                    )
            return
        if self.smtp is None:
            raise DeliveryError("no SMTP server configured")
        if not self.allow_private:
            await resolve_public(self.smtp.host, self.smtp.port)
        subject, text = email_text(json.loads(entry.body))
        await asyncio.to_thread(
            send_email,
            self.smtp,
            to=entry.target,
            subject=subject,
            text=text,
            message_id=entry.id,
            within_s=self.attempt_s(Channel.EMAIL),
        )

    async def _failed(self, entry: OutboxEntry, exc: Exception, *, final: bool = False) -> None:
        attempts = entry.attempts + 1
        failed = entry.model_copy(update={"attempts": attempts})
        if final or self.backoff.exhausted(attempts):
            log.error(
                "notification %s to %s dead-lettered after %d attempts: %s",
                entry.id,
                _shown(entry),
                attempts,
                _why(exc),
            )
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(keys.OUTBOX_DEAD, failed.model_dump_json())
                pipe.ltrim(keys.OUTBOX_DEAD, -self.dead_letters, -1)
                pipe.zrem(keys.OUTBOX, entry.id)
                pipe.hdel(keys.OUTBOX_ENTRIES, entry.id)
                await pipe.execute()
            return
        delay = self.backoff.delay_s(attempts)
        asked = exc.retry_after_s if isinstance(exc, DeliveryError) else None
        if asked is not None:  # the receiver's word, within the backoff's cap
            delay = min(max(delay, asked), self.backoff.cap_s)
        log.warning(
            "notification %s to %s failed (attempt %d: %s); retrying in %.1f s",
            entry.id,
            _shown(entry),
            attempts,
            _why(exc),
            delay,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.OUTBOX_ENTRIES, entry.id, failed.model_dump_json())
            pipe.zadd(keys.OUTBOX, {entry.id: self.clock() + delay})
            await pipe.execute()
