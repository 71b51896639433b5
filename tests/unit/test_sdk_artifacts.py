"""The SDK's and CLI's artifact pieces without a server: the requests built for listing,
downloading and uploading files, how answers are read, where a download lands (a temporary
name, renamed only once whole), and both clients over a recording fake transport."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from kubetask import _calls, _files
from kubetask._cli_artifacts import artifact_rows, human_size, shows_bar, upload_hint
from kubetask.aio import AsyncClient
from kubetask.client import Client
from kubetask.errors import InvalidRequest, NotFound, RequestTooLarge, ServerUnreachable
from kubetask.models import Artifact, Upload

WHEN = "2026-12-05T10:11:12Z"
ENTRY = {
    "path": "model.pt",
    "size": 1234,
    "content_type": "application/octet-stream",
    "etag": '"abc"',
    "modified": WHEN,
}


def _problem(status: int, detail: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "t", "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class FakeServer:
    """Answers like the artifacts routes, and records every request with its whole body."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = files or {}
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.chunk_sizes: list[int] = []
        self.limit = 10**9
        self.cut_after: int | None = None  # announce the whole length, send only this much

    def handle(self, request: httpx.Request, chunks: list[bytes]) -> httpx.Response:
        self.requests.append(request)
        self.chunk_sizes.extend(len(c) for c in chunks)
        body = b"".join(chunks)
        self.bodies.append(body)
        path = request.url.raw_path.decode()
        if request.method == "PUT" and path.startswith("/v1/uploads/"):
            if int(request.headers["content-length"]) > self.limit:
                return _problem(413, "over the upload limit")
            name = path.removeprefix("/v1/uploads/")
            answer = {"path": f"uploads/default/{name}", "size": len(body), "etag": '"e"'}
            return httpx.Response(201, json=answer)
        if path == "/v1/jobs/j1/artifacts":
            return httpx.Response(200, json={"items": [ENTRY]})
        prefix = "/v1/jobs/j1/artifacts/"
        if path.startswith(prefix) and path.removeprefix(prefix) in self.files:
            data = self.files[path.removeprefix(prefix)]
            length = {"content-length": str(len(data)), "etag": '"e"'}  # as the API's
            if self.cut_after is not None:
                data = data[: self.cut_after]
            return httpx.Response(200, stream=_Pieces(data), headers=length)
        return _problem(404, "no such file")

    def sync(self) -> httpx.Client:
        return httpx.Client(base_url="http://kt", transport=_Transport(self))

    def asynchronous(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url="http://kt", transport=_AsyncTransport(self))


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body sent 1000 bytes at a time."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), 1000):
            yield self.data[start : start + 1000]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self:
            yield piece


class _Transport(httpx.BaseTransport):
    """Reads the request body chunk by chunk as the client streams it (MockTransport would
    read it whole first, hiding how it was sent)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        return self.server.handle(request, list(request.stream))


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        return self.server.handle(request, [chunk async for chunk in request.stream])


# -- the requests -----------------------------------------------------------------------


def test_listing_a_jobs_files_reads_the_items() -> None:
    call = _calls.artifacts("a b")
    assert (call.method, call.path) == ("GET", "/v1/jobs/a%20b/artifacts")
    answer = httpx.Response(200, json={"items": [ENTRY, {**ENTRY, "path": "m/x", "extra": 1}]})
    items = call.parse(answer)
    assert items[0] == Artifact(
        path="model.pt",
        size=1234,
        content_type="application/octet-stream",
        etag='"abc"',
        modified=datetime(2026, 12, 5, 10, 11, 12, tzinfo=UTC),
    )
    assert items[1].path == "m/x"  # a field a newer server adds is no error
    assert call.parse(httpx.Response(200, json={"items": []})) == []


def test_uploads_are_listed_under_a_prefix_when_given() -> None:
    assert _calls.uploads().params == ()
    call = _calls.uploads("lab/")
    assert (call.path, call.params) == ("/v1/uploads", (("prefix", "lab/"),))


def test_file_paths_are_quoted_per_segment_and_normalised() -> None:
    assert (
        _calls.artifact_url("j1", "plots/a b#1.png") == "/v1/jobs/j1/artifacts/plots/a%20b%231.png"
    )
    assert _calls.upload_url("lab//./rec.mat") == "/v1/uploads/lab/rec.mat"


@pytest.mark.parametrize(
    "path", ["../other/model.pt", "/etc/passwd", "a/../../b", "", ".", "a\x00"]
)
def test_a_path_outside_is_refused_naming_path_before_anything_is_sent(path: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _calls.artifact_url("j1", path)
    assert caught.value.status == 422
    assert [e.field for e in caught.value.errors] == ["path"]
    with pytest.raises(InvalidRequest):
        _calls.upload_url(path)


def test_an_upload_announces_its_length_and_reads_the_stored_path() -> None:
    assert _calls.upload_headers(42)["Content-Length"] == "42"
    answer = httpx.Response(201, json={"path": "uploads/team-a/lab/r.mat", "size": 3, "etag": "e"})
    stored = _calls.uploaded(answer)
    assert stored == Upload(path="uploads/team-a/lab/r.mat", size=3, etag="e")
    assert stored.ref == "upload:lab/r.mat"


def test_a_download_cut_short_is_told_apart() -> None:
    assert _calls.cut_short(None, 5) is None
    assert _calls.cut_short(5, 5) is None
    assert _calls.cut_short(10, 4) == "the download ended after 4 of 10 bytes"


# -- the local side -----------------------------------------------------------------------


def test_a_download_lands_at_its_name_in_a_folder_or_at_the_file_given(tmp_path: Path) -> None:
    assert _files.download_target(None, "plots/cm.png") == Path("cm.png")
    assert _files.download_target(tmp_path, "plots/cm.png") == tmp_path / "cm.png"
    assert _files.download_target(tmp_path / "x.png", "plots/cm.png") == tmp_path / "x.png"
    new = f"{tmp_path}/new/"
    assert _files.download_target(new, "plots/cm.png") == tmp_path / "new" / "cm.png"
    assert (tmp_path / "new").is_dir()
    assert _files.upload_name(tmp_path / "r.mat", None) == "r.mat"
    assert _files.upload_name(tmp_path / "r.mat", "lab/r.mat") == "lab/r.mat"


def test_a_part_file_is_renamed_only_when_whole(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    part = _files.PartFile(target)
    part.write(b"half")
    part.finish(whole=False)
    assert target.read_bytes() == b"old"  # neither replaced nor a half file
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    with _files.PartFile(target) as part:
        part.write(b"new ")
        assert target.read_bytes() == b"old"  # not there until whole
        part.write(b"model")
    assert target.read_bytes() == b"new model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_download_onto_a_symlink_replaces_the_file_it_names_and_keeps_the_link(
    tmp_path: Path,
) -> None:
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "model.pt"
    real.write_bytes(b"old")
    link = tmp_path / "model.pt"
    link.symlink_to(real)
    with _files.PartFile(link) as part:
        part.write(b"new")
    assert link.is_symlink()
    assert real.read_bytes() == b"new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["model.pt"]


def test_a_download_onto_a_pipe_writes_into_it(tmp_path: Path) -> None:
    """As onto a device (`-o /dev/null`), which a test here must not risk replacing."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    with _files.PartFile(fifo) as part:
        part.write(b"through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no part file left


# -- the clients over a fake transport ------------------------------------------------------


def test_sync_client_lists_downloads_and_uploads(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one chunk each way
    server = FakeServer({"m/model.pt": data})
    seen: list[tuple[int, int | None]] = []
    with Client("http://kt", http=server.sync()) as client:
        job = client.job("j1")
        assert [a.path for a in job.artifacts()] == ["model.pt"]
        saved = job.download("m/model.pt", tmp_path, on_progress=lambda d, s: seen.append((d, s)))
        assert saved == tmp_path / "model.pt"
        assert saved.read_bytes() == data
        assert seen[-1] == (len(data), len(data))
        assert len(seen) > 1
        local = tmp_path / "rec.mat"
        local.write_bytes(data)
        sent: list[tuple[int, int | None]] = []
        stored = client.upload(local, "lab/rec.mat", on_progress=lambda d, s: sent.append((d, s)))
    assert sent == [(_files.CHUNK, len(data)), (len(data), len(data))]
    assert (stored.path, stored.size, stored.ref) == (
        "uploads/default/lab/rec.mat",
        len(data),
        "upload:lab/rec.mat",
    )
    put = server.requests[-1]
    assert put.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in put.headers
    assert server.bodies[-1] == data
    assert max(server.chunk_sizes) <= _files.CHUNK  # streamed, never one whole body


def test_sync_client_errors_leave_no_file(tmp_path: Path) -> None:
    server = FakeServer({"model.pt": b"x" * 5000})
    with Client("http://kt", http=server.sync()) as client:
        with pytest.raises(NotFound, match="no such file"):
            client.download("j1", "missing.pt", tmp_path)
        server.cut_after = 2000
        with pytest.raises(ServerUnreachable, match="ended after 2000 of 5000 bytes"):
            client.download("j1", "model.pt", tmp_path)
        assert list(tmp_path.iterdir()) == []
        server.limit = 10
        local = tmp_path / "big.bin"
        local.write_bytes(b"y" * 100)
        with pytest.raises(RequestTooLarge, match="413 over the upload limit"):
            client.upload(local)
        with pytest.raises(InvalidRequest):
            client.download("j1", "../j2/model.pt", tmp_path)
    assert [r.method for r in server.requests] == ["GET", "GET", "PUT"]  # the bad path: none


def test_download_into_a_stream(tmp_path: Path) -> None:
    server = FakeServer({"out.csv": b"a,b\n1,2\n"})
    with Client("http://kt", http=server.sync()) as client, (tmp_path / "o").open("wb") as out:
        assert client.download_into("j1", "out.csv", out) == 8
    assert (tmp_path / "o").read_bytes() == b"a,b\n1,2\n"


def test_async_client_lists_downloads_and_uploads(tmp_path: Path) -> None:
    data = b"z" * (_files.CHUNK + 10)
    server = FakeServer({"model.pt": data})

    async def scenario() -> Upload:
        async with AsyncClient("http://kt", http=server.asynchronous()) as client:
            job = client.job("j1")
            assert [a.path for a in await job.artifacts()] == ["model.pt"]
            assert await job.download("model.pt", tmp_path / "m.pt") == tmp_path / "m.pt"
            with pytest.raises(NotFound):
                await job.download("nope.pt", tmp_path)
            server.cut_after = 10
            with pytest.raises(ServerUnreachable):
                await client.download("j1", "model.pt", tmp_path / "cut.pt")
            (tmp_path / "up.bin").write_bytes(data)
            return await client.upload(tmp_path / "up.bin", on_progress=lambda *a: sent.append(a))

    sent: list[tuple[int, int | None]] = []
    stored = asyncio.run(scenario())
    assert sent == [(_files.CHUNK, len(data)), (len(data), len(data))]
    assert (tmp_path / "m.pt").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "up.bin"]
    assert (stored.path, stored.ref) == ("uploads/default/up.bin", "upload:up.bin")
    assert server.requests[-1].headers["content-length"] == str(len(data))
    assert server.bodies[-1] == data
    assert max(server.chunk_sizes) <= _files.CHUNK


# -- the CLI's pure pieces ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024**2, "3.0 MiB"), (2**40, "1.0 TiB")],
)
def test_sizes_are_human(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_artifact_rows_show_path_size_and_modified_in_utc() -> None:
    entry = Artifact.model_validate({**ENTRY, "modified": "2026-12-05T11:11:12+01:00"})
    assert artifact_rows([entry]) == [
        ["PATH", "SIZE", "MODIFIED"],
        ["model.pt", "1.2 KiB", "2026-12-05 10:11:12Z"],
    ]


def test_a_bar_only_for_large_files_on_a_terminal() -> None:
    assert shows_bar(2 * 1024**2, terminal=True)
    assert not shows_bar(2 * 1024**2, terminal=False)
    assert not shows_bar(1024, terminal=True)
    assert not shows_bar(None, terminal=True)


def test_the_upload_hint_names_the_ref() -> None:
    hint = upload_hint("uploads/default/r.mat", "upload:r.mat")
    assert hint == "stored as uploads/default/r.mat; use it as a task input with upload:r.mat"
