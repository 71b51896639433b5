"""`kubetask-server render` and `POST /v1/jobs?dry_run=true` (the kubernetes backend) build a
request's Job with the same composition (api/runtime.py `compose`, controller/service.py
`accept`): the same manifest, a `job:<id>` param resolved from the same store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import redis.asyncio as aioredis
import yaml

from kubetask.api.limits import apply_caps
from kubetask.api.runtime import compose, installed_kinds
from kubetask.api.settings import Settings
from kubetask.controller.backends.kubernetes import KubernetesBackend
from kubetask.controller.bus import EventBus
from kubetask.controller.clock import utcnow
from kubetask.controller.ids import new_job_id
from kubetask.controller.reconciler import Reconciler
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.controller.service import JobService
from kubetask.controller.store import RedisStore
from kubetask.models import JobRequest, JobState
from tests.servers import own_database


def run_render(
    request: dict[str, Any], path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(request))
    return subprocess.run(
        [sys.executable, "-m", "kubetask.api", "render", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


async def dry_run_with_a_datagen_job(settings: Settings, url: str) -> tuple[str, dict[str, Any]]:
    """A succeeded datagen job in the store, and the dry run of a train job naming it."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        store = RedisStore(client, retention_s=3600, idempotency_ttl_s=3600)
        now = datetime.now(UTC)
        datagen = JobRecord(id=new_job_id(now), request=JobRequest(kind="datagen"), created_at=now)
        await store.create(datagen, idempotency_key=None, fingerprint=datagen.id)
        result = {"dataset": f"{datagen.id}/dataset.npz", "length": 1024, "sample_rate": 12000.0}
        await store.save_status(
            datagen, JobStatus(state=JobState.SUCCEEDED, result=result), at=datetime.now(UTC)
        )
        wiring = compose(settings, redis_url=url, kinds=installed_kinds(settings))
        backend = KubernetesBackend(
            api=k8s.ApiClient(), cluster=settings.cluster(), tenant_namespaces={}
        )
        bus = EventBus(client)
        reconciler = Reconciler(store=store, bus=bus, backend=backend, spec_for=wiring.spec_for)
        service = JobService(
            kinds=wiring.kinds,
            store=store,
            bus=bus,
            backend=backend,
            reconciler=reconciler,
            spec_for=wiring.spec_for,
            clock=utcnow,
            priorities=wiring.priorities,
        )
        request = JobRequest(kind="train", params={"dataset": f"job:{datagen.id}", "epochs": 2})
        dry = await service.dry_run(apply_caps(request, settings.job_caps()))  # as the route
        rendered = dry["object"]
        assert isinstance(rendered, dict)
        job = rendered["job"]
        assert isinstance(job, dict)
        return datagen.id, job
    finally:
        await client.aclose()


def without_id(job: dict[str, Any], job_id: str) -> Any:
    """The Job with its own id written as <id> (each build gives a new one)."""
    return json.loads(json.dumps(job).replace(job_id, "<id>"))


def test_render_and_dry_run_give_the_same_job_for_a_job_ref(redis_url: str, tmp_path: Path) -> None:
    url = own_database(redis_url)
    settings = Settings(backend="kubernetes", redis_url=url, data_dir=tmp_path)
    datagen_id, dry_job = asyncio.run(dry_run_with_a_datagen_job(settings, url))
    env = {"PATH": "/usr/bin:/bin", "KUBETASK_REDIS_URL": url, "KUBETASK_DATA_DIR": str(tmp_path)}
    request = {"kind": "train", "params": {"dataset": f"job:{datagen_id}", "epochs": 2}}
    done = run_render(request, tmp_path / "request.json", env)
    assert done.returncode == 0, done.stderr
    rendered = next(yaml.safe_load_all(done.stdout))
    params_env = next(
        e
        for e in rendered["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "KUBETASK_PARAMS"
    )
    assert json.loads(params_env["value"])["dataset"] == f"{datagen_id}/dataset.npz"
    dry_id = dry_job["metadata"]["labels"]["kubetask.io/job-id"]
    render_id = rendered["metadata"]["labels"]["kubetask.io/job-id"]
    assert without_id(rendered, render_id) == without_id(dry_job, dry_id)


def test_render_without_a_store_refuses_params_that_name_a_job(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "KUBETASK_DATA_DIR": str(tmp_path)}
    request = {"kind": "train", "params": {"dataset": "job:0abcdefgh1234567"}}
    done = run_render(request, tmp_path / "request.json", env)
    assert done.returncode != 0
    assert "set KUBETASK_REDIS_URL to the server's Redis" in done.stderr
    assert "Traceback" not in done.stderr
