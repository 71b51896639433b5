"""The SDK and the CLI on object storage: the API with `KUBETASK_ARTIFACTS_URL=s3://…` on the
real MinIO (tests/s3), a job's files put under its prefix in the bucket, listed, downloaded
and uploaded through both clients."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubetask import AsyncClient, Client
from kubetask.cli import app
from kubetask.models import DEFAULT_TENANT
from kubetask.storage import ArtifactStore
from tests.component.job_files import ARCHIVED_LOG, wait_for_archived_log
from tests.s3.api import S3Api, bucket_store
from tests.s3.server import S3Server
from tests.servers import ApiServer, own_database

FILES = {"model.pt": os.urandom(2 * 1024 * 1024 + 3), "plots/loss.png": b"\x89PNG" + b"p" * 99}


@dataclass(frozen=True)
class OnS3:
    api: ApiServer
    store: ArtifactStore  # the bucket, as this test process reaches it
    job_id: str


@pytest.fixture(scope="module")
def on_s3(
    s3_server: S3Server, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OnS3]:
    bucket = s3_server.make_bucket(f"clients-{uuid.uuid4().hex[:12]}")
    url = f"s3://{bucket}/kubetask"
    api = S3Api(
        s3=s3_server,
        redis_url=own_database(redis_url),
        data_dir=tmp_path_factory.mktemp("s3-clients"),
        artifacts_url=url,
    )
    store = bucket_store(s3_server, url)
    api.start()
    try:
        job_id = api.submit("noop", {"steps": 1})
        api.wait(job_id)
        store.delete(f"{job_id}/attempts-0")  # the noop's own marker, staged out by the task
        wait_for_archived_log(api, job_id)
        store.delete(f"{job_id}/{ARCHIVED_LOG}")  # its log, archived by the controller
        for path, content in FILES.items():
            store.write(f"{job_id}/{path}", [content])
        yield OnS3(api, store, job_id)
    finally:
        api.close()


def test_the_sdk_lists_downloads_and_uploads_on_s3(on_s3: OnS3, tmp_path: Path) -> None:
    with Client(on_s3.api.base_url) as client:
        job = client.job(on_s3.job_id)
        assert {a.path: a.size for a in job.artifacts()} == {p: len(c) for p, c in FILES.items()}
        assert job.download("model.pt", tmp_path).read_bytes() == FILES["model.pt"]
        local = tmp_path / "rec.mat"
        local.write_bytes(os.urandom(3 * 1024 * 1024))
        stored = client.upload(local, "lab/rec.mat")
        assert stored.path == f"uploads/{DEFAULT_TENANT}/lab/rec.mat"
        assert [u.path for u in client.uploads(prefix="lab")] == ["lab/rec.mat"]
    with on_s3.store.open(stored.path) as reader:
        assert b"".join(reader) == local.read_bytes()

    async def in_asyncio() -> bytes:
        async with AsyncClient(on_s3.api.base_url) as aclient:
            saved = await aclient.job(on_s3.job_id).download("plots/loss.png", tmp_path / "a.png")
            return saved.read_bytes()

    assert asyncio.run(in_asyncio()) == FILES["plots/loss.png"]


def test_the_cli_lists_gets_and_uploads_on_s3(on_s3: OnS3, tmp_path: Path) -> None:
    runner = CliRunner()
    server = ["--server", on_s3.api.base_url]
    listed = runner.invoke(app, [*server, "artifacts", "ls", on_s3.job_id])
    assert listed.exit_code == 0, listed.output
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == sorted(FILES)
    target = tmp_path / "m.pt"
    got = runner.invoke(
        app, [*server, "artifacts", "get", on_s3.job_id, "model.pt", "-o", str(target)]
    )
    assert got.exit_code == 0, got.output
    assert target.read_bytes() == FILES["model.pt"]
    sent = runner.invoke(app, [*server, "upload", str(target), "cli/m.pt"])
    assert sent.exit_code == 0, sent.output
    assert sent.stdout == f"uploads/{DEFAULT_TENANT}/cli/m.pt\n"
    assert on_s3.store.stat(f"uploads/{DEFAULT_TENANT}/cli/m.pt").size == len(FILES["model.pt"])
