"""`kubetask-server render`: the Kubernetes objects a request becomes, built as the server
builds them (`compose` in api/runtime.py, `accept` in controller/service.py), so render and
`POST /v1/jobs?dry_run=true` on the kubernetes backend agree, `job:<id>` params included.

A request that names no job needs nothing but the settings. One that names a job
(`job:<id>`, or a path under `<job id>/`) is resolved from the server's Redis
(`KUBETASK_REDIS_URL`), as the default tenant (the one a server without tokens serves);
without a Redis to ask, render refuses it rather than print a Job the server would not make.
An `upload:<path>` is resolved, and checked to exist, in the artifact store the settings
name (`KUBETASK_ARTIFACTS_URL`), as the server does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
import yaml

from kubetask.api.limits import apply_caps
from kubetask.api.runtime import artifact_store, compose, installed_kinds
from kubetask.api.settings import Settings
from kubetask.controller.chaining import JobLookup
from kubetask.controller.clock import utcnow
from kubetask.controller.ids import new_job_id
from kubetask.controller.manifests import Manifest, build_job, build_params_configmap
from kubetask.controller.records import JobRecord
from kubetask.controller.service import accept, tenant_lookup
from kubetask.controller.store import RedisStore
from kubetask.controller.uploads import upload_check
from kubetask.models import DEFAULT_TENANT, JobRequest

CLUSTER_REDIS = "redis://redis:6379/0"  # shown in the Job when no Redis URL is set


class NeedsTheStore(Exception):
    """The params name a job, and no Redis is configured to look it up in."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"the params name job {job_id}: set KUBETASK_REDIS_URL to the server's Redis so "
            "render can resolve it as the server does"
        )


async def _refuse(job_id: str) -> JobRecord | None:
    raise NeedsTheStore(job_id)


@asynccontextmanager
async def job_lookup(settings: Settings) -> AsyncIterator[JobLookup]:
    """The default tenant's jobs in the server's Redis (connected on first use), or a lookup
    that refuses when no Redis URL is set."""
    if settings.redis_url is None:
        yield _refuse
        return
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        store = RedisStore(
            client,
            retention_s=settings.retention_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
        )
        yield tenant_lookup(store, DEFAULT_TENANT)
    finally:
        await client.aclose()


async def rendered_objects(request: JobRequest, settings: Settings) -> list[Manifest]:
    """The Job (and the params ConfigMap of large params) the kubernetes backend creates."""
    on_cluster = settings.model_copy(update={"backend": "kubernetes"})
    wiring = compose(
        on_cluster,
        redis_url=settings.redis_url or CLUSTER_REDIS,
        kinds=installed_kinds(settings),
    )
    request = apply_caps(request, settings.job_caps())  # as the server's submit route does
    async with job_lookup(settings) as lookup:
        accepted = await accept(
            request,
            kinds=wiring.kinds,
            tenant=DEFAULT_TENANT,
            lookup=lookup,
            priorities=wiring.priorities,
            uploads=upload_check(artifact_store(settings)),  # upload:<path> as the server
        )
    now = utcnow()
    record = JobRecord(id=new_job_id(now), request=accepted, created_at=now)
    spec = wiring.spec_for(record)
    objects = [build_job(spec, on_cluster.cluster())]
    configmap = build_params_configmap(spec, on_cluster.cluster())
    if configmap is not None:
        objects.append(configmap)
    return objects


def render(request_json: str, settings: Settings) -> str:
    """The objects for a request (JSON), as YAML."""
    request = JobRequest.model_validate_json(request_json)
    return yaml.safe_dump_all(asyncio.run(rendered_objects(request, settings)), sort_keys=False)
