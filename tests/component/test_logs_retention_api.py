"""Archived logs and artifact retention against the real API process (local backend), on
both stores: the FileStore default and S3 on the real MinIO.

- A job's log is archived at `<id>/logs/output.log` when it ends; once its folder is gone
  (the local backend's TTL: `remove_expired`, its own function, with the clock moved past
  the TTL rather than a week waited) `/logs` still answers, from the store.
- `DELETE ?purge=true` deletes a finished job's record and every file under its prefix;
  an unfinished one answers 409 until it is cancelled; a plain DELETE keeps the files.
- With `KUBETASK_ARTIFACTS_RETENTION_S` the sweep deletes a finished job's files, logged
  and counted, and keeps a running job's however old.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from kubetask.controller.backends.local_ttl import remove_expired
from kubetask.storage import ArtifactStore, FileStore
from tests.s3.api import S3Api, bucket_store
from tests.s3.server import S3Server
from tests.servers import ApiServer, own_database

WEEK = 7 * 24 * 3600
PROBLEM = "application/problem+json"


@dataclass
class Leg:
    server: ApiServer
    store: ArtifactStore  # the same store, as this test process reaches it
    root: Path

    @property
    def client(self) -> httpx.Client:
        return self.server.client


def start_leg(
    kind: str, request: pytest.FixtureRequest, redis_url: str, root: Path, **settings: Any
) -> Leg:
    common: dict[str, Any] = {
        "redis_url": own_database(redis_url),
        "data_dir": root / "api",
        **settings,
    }
    store: ArtifactStore
    if kind == "file":
        server = ApiServer(**common)
        store = FileStore(root / "api" / "artifacts")
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.make_bucket(f"logs-{uuid.uuid4().hex[:12]}")
        url = f"s3://{bucket}/kubetask"
        server = S3Api(s3=s3, artifacts_url=url, **common)
        store = bucket_store(s3, url)
    server.start()
    return Leg(server, store, root)


def stop_leg(leg: Leg) -> None:
    leg.server.close()
    log = (leg.root / "api" / "api.log").read_text()
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module", params=["file", "s3"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def leg(
    store_kind: str,
    request: pytest.FixtureRequest,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Leg]:
    started = start_leg(store_kind, request, redis_url, tmp_path_factory.mktemp(store_kind))
    try:
        yield started
    finally:
        stop_leg(started)


def eventually(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def ended_job(leg: Leg, **params: Any) -> str:
    """A noop job that ran to its end, its log archived."""
    job_id = leg.server.submit("noop", {"steps": 3, **params})
    assert leg.server.wait(job_id)["state"] == "succeeded"
    eventually(lambda: leg.store.exists(f"{job_id}/logs/output.log"))
    return job_id


def purged_total(client: httpx.Client, reason: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'kubetask_artifacts_purged_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    raise AssertionError("kubetask_artifacts_purged_total is not exposed")


def test_logs_outlive_the_jobs_folder(leg: Leg) -> None:
    job_id = ended_job(leg)
    live = leg.client.get(f"/v1/jobs/{job_id}/logs")
    assert live.status_code == 200
    assert live.text.strip()  # the task said something
    with leg.store.open(f"{job_id}/logs/output.log") as reader:
        assert b"".join(reader).decode() == live.text

    jobs = leg.root / "api" / "local" / "jobs"
    assert (jobs / job_id).is_dir()
    assert job_id in remove_expired(jobs, now=time.time() + 2 * WEEK, ttl_s=WEEK)
    assert not (jobs / job_id).exists()

    after = leg.client.get(f"/v1/jobs/{job_id}/logs")
    assert (after.status_code, after.text) == (200, live.text)
    last = leg.client.get(f"/v1/jobs/{job_id}/logs", params={"tail": 1})
    assert last.text == live.text.splitlines(keepends=True)[-1]
    listed = leg.client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    assert "logs/output.log" in [item["path"] for item in listed]


def test_a_log_that_was_not_kept_answers_410_not_an_empty_log(leg: Leg) -> None:
    """A job that ran and ended, whose pods were gone before its log was archived (here: the
    archive deleted, then the folder): 410 saying so, not a 200 passed off as a silent task."""
    job_id = ended_job(leg)
    leg.store.delete(f"{job_id}/logs/output.log")
    jobs = leg.root / "api" / "local" / "jobs"
    assert job_id in remove_expired(jobs, now=time.time() + 2 * WEEK, ttl_s=WEEK)

    gone = leg.client.get(f"/v1/jobs/{job_id}/logs")
    assert (gone.status_code, gone.headers["content-type"]) == (410, PROBLEM)
    assert gone.json()["detail"].startswith(f"job {job_id}'s log was not kept: its pods were gone")
    assert leg.client.get("/v1/jobs/0000000000000000/logs").status_code == 404  # no such job


def task_pid(leg: Leg, job_id: str) -> int:
    """The running task's pid, as its pod folder records it (a zygote's fork or a plain start)."""
    pod = leg.root / "api" / "local" / "jobs" / job_id / "pods" / "0-1"
    for name in ("shim.json", "started.json"):
        path = pod / name
        if path.exists() and "started_at" in (record := json.loads(path.read_text())):
            return int(record["pid"])
    raise AssertionError(f"no started task in {pod}")


def test_a_cancelled_jobs_log_and_files_wait_for_its_tasks_to_stop(leg: Leg) -> None:
    """Cancelled, a job is over at once; its task only once SIGTERM ended it, writing its last
    lines (and, on object storage, staging its files out). The task held stopped (SIGSTOP)
    as a slow one would be: a purge meanwhile is a 409 (the files it still writes would
    outlive the purge, for nobody), and the archived log waits for its last line."""
    job_id = leg.server.submit("noop", {"steps": 1000, "step_s": 0.05})
    eventually(lambda: "starting" in leg.client.get(f"/v1/jobs/{job_id}/logs").text)  # it runs
    pid = task_pid(leg, job_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert leg.client.delete(f"/v1/jobs/{job_id}").status_code == 202
        eventually(lambda: leg.server.job(job_id)["state"] == "cancelled")
        early = leg.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
        assert (early.status_code, early.headers["retry-after"]) == (409, "2"), early.text
        assert "its tasks are still stopping" in early.json()["detail"]
        time.sleep(1.0)  # the archiver looks twice meanwhile: no archive of half a log
        assert not leg.store.exists(f"{job_id}/logs/output.log")
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: leg.store.exists(f"{job_id}/logs/output.log"))
    with leg.store.open(f"{job_id}/logs/output.log") as reader:
        assert "TaskTerminated: received SIGTERM" in b"".join(reader).decode()
    purged = leg.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert purged.status_code == 204, purged.text
    time.sleep(0.5)
    assert list(leg.store.list(job_id)) == []


def test_purge_deletes_a_finished_jobs_record_and_files_and_nothing_else(leg: Leg) -> None:
    job_id, kept = ended_job(leg), ended_job(leg)
    leg.store.write(f"{job_id}/out/model.pt", [b"weights"])
    before = purged_total(leg.client, "purge")

    assert leg.client.delete(f"/v1/jobs/{kept}").status_code == 409  # cancel: finished
    gone = leg.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert gone.status_code == 204, gone.text

    assert leg.client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert leg.client.get(f"/v1/jobs/{job_id}/logs").status_code == 404
    listed = [
        job["id"] for job in leg.client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    ]
    assert job_id not in listed  # out of the indexes too
    assert kept in listed
    assert list(leg.store.list(job_id)) == []
    jobs = leg.root / "api" / "local" / "jobs"  # the backend's copy: its params, its logs
    assert not (jobs / job_id).exists()
    assert (jobs / kept).is_dir()
    assert leg.store.exists(f"{kept}/logs/output.log")  # a plain DELETE kept them
    assert leg.client.get(f"/v1/jobs/{kept}").status_code == 200
    assert purged_total(leg.client, "purge") == before + 1
    again = leg.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert again.status_code == 404
    with redis.Redis.from_url(leg.server.redis_url) as client:  # its events and outcome too
        assert list(client.scan_iter(f"*{job_id}*")) == []
        assert list(client.scan_iter(f"*{kept}*")) != []


def test_an_unfinished_job_is_purged_only_once_cancelled(leg: Leg) -> None:
    job_id = leg.server.submit("noop", {"steps": 600, "step_s": 0.1})
    leg.server.wait(job_id, {"running"})
    refused = leg.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["state"] == "running"
    assert "cancel it" in refused.json()["detail"]
    assert leg.client.get(f"/v1/jobs/{job_id}").status_code == 200

    assert leg.client.delete(f"/v1/jobs/{job_id}").status_code == 202
    assert leg.server.wait(job_id)["state"] == "cancelled"

    def purged() -> bool:  # 409 while its task stops (Retry-After), then done
        answer = leg.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
        assert answer.status_code in (204, 409), answer.text
        return answer.status_code == 204

    eventually(purged, timeout_s=10)
    time.sleep(0.5)  # nothing the task wrote as it stopped comes after the purge
    assert list(leg.store.list(job_id)) == []


def test_the_retention_sweep_deletes_finished_jobs_files_and_keeps_running_ones(
    store_kind: str,
    request: pytest.FixtureRequest,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp(f"retention-{store_kind}")
    leg = start_leg(store_kind, request, redis_url, root, artifacts_retention_s=2)
    try:
        running = leg.server.submit("noop", {"steps": 600, "step_s": 0.1})
        leg.server.wait(running, {"running"})
        leg.store.write(f"{running}/checkpoint.pt", [b"state"])
        finished = ended_job(leg)
        eventually(lambda: not list(leg.store.list(finished)))
        assert time.time() - leg.store.stat(f"{running}/checkpoint.pt").modified.timestamp() > 2
        assert leg.client.get(f"/v1/jobs/{finished}").status_code == 200  # the record stays
        assert purged_total(leg.client, "retention") >= 1
        assert f"job {finished}'s artifacts deleted" in (root / "api" / "api.log").read_text()
        assert leg.client.delete(f"/v1/jobs/{running}").status_code == 202
    finally:
        stop_leg(leg)
