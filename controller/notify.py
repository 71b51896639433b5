"""What to tell people when a job ends, as pure functions over plain data: the webhook payload,
its HMAC-SHA256 signature, the email text, the retry schedule, and the outbox entries a
terminal status produces. Sending them is controller/outbox.py's job."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, JsonValue

from kubetask.controller.records import JobRecord, JobStatus

SIGNATURE_HEADER = "X-Kubetask-Signature"
TIMESTAMP_HEADER = "X-Kubetask-Timestamp"
IDEMPOTENCY_HEADER = "X-Kubetask-Idempotency-Id"


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


@dataclass(frozen=True)
class NotifySettings:
    """Where notifications go besides each job's own webhook, and how links are built."""

    public_url: str = "http://127.0.0.1:8000"
    webhooks: Sequence[str] = ()
    email_to: Sequence[str] = ()


class OutboxEntry(BaseModel):
    """One message waiting to be delivered; `body` is the exact JSON payload sent."""

    model_config = ConfigDict(frozen=True)

    id: str
    channel: Channel
    target: str
    body: str
    attempts: int = 0


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (1-based): base * factor**(n-1), capped; give up after
    `max_attempts` deliveries in all."""

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    max_attempts: int = 8

    def delay_s(self, attempt: int) -> float:
        return float(min(self.cap_s, self.base_s * self.factor ** max(attempt - 1, 0)))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def canonical_url(url: str) -> str:
    """A webhook as it is sent, so one URL written two ways is one (RFC 3986 6.2.2): no
    fragment (never sent), no empty query, unreserved characters unescaped and the other
    escapes in upper case. Scheme, host and default port came canonical from the model."""
    parts = urlsplit(url)

    def unescaped(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    path, query = (_ESCAPE.sub(unescaped, part) for part in (parts.path, parts.query))
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def idempotency_id(job_id: str, channel: Channel, target: str) -> str:
    """Stable per (job, destination): the same on every retry and after any restart."""
    digest = hashlib.sha256(f"{channel}\n{target}".encode()).hexdigest()[:16]
    return f"{job_id}-{channel}-{digest}"


def payload(
    record: JobRecord, status: JobStatus, *, public_url: str, idempotency: str
) -> dict[str, JsonValue]:
    """The JSON a receiver gets for a job that reached a terminal state."""
    base = public_url.rstrip("/")
    duration = None
    if status.started_at is not None and status.finished_at is not None:
        duration = round((status.finished_at - status.started_at).total_seconds(), 3)
    error: JsonValue = None
    if status.error is not None:
        error = {
            "type": status.error.type,
            "message": status.error.message,
            "suggestion": status.error.suggestion,
            "exit_code": status.error.exit_code,
        }
    return {
        "idempotency_id": idempotency,
        "job_id": record.id,
        "kind": record.request.kind,
        "name": record.request.name,
        "state": status.state.value,
        "reason": status.reason,
        "message": status.message,
        "created_at": record.created_at.isoformat(),
        "finished_at": status.finished_at.isoformat() if status.finished_at else None,
        "duration_s": duration,
        "result": status.result,
        "error": error,
        "links": {"api": f"{base}/v1/jobs/{record.id}", "dashboard": f"{base}/#/jobs/{record.id}"},
    }


def entries_for(
    record: JobRecord, status: JobStatus, settings: NotifySettings
) -> list[OutboxEntry]:
    """The messages a status produces: none unless it is terminal; one per webhook (the
    job's own and the global ones, each once) and one per email recipient."""
    if not status.state.terminal:
        return []
    targets: list[tuple[Channel, str]] = []
    own = record.request.notify.webhook if record.request.notify else None
    for url in [*([str(own)] if own else []), *settings.webhooks]:
        if (Channel.WEBHOOK, canonical_url(url)) not in targets:
            targets.append((Channel.WEBHOOK, canonical_url(url)))
    targets += [(Channel.EMAIL, to) for to in settings.email_to]
    found = []
    for channel, target in targets:
        ident = idempotency_id(record.id, channel, target)
        body = payload(record, status, public_url=settings.public_url, idempotency=ident)
        found.append(
            OutboxEntry(
                id=ident, channel=channel, target=target, body=json.dumps(body, sort_keys=True)
            )
        )
    return found


def sign(body: bytes, *, secret: str, timestamp: int) -> str:
    """`sha256=<hex>` over `{timestamp}.{body}`; a receiver recomputes it with the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


VERIFY_TOLERANCE_S = 300  # a signed message older (or newer) than this is a replay


def verify(
    body: bytes,
    *,
    secret: str,
    timestamp: int | str | bytes | None,
    signature: str | bytes | None,
    tolerance_s: float | None = VERIFY_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """A receiver's check: the signature is the secret's over this body and timestamp, and
    the timestamp within `tolerance_s` of `now` (the clock's; None: any), so that a message
    recorded once cannot be sent again later as new (each try is signed anew). The headers
    may be passed as they arrive (strings, or None when missing): anything malformed is
    False, never an error."""
    try:
        at_signing = int(timestamp)  # type: ignore[arg-type]  # None: TypeError
    except (TypeError, ValueError):
        return False
    if isinstance(signature, bytes):  # a raw header, as ASGI gives it
        signature = signature.decode("latin-1")
    if not isinstance(signature, str) or not signature.isascii():
        return False
    at = time.time() if now is None else now
    if tolerance_s is not None and abs(at - at_signing) > tolerance_s:
        return False
    return hmac.compare_digest(sign(body, secret=secret, timestamp=at_signing), signature)


def webhook_headers(entry: OutboxEntry, *, secret: str | None, timestamp: int) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: entry.id,
        TIMESTAMP_HEADER: str(timestamp),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(entry.body.encode(), secret=secret, timestamp=timestamp)
    return headers


def email_text(body: Mapping[str, JsonValue]) -> tuple[str, str]:
    """Subject and plain-text body of the email for a payload."""
    name = body.get("name") or body.get("job_id")
    subject = f"[kubetask] {body.get('kind')} job {name} {body.get('state')}"
    lines = [
        f"Job {body.get('job_id')} ({body.get('kind')}) ended: {body.get('state')}.",
        f"Reason: {body.get('reason')}",
    ]
    if body.get("message"):
        lines.append(f"Message: {body.get('message')}")
    if body.get("duration_s") is not None:
        lines.append(f"Duration: {body.get('duration_s')} s")
    error = body.get("error")
    if isinstance(error, dict):
        lines.append(f"Error: {error.get('type')}: {error.get('message')}")
        if error.get("suggestion"):
            lines.append(f"Suggestion: {error.get('suggestion')}")
    if body.get("result") is not None:
        lines.append(f"Result: {json.dumps(body.get('result'), sort_keys=True)}")
    links = body.get("links")
    if isinstance(links, dict):
        lines += [f"API: {links.get('api')}", f"Dashboard: {links.get('dashboard')}"]
    lines.append(f"Idempotency id: {body.get('idempotency_id')}")
    return subject, "\n".join(lines) + "\n"
