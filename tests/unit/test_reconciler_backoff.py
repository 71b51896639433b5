"""The reconciler waits out a backend's Retry-After for a job, whatever wakes the job up
meanwhile (resyncs, change notices), and reconciles only while it leads."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import UTC, datetime
from typing import cast

import redis.asyncio as aioredis

from controller.backends.base import Backend, BackendError, TaskSpec
from controller.bus import EventBus
from controller.reconciler import Reconciler
from controller.records import JobRecord
from controller.store import Store
from kubetask.models import JobRequest

JOB = JobRecord(
    id="0000000000000001", request=JobRequest(kind="noop"), created_at=datetime.now(UTC)
)


class OneJobStore:
    """One unfinished job, as far as the reconciler reads it here."""

    async def get(self, job_id: str) -> JobRecord | None:
        return JOB if job_id == JOB.id else None

    async def unfinished(self) -> list[str]:
        return [JOB.id]

    async def mark_submitted(self, job_id: str) -> None:
        raise AssertionError("never created")


class ThrottledBackend:
    """Answers every create with "429, retry after `retry_after_s`" and notes when."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self.creates: list[float] = []

    async def create(self, spec: TaskSpec) -> None:
        self.creates.append(time.monotonic())
        raise BackendError("429 Too Many Requests", retry_after_s=self.retry_after_s)


def reconciler(backend: ThrottledBackend) -> Reconciler:
    return Reconciler(
        store=cast(Store, OneJobStore()),  # only get, unfinished and mark_submitted are used
        bus=EventBus(aioredis.Redis()),  # never reached: no status is written here
        backend=cast(Backend, backend),  # only changes and create are used
        spec_for=lambda record: TaskSpec(
            job_id=record.id, kind="noop", image="", command=(), env={}, retries=0, timeout_s=None
        ),
        retention_s=60,
        resync_s=0.02,  # a resync every 20 ms...
    )


async def _retry_after_is_waited_out() -> list[float]:
    backend = ThrottledBackend(retry_after_s=0.3)
    loop = reconciler(backend)
    task = asyncio.create_task(loop.run())
    for _ in range(100):  # ... and a change notice every 10 ms, for a second
        backend.changes.put_nowait(JOB.id)
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return backend.creates


def test_a_job_told_to_retry_after_is_not_synced_again_before() -> None:
    creates = asyncio.run(_retry_after_is_waited_out())
    gaps = [later - earlier for earlier, later in itertools.pairwise(creates)]
    assert 2 <= len(creates) <= 5
    assert min(gaps) >= 0.3


async def _follower_drops_changes() -> tuple[int, int]:
    backend = ThrottledBackend(retry_after_s=0.01)
    loop = reconciler(backend)
    following = asyncio.create_task(loop.follow_backend())  # changes, but not leading
    for _ in range(10):
        backend.changes.put_nowait(JOB.id)
        loop.enqueue(JOB.id)  # no wake-ups configured: nobody to tell
    await asyncio.sleep(0.1)
    idle = len(backend.creates)
    leading = asyncio.create_task(loop.lead())
    await asyncio.sleep(0.1)
    leading.cancel()
    await asyncio.sleep(0.05)
    stopped = len(backend.creates)
    await asyncio.sleep(0.1)
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(following, leading)
    assert stopped > idle
    return idle, len(backend.creates) - stopped


def test_only_a_leading_reconciler_syncs_and_it_stops_when_leadership_ends() -> None:
    idle, after = asyncio.run(_follower_drops_changes())
    assert (idle, after) == (0, 0)
