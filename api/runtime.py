"""Everything the app runs, wired once at start-up and stopped at shutdown: the Redis
connection (and the embedded server when no URL is set), store, event bus, backend,
reconciler and job service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api.settings import Settings
from controller.backends.base import Backend, TaskSpec
from controller.backends.kubernetes import KubernetesBackend, api_client
from controller.backends.local import LocalBackend
from controller.bus import EventBus, EventHub
from controller.metrics import Metrics
from controller.notify import entries_for
from controller.outbox import Outbox
from controller.reconciler import Reconciler, utcnow
from controller.records import JobRecord
from controller.redis_server import RedisServer
from controller.service import JobService
from controller.store import RedisStore
from controller.taskspec import TaskDefaults, build_task_spec

log = logging.getLogger("kubetask.server")


def make_backend(settings: Settings) -> Backend:
    if settings.resolved_backend == "kubernetes":
        return KubernetesBackend(api=api_client(settings.kubeconfig), cluster=settings.cluster())
    return LocalBackend(
        root=(settings.data_dir / "local").resolve(),
        slots=settings.slots,
        retry_backoff_s=settings.retry_backoff_s,
    )


@dataclass
class Runtime:
    settings: Settings
    redis: aioredis.Redis
    store: RedisStore
    bus: EventBus
    hub: EventHub
    backend: Backend
    reconciler: Reconciler
    service: JobService
    embedded_redis: RedisServer | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings, *, metrics: Metrics | None = None) -> Runtime:
        embedded = None
        url = settings.redis_url
        if url is None:
            embedded = RedisServer(settings.data_dir / "redis")
            url = await asyncio.to_thread(embedded.start)
            log.info("embedded redis at %s (data in %s)", url, embedded.data_dir)
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=10,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        store = RedisStore(
            client,
            retention_s=settings.retention_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            notifications=partial(entries_for, settings=settings.notify()),
        )
        outbox = Outbox(
            client,
            secret=settings.webhook_secret,
            backoff=settings.backoff(),
            smtp=settings.smtp(),
            poll_s=settings.notify_poll_s,
            timeout_s=settings.webhook_timeout_s,
        )
        bus = EventBus(client)
        hub = EventHub(client, on_event=metrics.observe_event if metrics else None)
        backend = make_backend(settings)
        defaults = TaskDefaults(
            redis_url=settings.task_redis_url or url,
            artifacts=settings.task_artifacts(),
            images={"trainer": settings.trainer_image, "gan": settings.gan_image},
            grace_s=settings.grace_s,
        )

        def spec_for(record: JobRecord) -> TaskSpec:
            return build_task_spec(record, defaults)

        reconciler = Reconciler(
            store=store,
            bus=bus,
            backend=backend,
            spec_for=spec_for,
            retention_s=settings.retention_s,
            resync_s=settings.resync_s,
            on_transition=metrics.observe_transition if metrics else None,
        )
        service = JobService(
            store=store,
            bus=bus,
            backend=backend,
            reconciler=reconciler,
            spec_for=spec_for,
            clock=utcnow,
            priorities=frozenset(settings.priority_classes),
        )
        runtime = cls(settings, client, store, bus, hub, backend, reconciler, service, embedded)
        settings.artifacts.mkdir(parents=True, exist_ok=True)
        await backend.start()
        runtime.tasks = [
            asyncio.create_task(reconciler.run(), name="reconciler"),
            asyncio.create_task(hub.run(), name="event-hub"),
            asyncio.create_task(outbox.run(), name="notification-outbox"),
        ]
        return runtime

    async def ready(self) -> bool:
        try:
            await self.redis.ping()
        except Exception:
            return False
        return self.reconciler.ready.is_set() and self.hub.ready.is_set()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.backend.stop()
        await self.redis.aclose()
        if self.embedded_redis is not None:
            await asyncio.to_thread(self.embedded_redis.stop)
