"""Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
it, so that of several controller replicas exactly one reconciles (every one serves the API).

Every `retry_period_s` each replica reads the Lease and `decide`s, a pure function of the
Lease as it last saw it, since when it has seen it unchanged (by its own clock: the clocks
of two replicas are never compared), the time and its own identity: create the Lease,
renew it (it is ours), take it over (released, or left unrenewed for `leaseDurationSeconds`)
or follow. Every write carries the resourceVersion it read, so of two replicas taking over
at once one gets 409 Conflict and follows. A leader that has not renewed for
`renew_deadline_s` (shorter than the lease) stops leading at once, before any other replica
may take over; a leader shut down releases the Lease, so that the next takes over at its
next look instead of after the lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubetask.controller.clock import Clock, utcnow
from kubetask.controller.k8s_api import Obj, retry_after_s

log = logging.getLogger("kubetask.leader")


def default_identity() -> str:
    """The pod's name (the chart sets POD_NAME from the downward API: a container restarted
    in the same pod takes its lease back at once), else hostname_pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ElectionSettings:
    name: str
    namespace: str
    identity: str
    duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


class Action(StrEnum):
    CREATE = "create"  # there is no Lease: create it, holding it
    RENEW = "renew"  # ours: renew it
    TAKE_OVER = "take-over"  # released, or not renewed for its duration: take it
    FOLLOW = "follow"  # another replica holds it


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says (spec) and its resourceVersion."""

    holder: str
    duration_s: int
    transitions: int
    acquired: str | None
    renewed: str | None
    resource_version: str

    @classmethod
    def from_lease(cls, lease: Obj) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            acquired=spec.get("acquireTime"),
            renewed=spec.get("renewTime"),
            resource_version=str(lease["metadata"].get("resourceVersion", "")),
        )


@dataclass(frozen=True)
class Sighting:
    """A Lease as this replica last read it, and since when (its clock) it is unchanged."""

    lease: LeaseRecord
    since: datetime


def sighted(previous: Sighting | None, lease: LeaseRecord | None, now: datetime) -> Sighting | None:
    """The new sighting after reading `lease` at `now`: `since` moves only when it changed."""
    if lease is None:
        return None
    if previous is not None and previous.lease == lease:
        return previous
    return Sighting(lease, now)


def decide(seen: Sighting | None, now: datetime, me: str) -> Action:
    """What replica `me` does about the Lease it sees (None: there is none)."""
    if seen is None:
        return Action.CREATE
    lease = seen.lease
    if lease.holder == me:
        return Action.RENEW
    if not lease.holder or now >= seen.since + timedelta(seconds=lease.duration_s):
        return Action.TAKE_OVER
    return Action.FOLLOW


def lease_spec(
    action: Action, seen: Sighting | None, *, me: str, now: datetime, duration_s: int
) -> Obj:
    """The spec `me` writes to act (CREATE, RENEW or TAKE_OVER)."""
    stamp = micro_time(now)
    if action is Action.RENEW and seen is not None:
        acquired, transitions = seen.lease.acquired or stamp, seen.lease.transitions
    elif action is Action.TAKE_OVER and seen is not None:
        acquired, transitions = stamp, seen.lease.transitions + 1
    else:
        acquired, transitions = stamp, 0
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": duration_s,
        "acquireTime": acquired,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }


def released_spec(lease: LeaseRecord, *, now: datetime) -> Obj:
    """What a leader shutting down writes: no holder, so the next takes over at once."""
    stamp = micro_time(now)
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": lease.transitions,
    }


class LeaseError(Exception):
    """A call about the Lease failed; `retry_after_s` when the API said when to try again."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LeaderElector:
    """Campaigns for the Lease forever; runs `lead()` while it holds it."""

    def __init__(
        self, *, api: k8s.ApiClient, settings: ElectionSettings, clock: Clock = utcnow
    ) -> None:
        self.settings = settings
        self._api = api  # handed over: closed by close()
        self._leases = k8s.CoordinationV1Api(api)
        self._clock = clock
        self._seen: Sighting | None = None
        self._renewed_at: datetime | None = None
        self.leading = False
        self.decided = asyncio.Event()  # the Lease has been looked at once

    @property
    def identity(self) -> str:
        return self.settings.identity

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: wait for the Lease; lead while holding it; stop leading the moment it is
        lost (`lead()` is cancelled)."""
        while True:
            await self._until_leading()
            self.leading = True
            log.info("%s leads (lease %s/%s)", self.identity, *self._where)
            work = asyncio.create_task(lead(), name="leader")
            try:
                await self._while_leading(work)
            finally:
                self.leading = False
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
            log.warning("%s stopped leading", self.identity)
            await asyncio.sleep(self.settings.retry_period_s)

    @property
    def _where(self) -> tuple[str, str]:
        return self.settings.namespace, self.settings.name

    async def _until_leading(self) -> None:
        while True:
            delay = self.settings.retry_period_s
            try:
                if await self._try():
                    return
            except LeaseError as exc:
                log.warning("lease %s/%s: %s", *self._where, exc)
                delay = max(delay, exc.retry_after_s or 0.0)
            await asyncio.sleep(delay)

    async def _while_leading(self, work: asyncio.Task[None]) -> None:
        """Renew every retry period until a renewal is refused, the renew deadline passes
        without one, or `work` ends (it failed: stop leading, and campaign again)."""
        delay = self.settings.retry_period_s
        while True:
            done, _ = await asyncio.wait({work}, timeout=max(min(delay, self._left_to_renew()), 0))
            if done:
                if not work.cancelled() and work.exception() is not None:
                    log.error("leading failed", exc_info=work.exception())
                return
            delay = self.settings.retry_period_s
            left = self._left_to_renew()
            if left <= 0:
                log.warning("lease %s/%s not renewed in time", *self._where)
                return
            try:
                async with asyncio.timeout(left):
                    if not await self._try():
                        return
            except TimeoutError:
                log.warning("lease %s/%s not renewed in time", *self._where)
                return
            except LeaseError as exc:
                log.warning("renewing lease %s/%s: %s", *self._where, exc)
                delay = max(delay, exc.retry_after_s or 0.0)

    def _left_to_renew(self) -> float:
        if self._renewed_at is None:
            return 0.0
        deadline = self._renewed_at + timedelta(seconds=self.settings.renew_deadline_s)
        return (deadline - self._clock()).total_seconds()

    async def _try(self) -> bool:
        """Read the Lease and act on it; whether this replica holds it now."""
        lease = await self._call(self._leases.read_namespaced_lease, *self._args, ok=(404,))
        now = self._clock()
        self._seen = sighted(self._seen, LeaseRecord.from_lease(lease) if lease else None, now)
        action = decide(self._seen, now, self.identity)
        self.decided.set()
        if action is Action.FOLLOW:
            return False
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": lease_spec(
                action, self._seen, me=self.identity, now=now, duration_s=self.settings.duration_s
            ),
        }
        if action is Action.CREATE:
            written = await self._call(
                self._leases.create_namespaced_lease, self.settings.namespace, body, ok=(409,)
            )
        else:
            assert self._seen is not None
            body["metadata"]["resourceVersion"] = self._seen.lease.resource_version
            written = await self._call(
                self._leases.replace_namespaced_lease, *self._args, body, ok=(409,)
            )
        if written is None:  # another replica wrote first: look again next time
            return False
        self._seen = Sighting(LeaseRecord.from_lease(written), now)
        self._renewed_at = now
        if action is not Action.RENEW:
            log.info("%s: lease %s/%s (%s)", self.identity, *self._where, action)
        return True

    @property
    def _args(self) -> tuple[str, str]:
        return self.settings.name, self.settings.namespace

    async def release(self) -> None:
        """Give the Lease up if this replica holds it (on shutdown, after leading stopped).
        It is read first: a renewal still in flight when leading stopped may have moved its
        resourceVersion past the one last seen."""
        if self._seen is None or self._seen.lease.holder != self.identity:
            return
        try:
            async with asyncio.timeout(2 * self.settings.retry_period_s):
                for _ in range(2):  # once more if a late renewal still wins the race
                    current = await self._call(
                        self._leases.read_namespaced_lease, *self._args, ok=(404,)
                    )
                    lease = LeaseRecord.from_lease(current) if current else None
                    if lease is None or lease.holder != self.identity:
                        return  # gone, or already another's
                    body = {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {
                            "name": self.settings.name,
                            "namespace": self.settings.namespace,
                            "resourceVersion": lease.resource_version,
                        },
                        "spec": released_spec(lease, now=self._clock()),
                    }
                    written = await self._call(
                        self._leases.replace_namespaced_lease, *self._args, body, ok=(409,)
                    )
                    if written is not None:
                        log.info("%s released lease %s/%s", self.identity, *self._where)
                        return
        except (LeaseError, TimeoutError) as exc:
            log.warning("releasing lease %s/%s: %s", *self._where, exc)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    async def _call(
        self, fn: Callable[..., Any], *args: Any, ok: tuple[int, ...] = ()
    ) -> Obj | None:
        """One API call in a thread, as JSON; None for the statuses in `ok`."""
        timeout = max(self.settings.renew_deadline_s, 1.0)
        try:
            response = await asyncio.to_thread(
                fn, *args, _preload_content=False, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status in ok:
                return None
            raise LeaseError(
                f"{exc.status} {exc.reason}", retry_after_s=retry_after_s(exc.headers)
            ) from exc
        except Exception as exc:  # unreachable, reset, timed out (urllib3 wraps these)
            raise LeaseError(f"kubernetes API unreachable: {exc}") from exc
        data: Obj = json.loads(response.data)
        return data
