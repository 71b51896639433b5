"""One bad record never stops the controller: deadlines are bounded where the request is
read, and a job that the controller cannot handle (here: its local folder damaged while no
controller ran) neither stops start-up nor the other jobs; it ends `failed` with the reason,
after a few tries, and the rest go on. A record an older version accepted, which a rule
added since refuses, is read, listed and purged as any other, and run only as this version
would accept it: not at all, failed with the rule's words."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.store import RedisStore
from kubetask.models import MAX_DEADLINE_S, JobRequest, Resources
from tests.servers import ApiServer


@pytest.mark.parametrize("field", ["timeout_s", "start_timeout_s"])
@pytest.mark.parametrize("seconds", [MAX_DEADLINE_S + 1, 10**12, 10**14])
def test_deadlines_beyond_a_year_are_refused_naming_the_field(
    api: ApiServer, field: str, seconds: int
) -> None:
    answer = api.client.post("/v1/jobs", json={"kind": "noop", field: seconds})
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["field"] == field


def test_the_longest_deadlines_allowed_run(api: ApiServer) -> None:
    """A year to start; a week to run, the server's default cap (KUBETASK_MAX_TIMEOUT_S)."""
    week = 7 * 24 * 3600
    job = api.wait(api.submit("noop", timeout_s=week, start_timeout_s=MAX_DEADLINE_S))
    assert job["state"] == "succeeded"


def test_a_damaged_job_neither_stops_start_up_nor_the_others(fresh_api: ApiServer) -> None:
    api = fresh_api
    damaged = api.submit("noop", {"steps": 100, "step_s": 0.1})
    api.wait(damaged, {"running"})
    api.kill()
    job_file = api.data_dir / "local" / "jobs" / damaged / "job.json"
    job_file.write_text('{"spec": ')  # what a full disk or a bad hand leaves
    api.start()  # start-up goes on
    fine = api.wait(api.submit("noop", {"steps": 2}))
    assert fine["state"] == "succeeded"
    ended = api.wait(damaged, timeout_s=90)
    assert (ended["state"], ended["reason"]) == ("failed", "ControllerError")
    assert "kubetask could not handle this job" in ended["message"]


def test_a_record_a_rule_added_since_refuses_is_read_listed_refused_and_purged(
    api: ApiServer,
) -> None:
    """Written as an older version accepted it: a label the Job controller's own
    (`job-name`, refused since) and a GPU model without a GPU (refused since)."""
    then = JobRequest(kind="noop", params={"steps": 1}).model_copy(
        update={
            "labels": {"job-name": "etl"},
            "resources": Resources().model_copy(update={"gpu_type": "a100"}),
        }
    )
    now = datetime.now(UTC)
    record = JobRecord(id=new_job_id(now), request=then, created_at=now)

    async def store_it() -> None:
        client = aioredis.Redis.from_url(api.redis_url, decode_responses=True)
        try:
            store = RedisStore(client, retention_s=3600, idempotency_ttl_s=60)
            await store.create(record, idempotency_key=None, fingerprint=record.id)
        finally:
            await client.aclose()

    asyncio.run(store_it())
    ended = api.wait(record.id)  # the resync finds it: run only as this version accepts
    assert (ended["state"], ended["reason"]) == ("failed", "CreateRejected"), ended["message"]
    assert "this version refuses its request" in ended["message"]
    assert "label key 'job-name' is reserved" in ended["message"]
    assert "gpu_type picks a GPU model" in ended["message"]
    assert ended["labels"] == {"job-name": "etl"}
    listed = api.client.get("/v1/jobs", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    assert record.id in {job["id"] for job in listed.json()["items"]}
    purged = api.client.delete(f"/v1/jobs/{record.id}", params={"purge": "true"})
    assert purged.status_code == 204, purged.text
