"""The SDK's artifacts against the real API process, sync and async: a job's files listed
and downloaded (streamed to a temporary name, then renamed), uploads put, replaced, listed
and named as task inputs, and the errors a caller acts on (404, 413, a path outside)."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetask import AsyncClient, Client, NotFound
from kubetask.errors import InvalidRequest, RequestTooLarge
from kubetask.models import DEFAULT_TENANT
from tests.component.job_files import ARCHIVED_LOG, JobFiles, job_with_files, wait_for_archived_log
from tests.servers import ApiServer, own_database


@pytest.fixture(scope="module")
def done(api: ApiServer) -> JobFiles:
    return job_with_files(api)


@pytest.fixture
def client(api: ApiServer) -> Iterator[Client]:
    with Client(api.base_url) as client:
        yield client


def test_a_jobs_files_are_listed_sorted_with_sizes(client: Client, done: JobFiles) -> None:
    listed = client.job(done.job_id).artifacts()
    assert [a.path for a in listed] == sorted(done.files)
    assert {a.path: a.size for a in listed} == {p: len(c) for p, c in done.files.items()}
    by_path = {a.path: a for a in listed}
    assert by_path["metrics.json"].content_type == "application/json"
    assert by_path["model.pt"].etag.startswith('"')
    assert client.artifacts(done.job_id) == listed


def test_a_job_without_files_lists_none_and_an_unknown_job_is_not_found(
    client: Client, api: ApiServer
) -> None:
    job_id = api.submit("noop", {"steps": 1})
    api.wait(job_id)
    wait_for_archived_log(api, job_id)
    for name in ("attempts-0", ARCHIVED_LOG):
        (api.data_dir / "artifacts" / job_id / name).unlink()
    assert client.artifacts(job_id) == []
    with pytest.raises(NotFound):
        client.artifacts("no-such-job")


def test_download_streams_to_a_folder_or_a_file(
    client: Client, done: JobFiles, tmp_path: Path
) -> None:
    job = client.job(done.job_id)
    seen: list[tuple[int, int | None]] = []
    saved = job.download("model.pt", tmp_path, on_progress=lambda d, s: seen.append((d, s)))
    assert saved == tmp_path / "model.pt"
    assert saved.read_bytes() == done.files["model.pt"]
    size = len(done.files["model.pt"])
    assert seen[-1] == (size, size)
    assert len(seen) > 1  # in chunks, not one whole body
    named = job.download("plots/confusion matrix.png", tmp_path / "cm.png")
    assert named.read_bytes() == done.files["plots/confusion matrix.png"]
    out = io.BytesIO()
    assert client.download_into(done.job_id, "metrics.json", out) == len(out.getvalue())
    assert out.getvalue() == done.files["metrics.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "model.pt"]


def test_download_errors_leave_nothing_behind(
    client: Client, done: JobFiles, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match=r"no file 'nope\.pt'"):
        client.download(done.job_id, "nope.pt", tmp_path)
    with pytest.raises(NotFound):
        client.download("no-such-job", "model.pt", tmp_path)
    with pytest.raises(InvalidRequest) as caught:
        client.download(done.job_id, "../other/model.pt", tmp_path)
    assert [e.field for e in caught.value.errors] == ["path"]
    assert list(tmp_path.iterdir()) == []


def test_an_upload_is_stored_replaced_listed_and_named_as_an_input(
    client: Client, tmp_path: Path
) -> None:
    folder = f"lab-{uuid.uuid4().hex[:8]}"
    local = tmp_path / "recording.mat"
    local.write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    stored = client.upload(local, f"{folder}/rec.mat")
    assert stored.path == f"uploads/{DEFAULT_TENANT}/{folder}/rec.mat"
    assert stored.size == local.stat().st_size
    assert stored.ref == f"upload:{folder}/rec.mat"
    local.write_bytes(b"second take")
    again = client.upload(local, f"{folder}/rec.mat")
    assert (again.path, again.size) == (stored.path, len(b"second take"))
    assert again.etag != stored.etag
    by_name = client.upload(local)  # default: the local file's name
    assert by_name.path == f"uploads/{DEFAULT_TENANT}/recording.mat"
    listed = client.uploads(prefix=folder)
    assert [(u.path, u.size) for u in listed] == [(f"{folder}/rec.mat", len(b"second take"))]
    assert any(u.path == "recording.mat" for u in client.uploads())


def test_over_the_upload_limit_is_request_too_large(redis_url: str, tmp_path: Path) -> None:
    server = ApiServer(
        redis_url=own_database(redis_url), data_dir=tmp_path / "api", max_upload_bytes=1000
    )
    server.start()
    try:
        local = tmp_path / "big.bin"
        local.write_bytes(b"x" * 5000)
        with Client(server.base_url) as client:
            with pytest.raises(RequestTooLarge, match="413"):
                client.upload(local)
            assert client.uploads() == []
    finally:
        server.close()


def test_async_list_download_and_upload(api: ApiServer, done: JobFiles, tmp_path: Path) -> None:
    local = tmp_path / "in.csv"
    local.write_bytes(b"a,b\n" * 100_000)
    folder = f"async-{uuid.uuid4().hex[:8]}"
    remote = f"{folder}/in.csv"

    async def scenario() -> None:
        async with AsyncClient(api.base_url) as client:
            job = client.job(done.job_id)
            assert [a.path for a in await job.artifacts()] == sorted(done.files)
            saved = await job.download("model.pt", tmp_path / "m.pt")
            assert saved.read_bytes() == done.files["model.pt"]
            with pytest.raises(NotFound):
                await job.download("nope.pt", tmp_path)
            stored = await client.upload(local, remote)
            assert (stored.ref, stored.size) == (f"upload:{remote}", local.stat().st_size)
            assert [u.path for u in await client.uploads(prefix=folder)] == [remote]

    asyncio.run(scenario())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "m.pt"]


README = Path(__file__).parents[2] / "README.md"


def test_the_readme_artifacts_snippet_runs_as_written(
    client: Client, done: JobFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's SDK block for files, given the `client` and the `job_id` it names."""
    section = README.read_text().split("A job's files and your uploads", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recording.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    scope: dict[str, object] = {"client": client, "job_id": done.job_id}
    exec(compile(snippet, "README.md", "exec"), scope)  # the README's own code
    assert (tmp_path / "downloads" / "model.pt").read_bytes() == done.files["model.pt"]
    assert scope["saved"] == Path("downloads/model.pt")
    upload = client.uploads(prefix="lab")
    assert [u.path for u in upload] == ["lab/recording.mat"]
