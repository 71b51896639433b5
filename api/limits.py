"""What anyone may consume (OWASP API4): request bodies over the configured size are refused
with 413 before they are read whole; per-job caps on `timeout_s`, cpu, memory and gpu (422
naming the field); and per-tenant caps on submissions per minute and open event streams
(429 with Retry-After), counted in Redis so that they hold across API replicas. The cap on
a tenant's unfinished jobs is kept by the store, in the script that creates the job.

The arithmetic (quantities, windows, caps) is pure; `TenantLimits` does the Redis part.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import anyio
import redis.asyncio as aioredis
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubetask import keys
from kubetask.api.problems import PROBLEM
from kubetask.controller.errors import FieldError, InvalidRequest
from kubetask.models import JobRequest

WINDOW_S = 60  # the submissions window
# suggestions: how soon an unfinished job may have ended, a stored one been purged
CAP_RETRY_AFTER_S = {"active": 15, "stored": 60}
STREAM_RETRY_AFTER_S = 5
STREAM_LEASE_S = 60.0  # an open stream's slot lapses unless renewed (a crashed replica's)

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity ('500m', '2', '1.5Gi', '1e3') as a number (cores, bytes)."""
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix]
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    return value


class LimitExceeded(HTTPException):
    """A per-tenant cap was reached: 429 with Retry-After (seconds)."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(429, detail, headers={"Retry-After": str(max(1, retry_after_s))})
        self.retry_after_s = max(1, retry_after_s)


@dataclass(frozen=True)
class JobCaps:
    """The most one job may ask for."""

    max_timeout_s: int | None  # None: no cap (and no default deadline)
    max_cpu: str
    max_memory: str
    max_gpu: int


def apply_caps(request: JobRequest, caps: JobCaps) -> JobRequest:
    """The request within the caps, or InvalidRequest naming each field over them; with a
    cap on `timeout_s`, a job without one gets the cap as its deadline (none runs unbounded)."""
    errors: list[FieldError] = []
    most_s = caps.max_timeout_s
    if most_s is not None and request.timeout_s is not None and request.timeout_s > most_s:
        errors.append(_over(("timeout_s",), most_s))
    resources = request.resources
    for field, asked, most in (
        ("cpu", resources.cpu, caps.max_cpu),
        ("memory", resources.memory, caps.max_memory),
    ):
        if asked is not None and parse_quantity(asked) > parse_quantity(most):
            errors.append(_over(("resources", field), most))
    if resources.gpu > caps.max_gpu:
        errors.append(_over(("resources", "gpu"), caps.max_gpu))
    if errors:
        raise InvalidRequest(errors)
    if request.timeout_s is None and most_s is not None:
        return request.model_copy(update={"timeout_s": most_s})
    return request


def _over(loc: tuple[str, ...], most: object) -> FieldError:
    return FieldError(loc, f"over this server's limit of {most}", "less_than_equal")


def submit_window(now: float) -> tuple[int, int]:
    """(the fixed window `now` falls in, whole seconds until it ends)."""
    window = int(now // WINDOW_S)
    return window, max(1, math.ceil((window + 1) * WINDOW_S - now))


# KEYS: the window's counter. ARGV: its expiry. The count including this submission.
_COUNT_SUBMIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# KEYS: the tenant's streams. ARGV: now, lease end, the cap, this stream's id.
# 1 when the stream got a slot, else 0. Lapsed leases (a replica that died) are dropped.
_OPEN_STREAM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2] - ARGV[1]) + 1)
return 1
"""


class StreamLease:
    """One open stream's slot: `renew` it while the stream lasts (cheap when recent),
    `close` it at the end. A lease never renewed lapses after STREAM_LEASE_S."""

    def __init__(self, limits: TenantLimits, key: str, stream_id: str) -> None:
        self._limits = limits
        self._key = key
        self.id = stream_id
        self._renewed = limits.clock()

    async def renew(self) -> None:
        now = self._limits.clock()
        if now - self._renewed < STREAM_LEASE_S / 3:
            return
        self._renewed = now
        async with self._limits.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._key, {self.id: now + STREAM_LEASE_S}, xx=True)
            # the set lives while any of its streams does (it outlived none but the newest)
            pipe.expire(self._key, math.ceil(STREAM_LEASE_S) + 1)
            await pipe.execute()

    async def close(self) -> None:
        """Give the slot back, even from a stream being cancelled (its client left)."""
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._limits.redis.zrem(self._key, self.id)  # else it lapses on its own


class TenantLimits:
    """Per-tenant caps kept in Redis: submissions per minute, open event streams; and this
    process's uploads at once (`uploads`)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        submits_per_minute: int,
        streams: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self._submits_per_minute = submits_per_minute
        self._streams = streams
        self._count_submit = redis.register_script(_COUNT_SUBMIT)
        self._open_stream = redis.register_script(_OPEN_STREAM)
        self.uploads = UploadGate()

    async def admit_submit(self, tenant: str) -> None:
        """Count one submission; LimitExceeded past the tenant's rate. The service calls it
        once it found the submission valid (`JobService.submit`'s `admit`): only valid ones
        count, and an invalid one never does, not even for a moment."""
        window, retry_after = submit_window(self.clock())
        key = keys.tenant_submits(tenant, window)
        count = await self._count_submit(keys=[key], args=[WINDOW_S * 2])
        if int(count) > self._submits_per_minute:
            raise LimitExceeded(
                f"tenant {tenant!r} submitted more than {self._submits_per_minute} jobs "
                "this minute",
                retry_after_s=retry_after,
            )

    async def open_stream(self, tenant: str) -> StreamLease:
        """A slot for one event stream (close it when the stream ends); LimitExceeded when
        the tenant has as many open as allowed."""
        key, stream_id = keys.tenant_streams(tenant), secrets.token_hex(8)
        now = self.clock()
        opened = await self._open_stream(
            keys=[key], args=[now, now + STREAM_LEASE_S, self._streams, stream_id]
        )
        if not int(opened):
            raise LimitExceeded(
                f"tenant {tenant!r} has {self._streams} event streams open",
                retry_after_s=STREAM_RETRY_AFTER_S,
            )
        return StreamLease(self, key, stream_id)


UPLOAD_THREADS = 16  # uploads at once in one process: each holds a thread while its body comes
UPLOADS_PER_TENANT = 4  # of those, one tenant's
UPLOAD_RETRY_AFTER_S = 5


class UploadGate:
    """Uploads at once, in this process: each holds a worker thread while its body comes,
    from threads of their own (UPLOAD_THREADS: slow ones never starve the other routes'),
    and a tenant at most UPLOADS_PER_TENANT of them (more: 429), so that one tenant's slow
    uploads never hold up everyone's."""

    def __init__(
        self, *, threads: int = UPLOAD_THREADS, per_tenant: int = UPLOADS_PER_TENANT
    ) -> None:
        self._threads = threads
        self._per_tenant = per_tenant
        self._limiter: anyio.CapacityLimiter | None = None  # made on the event loop
        self._active: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def admit(self, tenant: str) -> AsyncIterator[anyio.CapacityLimiter]:
        """The threads one upload of `tenant` runs on; LimitExceeded past its share."""
        if self._active.get(tenant, 0) >= self._per_tenant:
            raise LimitExceeded(
                f"tenant {tenant!r} has {self._per_tenant} uploads under way",
                retry_after_s=UPLOAD_RETRY_AFTER_S,
            )
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._threads)
        self._active[tenant] = self._active.get(tenant, 0) + 1
        try:
            yield self._limiter
        finally:
            self._active[tenant] -= 1
            if not self._active[tenant]:
                del self._active[tenant]


class BodyTooLarge(HTTPException):
    """Raised while a body is read: the route's handler answers 413 (FastAPI lets an
    HTTPException out of its body reading, where any other error became a 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


class BodySizeLimit:
    """Pure ASGI middleware: checks Content-Length, and counts streamed bodies too.
    `exempt`: the requests that keep a limit of their own (uploads)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, exempt: Callable[[Scope], bool] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt is not None and self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"request body over {self.max_bytes} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
