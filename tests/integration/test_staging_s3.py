"""Tasks on object storage, end to end: the API with `KUBETASK_ARTIFACTS_URL=s3://…` on the
real MinIO (tests/s3) and the local backend, whose task processes stage their inputs in from
the bucket and their outputs out to it (jobs/staging.py), leaving no scratch folder behind."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]  # (sdv brings it) to remove a bucket
import pytest

from kubetask.jobs.kinds.ml.matfiles import write_examples
from kubetask.storage import ArtifactStore
from tests.integration.test_readme_chain import ANALYSES
from tests.s3.api import S3Api, bucket_store
from tests.s3.server import S3Server
from tests.servers import ApiServer, own_database

SCRATCH = "kubetask-artifacts-*"  # the runtime's scratch folders (tempfile.TemporaryDirectory)


@dataclass(frozen=True)
class OnS3:
    api: S3Api
    store: ArtifactStore  # the bucket's prefix, as this test process reaches it
    bucket: str


def scratch_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(SCRATCH))


@pytest.fixture(scope="module")
def on_s3(
    s3_server: S3Server, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OnS3]:
    bucket = s3_server.make_bucket(f"staging-{uuid.uuid4().hex[:12]}")
    url = f"s3://{bucket}/kubetask"
    api = S3Api(
        s3=s3_server,
        redis_url=own_database(redis_url),
        data_dir=tmp_path_factory.mktemp("s3-staging"),
        artifacts_url=url,
    )
    api.start()
    try:
        yield OnS3(api, bucket_store(s3_server, url), bucket)
    finally:
        api.close()


def succeeded(api: ApiServer, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    job = api.wait(job_id, timeout_s=timeout_s)
    assert job["state"] == "succeeded", (job, api.client.get(f"/v1/jobs/{job_id}/logs").text)
    return job


def stored(store: ArtifactStore, job_id: str) -> set[str]:
    return {entry.path.removeprefix(f"{job_id}/") for entry in store.list(job_id)}


@pytest.mark.timeout(400)
def test_datagen_train_evaluate_run_on_object_storage(on_s3: OnS3) -> None:
    api, store = on_s3.api, on_s3.store
    before = scratch_folders()
    started = time.monotonic()
    datagen = succeeded(api, api.submit("datagen", {"n_per_class": 5, "length": 256}))
    train = succeeded(
        api,
        api.submit("train", {"dataset": f"job:{datagen['id']}", "epochs": 1, "threads": 1}),
    )
    evaluate = succeeded(api, api.submit("evaluate", {"model": f"job:{train['id']}"}))
    print(f"datagen -> train -> evaluate on MinIO: {time.monotonic() - started:.1f}s")

    assert datagen["result"]["dataset"] == f"{datagen['id']}/dataset.npz"
    assert "dataset.npz" in stored(store, datagen["id"])
    assert train["result"]["model"].removeprefix(f"{train['id']}/") in stored(store, train["id"])
    assert train["result"]["dataset"] == datagen["result"]["dataset"]  # read from the bucket
    outputs = stored(store, evaluate["id"])
    assert {"metrics.json", "confusion.png"} <= outputs
    assert evaluate["result"]["n_signals"] == datagen["result"]["n_signals"] // 5  # held out
    # the evaluated inputs came in and did not go out again under another job's prefix
    assert not any(path.endswith(".npz") or path.endswith(".pt") for path in outputs)
    assert scratch_folders() - before == set()


@pytest.mark.timeout(400)
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_the_readme_analyses_run_on_object_storage(on_s3: OnS3) -> None:
    """The README chain's analyses (tests/integration/test_readme_chain.py runs them on the
    folder store) on a model and data that live only in the bucket; explain-batch's two
    workers each stage in and out."""
    api, store = on_s3.api, on_s3.store
    before = scratch_folders()
    started = time.monotonic()
    datagen = succeeded(api, api.submit("datagen", {"n_per_class": 5, "length": 256}))
    params = {"dataset": f"job:{datagen['id']}", "epochs": 1, "threads": 1}
    train = succeeded(api, api.submit("train", params))
    submitted = {
        kind: api.submit(kind, {"model": f"job:{train['id']}", **extra}, **fields)
        for kind, extra, fields in ANALYSES
    }
    for kind, job_id in submitted.items():
        job = succeeded(api, job_id)
        assert job["request"]["params"]["dataset"] == datagen["result"]["dataset"], kind
        assert stored(store, job_id), kind  # its outputs are in the bucket
    parts = stored(store, submitted["explain-batch"])
    assert {"explanations-0.npz", "explanations-1.npz"} <= parts
    print(f"the README analyses on MinIO: {time.monotonic() - started:.1f}s")
    assert scratch_folders() - before == set()


@pytest.mark.timeout(200)
def test_mat_import_runs_on_recordings_uploaded_through_the_api(
    on_s3: OnS3, tmp_path: Path
) -> None:
    for path in write_examples(tmp_path / "bearing"):
        name = path.relative_to(tmp_path).as_posix()
        response = on_s3.api.client.put(f"/v1/uploads/{name}", content=path.read_bytes())
        assert response.status_code in {200, 201}, response.text
    params = {"files": "uploads/default/bearing/**/*.mat", "segment_length": 1024}
    job = succeeded(on_s3.api, on_s3.api.submit("mat-import", params))
    assert job["result"]["files_imported"] == len(list(tmp_path.rglob("*.mat")))
    assert job["result"]["files_skipped"] == 0
    assert job["result"]["dataset"] == f"{job['id']}/dataset.npz"
    assert "dataset.npz" in stored(on_s3.store, job["id"])


def test_a_retry_resumes_from_what_the_failed_attempt_stored(on_s3: OnS3) -> None:
    params = {"fail": "exception", "fail_attempts": 1}
    job = succeeded(on_s3.api, on_s3.api.submit("noop", params, retries=1), timeout_s=60)
    assert job["result"]["attempt"] == 2  # the first attempt's marker came back from the bucket
    with on_s3.store.open(f"{job['id']}/attempts-0") as reader:
        assert b"".join(reader) == b"2"


def test_a_task_whose_upload_fails_ends_failed_naming_the_file(
    s3_server: S3Server, redis_url: str, tmp_path: Path
) -> None:
    """The bucket removed while the task runs (after it staged in): its upload fails."""
    bucket = s3_server.make_bucket(f"doomed-{uuid.uuid4().hex[:12]}")
    api = S3Api(
        s3=s3_server,
        redis_url=own_database(redis_url),
        data_dir=tmp_path,
        artifacts_url=f"s3://{bucket}/kubetask",
    )
    api.start()
    try:
        job_id = api.submit("noop", {"steps": 2, "step_s": 2.0})
        deadline = time.monotonic() + 30
        while ((api.job(job_id).get("progress") or {}).get("current") or 0) < 1:
            assert time.monotonic() < deadline, api.job(job_id)
            time.sleep(0.05)
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_server.endpoint,
            region_name=s3_server.region,
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
        )
        s3.delete_bucket(Bucket=bucket)
        job = api.wait(job_id, timeout_s=60)
    finally:
        api.close()
    assert job["state"] == "failed"
    message = job["error"]["message"]
    assert message.startswith(f"uploading '{job_id}/attempts-0' to S3Store('s3://{bucket}/")
    assert message.endswith("failed: NoSuchBucket: The specified bucket does not exist")
