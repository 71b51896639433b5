"""Everything the app runs, wired once at start-up and stopped at shutdown: the Redis
connection (and the embedded server when no URL is set), store, event bus, backend,
reconciler and job service. With leader election on, every replica serves the API and only
the Lease holder runs the reconciler and the notification outbox.

The installed kinds (entry points, kubetask/kinds.py) are loaded and checked here, and how a
request becomes a task (`compose`: kinds, task defaults, priorities) is built here once, for
the server and for `kubetask-server render` alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from kubetask.api.settings import Settings
from kubetask.controller.archive import LogArchiver
from kubetask.controller.backends.base import Backend, TaskSpec
from kubetask.controller.backends.kubernetes import KubernetesBackend, api_client
from kubetask.controller.backends.local import LocalBackend
from kubetask.controller.bus import EventBus, EventHub
from kubetask.controller.clock import utcnow
from kubetask.controller.leader import LeaderElector
from kubetask.controller.metrics import Metrics
from kubetask.controller.notify import entries_for
from kubetask.controller.outbox import Outbox
from kubetask.controller.reconciler import LOCAL_WORKERS, WORKERS, Reconciler
from kubetask.controller.records import JobRecord
from kubetask.controller.redaction import redact_url
from kubetask.controller.redis_retry import RetryWithin
from kubetask.controller.redis_sends import with_cancellable_sends
from kubetask.controller.redis_server import RedisServer, watch
from kubetask.controller.retention import ArtifactJanitor
from kubetask.controller.service import JobService
from kubetask.controller.store import RedisStore
from kubetask.controller.taskspec import TaskDefaults, build_task_spec
from kubetask.controller.wakeups import WakeUps
from kubetask.kinds import KindSpec, check_kinds, load_kinds
from kubetask.params.paths import UPLOADS
from kubetask.storage import ArtifactStore, FileStore, store_from_url

log = logging.getLogger("kubetask.server")
ARCHIVE_DRAIN_S = 2.0  # at shutdown, the longest wait for queued log archives
# A dropped connection is tried again this long (a Redis restarting), at most half the Redis
# timeout: a command that waited that long for its answer is not sent again.
RETRY_BUDGET_S = 3.0
STALE_PARTIAL_S = 3600.0  # an upload not written to for this long was cut off


async def warn_if_evicting(client: aioredis.Redis) -> str | None:
    """Log an error unless Redis keeps every key (`maxmemory-policy noeviction`): a Redis
    that evicts drops accepted jobs, index entries and Idempotency-Keys without a word. The
    policy read (None: the server does not tell, as some managed ones)."""
    try:
        answer = await client.config_get("maxmemory-policy")
    except RedisError:
        log.warning("could not read Redis' maxmemory-policy: it must be noeviction")
        return None
    policy = str(answer.get("maxmemory-policy", ""))
    if policy and policy != "noeviction":
        log.error(
            "Redis' maxmemory-policy is %s: at its maxmemory it evicts keys, and accepted jobs "
            "are lost; set it to noeviction (redis-cli CONFIG SET maxmemory-policy noeviction)",
            policy,
        )
    return policy or None


async def start_embedded(server: RedisServer) -> str:
    """Start the embedded server: its process from this thread (the event loop's, which
    lives as long as the process: the server's parent-death signal follows it), the waits
    in another."""
    await asyncio.to_thread(server.claim)
    try:
        server.spawn()
        return await asyncio.to_thread(server.wait_ready)
    except BaseException:
        await asyncio.to_thread(server.stop)
        raise


def installed_kinds(settings: Settings) -> Mapping[str, KindSpec]:
    """The installed kinds, checked: every `output_ref` names an installed kind's declared
    output, and every kind's image role has an image (`task_images`); `KindError` naming
    what is wrong otherwise, so the server refuses to start."""
    kinds = load_kinds()
    check_kinds(kinds, images=settings.task_images)
    return kinds


def artifact_store(settings: Settings) -> ArtifactStore:
    """The artifact store the API lists, serves and takes uploads into (built once, at
    start); `InvalidStoreUrl` naming `KUBETASK_ARTIFACTS_URL` when it cannot be used, so
    the server refuses to start."""
    return store_from_url(
        settings.artifacts_location,
        endpoint=settings.store_endpoint(),
        region=settings.store_region(),
        timeout_s=settings.s3_timeout_s,
        read_idle_s=settings.s3_read_idle_s,
    )


@dataclass(frozen=True)
class Wiring:
    """How this installation turns a request into a task: the installed kinds, what every
    task shares, and the priorities a request may ask for."""

    kinds: Mapping[str, KindSpec]
    defaults: TaskDefaults
    priorities: frozenset[str]

    def spec_for(self, record: JobRecord) -> TaskSpec:
        return build_task_spec(record, self.defaults, self.kinds)


def compose(settings: Settings, *, redis_url: str, kinds: Mapping[str, KindSpec]) -> Wiring:
    """The one wiring of requests into tasks, used by the server (`Runtime`) and by
    `kubetask-server render`, so the two agree. `redis_url`: the server's Redis (tasks get
    `task_redis_url` when set)."""
    defaults = TaskDefaults(
        redis_url=settings.task_redis_url or redis_url,
        artifacts=settings.task_artifacts(),
        images=dict(settings.task_images),
        grace_s=settings.grace_s,
        artifacts_url=settings.task_artifacts_url(),
        s3_endpoint=settings.store_endpoint(),
        s3_region=settings.store_region(),
        s3_timeout_s=settings.s3_timeout_s,
        s3_read_idle_s=settings.s3_read_idle_s,
    )
    return Wiring(kinds=kinds, defaults=defaults, priorities=frozenset(settings.priority_classes))


def make_backend(settings: Settings) -> Backend:
    if settings.resolved_backend == "kubernetes":
        namespaces = {settings.namespace, *settings.tenant_namespaces.values()}
        return KubernetesBackend(
            api=api_client(settings.kubeconfig, namespaces=len(namespaces)),
            cluster=settings.cluster(),
            tenant_namespaces=settings.tenant_namespaces,
        )
    return LocalBackend(
        root=(settings.data_dir / "local").resolve(),
        slots=settings.slots,
        retry_backoff_s=settings.retry_backoff_s,
        finished_ttl_s=settings.retention_s,  # a job's folder (logs) lasts as its record
        zygotes=settings.zygotes,
    )


async def _whole_log(backend: Backend, job_id: str) -> str | None:
    """What the log archiver copies: the job's whole log, as the backend has it."""
    return await backend.logs(job_id, tail=None)


async def _kept(store: RedisStore, job_id: str) -> bool:
    """A job whose log is still worth archiving: its record was not purged."""
    return await store.exists(job_id)


async def _sweep_partial_uploads(store: FileStore) -> None:
    """At start, the uploads a killed server left half written (off the event loop)."""
    try:
        removed = await asyncio.to_thread(
            store.remove_stale_partials, UPLOADS, older_than_s=STALE_PARTIAL_S
        )
    except OSError as exc:
        log.warning("could not sweep partial uploads: %s", exc)
        return
    if removed:
        log.info("removed %d partial uploads left by a server that stopped mid-upload", removed)


def subscriptions_client(url: str) -> aioredis.Redis:
    """The client of the event hub's and wake-ups' subscriptions: they wait for messages as
    long as none comes (no command timeout), and a dropped connection is made again as the
    commands' is (the hub resyncs its listeners then)."""
    return aioredis.Redis.from_url(
        url, decode_responses=True, health_check_interval=10, retry=reconnecting(RETRY_BUDGET_S)
    )


def reconnecting(budget_s: float) -> RetryWithin:
    """How a dropped Redis connection is made again: back-off from 50 ms to 1 s, 5 tries,
    none once `budget_s` has passed since the first."""
    return RetryWithin(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 5, budget_s=budget_s)


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
    elector: LeaderElector | None = None  # several replicas: only the Lease holder reconciles
    artifacts: ArtifactStore | None = None  # the artifact store (always set by `start`)
    janitor: ArtifactJanitor | None = None  # deletes jobs' artifacts (always set by `start`)
    archiver: LogArchiver | None = None  # archives ended jobs' logs (always set by `start`)
    subscriber: aioredis.Redis | None = None  # the subscriptions' own client (set by `start`)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        kinds: Mapping[str, KindSpec],
        artifacts: ArtifactStore | None = None,
        metrics: Metrics | None = None,
    ) -> Runtime:
        """`artifacts`: the store (`artifact_store`, built by the caller to refuse a bad
        setting before start-up; None: built here)."""
        artifacts = artifacts if artifacts is not None else artifact_store(settings)
        embedded = None
        url = settings.redis_url
        if url is None:
            embedded = RedisServer(settings.data_dir / "redis")
            url = await start_embedded(embedded)
            log.info("embedded redis at %s (data in %s)", redact_url(url), embedded.data_dir)
        try:
            wiring = compose(settings, redis_url=url, kinds=kinds)
            runtime = await cls._wire(settings, wiring, url, embedded, metrics, artifacts=artifacts)
        except BaseException:
            if embedded is not None:  # a failed start stops what it started
                await asyncio.to_thread(embedded.stop)
            raise
        if embedded is not None:  # restarted on its address and data whenever it dies
            runtime.tasks.append(asyncio.create_task(watch(embedded), name="embedded-redis"))
        return runtime

    @classmethod
    async def _wire(
        cls,
        settings: Settings,
        wiring: Wiring,
        url: str,
        embedded: RedisServer | None,
        metrics: Metrics | None,
        *,
        artifacts: ArtifactStore,
    ) -> Runtime:
        # A request waits for a free connection (up to the pool timeout, then 503) rather
        # than failing at once when every connection is busy (some wait on WAITAOF), and for
        # an answer up to the Redis timeout (a hung server: 503, not a request held for
        # good). A dropped connection is tried again for a moment (a restarted server), an
        # unanswered command is not (it may have run, and a hung server answers no retry).
        pool = with_cancellable_sends(
            aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=settings.redis_max_connections,
                timeout=settings.redis_pool_timeout_s,
                socket_timeout=settings.redis_timeout_s,
                decode_responses=True,
                health_check_interval=10,
                retry=reconnecting(min(RETRY_BUDGET_S, settings.redis_timeout_s / 2)),
                retry_on_error=[RedisConnectionError],
            )
        )
        client = aioredis.Redis.from_pool(pool)
        subscriber = subscriptions_client(url)
        store = RedisStore(
            client,
            retention_s=settings.retention_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            fsync_timeout_ms=round(settings.fsync_timeout_s * 1000),
            notifications=partial(entries_for, settings=settings.notify()),
        )
        outbox = Outbox(
            client,
            secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
            backoff=settings.backoff(),
            smtp=settings.smtp(),
            poll_s=settings.notify_poll_s,
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
        )
        bus = EventBus(client)
        hub = EventHub(subscriber, on_event=metrics.observe_event if metrics else None)
        backend = make_backend(settings)
        archiver = LogArchiver(
            read_log=partial(_whole_log, backend),
            store=artifacts,
            wanted=partial(_kept, store),
            stopped=backend.stopped,
        )
        janitor = ArtifactJanitor(
            store=artifacts,
            retention_s=settings.artifacts_retention_s,
            registry=metrics.registry if metrics else None,
            settled=archiver.settled,
        )
        reconciler = Reconciler(
            store=store,
            bus=bus,
            backend=backend,
            spec_for=wiring.spec_for,
            resync_s=settings.resync_s,
            on_transition=metrics.observe_transition if metrics else None,
            wakeups=WakeUps(subscriber) if settings.election() else None,
            merges={n: k.merge for n, k in wiring.kinds.items() if k.merge is not None},
            on_end=archiver.offer,
            before_stop=archiver.remember,
            workers=WORKERS if settings.resolved_backend == "kubernetes" else LOCAL_WORKERS,
        )
        service = JobService(
            kinds=wiring.kinds,
            store=store,
            bus=bus,
            backend=backend,
            reconciler=reconciler,
            spec_for=wiring.spec_for,
            clock=utcnow,
            priorities=wiring.priorities,
            artifacts=artifacts,
        )
        runtime = cls(settings, client, store, bus, hub, backend, reconciler, service, embedded)
        runtime.artifacts = artifacts
        runtime.janitor = janitor
        runtime.archiver = archiver
        runtime.subscriber = subscriber
        settings.artifacts.mkdir(parents=True, exist_ok=True)
        await warn_if_evicting(client)
        await backend.start()
        runtime.tasks = [
            asyncio.create_task(hub.run(), name="event-hub"),
            asyncio.create_task(archiver.run(), name="log-archiver"),
        ]
        if isinstance(artifacts, FileStore):  # S3: a bucket lifecycle rule aborts the stale
            runtime.tasks.append(  # multipart uploads (README), as no API call can list them
                asyncio.create_task(_sweep_partial_uploads(artifacts), name="partial-uploads")
            )
        election = settings.election()
        if election is None:
            runtime.tasks += [
                asyncio.create_task(reconciler.run(), name="reconciler"),
                asyncio.create_task(outbox.run(), name="notification-outbox"),
                asyncio.create_task(janitor.run(store.unfinished), name="artifact-retention"),
            ]
            return runtime

        async def lead() -> None:  # what only the leader does
            async with asyncio.TaskGroup() as group:
                group.create_task(reconciler.lead(), name="reconciler")
                group.create_task(outbox.run(), name="notification-outbox")
                group.create_task(janitor.run(store.unfinished), name="artifact-retention")

        elector = LeaderElector(api=api_client(settings.kubeconfig), settings=election)
        runtime.elector = elector
        runtime.tasks += [
            asyncio.create_task(reconciler.follow_backend(), name="backend-changes"),
            asyncio.create_task(elector.run(lead), name="leader-election"),
        ]
        return runtime

    def alive(self) -> bool:
        """Liveness: what this process runs itself is up (the embedded Redis server, when
        it runs one)."""
        return self.embedded_redis is None or self.embedded_redis.running

    async def ready(self) -> bool:
        try:
            await self.redis.ping()
        except Exception:
            return False
        if not self.hub.ready.is_set():
            return False
        if self.elector is None:
            return self.reconciler.ready.is_set()
        # a follower serves the API once it has seen who leads; a leader once it resynced
        return self.elector.decided.is_set() and (
            not self.elector.leading or self.reconciler.ready.is_set()
        )

    async def stop(self) -> None:
        self.hub.close()  # streams still open end now
        if self.archiver is not None:  # the logs of jobs that just ended, while the backend is up
            await self.archiver.drain(ARCHIVE_DRAIN_S)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.elector is not None:  # leading has stopped: the next replica may take over
            await self.elector.release()
            self.elector.close()
        await self.backend.stop()
        await self.redis.aclose()
        if self.subscriber is not None:
            await self.subscriber.aclose()
        if self.embedded_redis is not None:
            await asyncio.to_thread(self.embedded_redis.stop)
