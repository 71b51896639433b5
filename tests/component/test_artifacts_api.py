"""Artifacts over REST against the real API process, on both stores: the FileStore default
(the artifacts folder) and S3 on the real MinIO (`KUBETASK_ARTIFACTS_URL=s3://bucket/prefix`).

Task processes still write job outputs to the local folder whatever the store (task-side
staging comes later), so job outputs are checked on the FileStore leg (a datagen job's
dataset listed, downloaded, uploaded again and used as `upload:<path>`), and on the S3 leg
the API's own writes (uploads) and files this test puts under a job's prefix in the bucket.
"""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import scipy.io

from kubetask.api.render import render
from kubetask.api.settings import Settings
from kubetask.controller.errors import InvalidRequest
from kubetask.controller.redis_server import free_port
from kubetask.storage import ArtifactStore, FileStore
from tests.s3.api import S3Api, bucket_store
from tests.s3.server import S3Server
from tests.servers import TERMINAL, ApiServer, bearer_clients, own_database

PROBLEM = "application/problem+json"
TOKENS = {"a": ("team-a", "user"), "b": ("team-b", "user"), "root": ("ops", "admin")}
MAX_UPLOAD = 256 * 1024
MAX_BODY = 64 * 1024  # the JSON routes' limit: uploads keep their own, larger one
BLOB = bytes(range(256)) * 4  # 1000+ bytes with a recognisable content


def token(name: str) -> str:
    return f"{name}-token-{'q' * 24}"


@dataclass
class Leg:
    name: str
    server: ApiServer
    store: ArtifactStore  # the same store, as this test process reaches it
    clients: dict[str, httpx.Client]


@pytest.fixture(scope="module", params=["file", "s3"])
def leg(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Leg]:
    root = tmp_path_factory.mktemp(f"artifacts-{request.param}")
    tokens = root / "tokens.json"
    tokens.write_text(
        json.dumps([{"token": token(n), "tenant": t, "role": r} for n, (t, r) in TOKENS.items()])
    )
    common = {
        "redis_url": own_database(redis_url),
        "data_dir": root / "api",
        "tokens_file": tokens,
        "max_upload_bytes": MAX_UPLOAD,
        "max_body_bytes": MAX_BODY,
    }
    store: ArtifactStore
    if request.param == "file":
        server: ApiServer = ApiServer(**common)  # type: ignore[arg-type]
        store = FileStore(root / "api" / "artifacts")
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.make_bucket(f"api-{uuid.uuid4().hex[:12]}")
        url = f"s3://{bucket}/kubetask"
        server = S3Api(s3=s3, artifacts_url=url, **common)
        store = bucket_store(s3, url)
    server.start()
    try:
        with bearer_clients(server.base_url, {n: token(n) for n in TOKENS}) as clients:
            yield Leg(request.param, server, store, clients)
    finally:
        server.close()
    log = (root / "api" / "api.log").read_text()
    assert "Traceback" not in log, log[-4000:]  # no 500, no error swallowed


def noop_job(client: httpx.Client) -> str:
    response = client.post("/v1/jobs", json={"kind": "noop"})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait(client: httpx.Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def fields(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"] == PROBLEM, response.text
    return {e["field"]: e["type"] for e in response.json()["errors"]}


def test_a_jobs_file_downloads_whole_in_ranges_and_conditionally(leg: Leg) -> None:
    a = leg.clients["a"]
    job_id = noop_job(a)
    leg.store.write(f"{job_id}/out/blob.bin", [BLOB])
    url = f"/v1/jobs/{job_id}/artifacts/out/blob.bin"

    whole = a.get(url)
    assert whole.status_code == 200
    assert whole.content == BLOB
    assert whole.headers["content-length"] == str(len(BLOB))
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["last-modified"].endswith(" GMT")
    etag = whole.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert len(etag) > 2

    for header, start, stop in [
        ("bytes=10-19", 10, 20),
        ("bytes=1000-", 1000, len(BLOB)),
        ("bytes=-5", len(BLOB) - 5, len(BLOB)),
        ("bytes=1020-99999", 1020, len(BLOB)),
    ]:
        part = a.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == BLOB[start:stop]
        assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(BLOB)}"
        assert part.headers["content-length"] == str(stop - start)
        head = a.head(url, headers={"Range": header})  # what a GET would say, no body
        assert (head.status_code, head.content) == (206, b"")
        assert head.headers["content-range"] == part.headers["content-range"]

    head = a.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert {k: head.headers[k] for k in ("etag", "content-length", "content-type")} == {
        k: whole.headers[k] for k in ("etag", "content-length", "content-type")
    }
    assert a.head(f"/v1/jobs/{job_id}/artifacts/out/none.bin").status_code == 404

    assert a.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert a.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200
    resumed = a.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert (resumed.status_code, resumed.content) == (206, BLOB[10:20])
    changed = a.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert (changed.status_code, changed.content) == (200, BLOB)  # the new version, whole
    assert whole.headers["x-content-type-options"] == "nosniff"
    assert whole.headers["content-security-policy"] == "sandbox"
    past = a.get(url, headers={"Range": f"bytes={len(BLOB)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(BLOB)}"
    assert past.headers["content-type"] == PROBLEM

    listing = a.get(f"/v1/jobs/{job_id}/artifacts")
    assert listing.status_code == 200
    [entry] = [e for e in listing.json()["items"] if e["path"] == "out/blob.bin"]
    assert (entry["size"], entry["etag"]) == (len(BLOB), etag)
    assert entry["modified"].endswith("Z")


def test_another_tenants_job_and_missing_files_are_404(leg: Leg) -> None:
    a, b, root = leg.clients["a"], leg.clients["b"], leg.clients["root"]
    job_id = noop_job(a)
    leg.store.write(f"{job_id}/secret.txt", [b"team-a's"])
    for client, status in ((b, 404), (root, 200), (a, 200)):
        assert client.get(f"/v1/jobs/{job_id}/artifacts").status_code == status
        assert client.get(f"/v1/jobs/{job_id}/artifacts/secret.txt").status_code == status
    theirs = b.get(f"/v1/jobs/{job_id}/artifacts/secret.txt")
    assert theirs.headers["content-type"] == PROBLEM
    assert a.get(f"/v1/jobs/{job_id}/artifacts/nothing.txt").status_code == 404
    assert a.get("/v1/jobs/0000000000000000/artifacts").status_code == 404
    fresh = noop_job(b)
    if leg.name == "s3":  # the task wrote nothing to the bucket: no files yet
        assert b.get(f"/v1/jobs/{fresh}/artifacts").json() == {"items": []}


def test_paths_outside_their_folder_are_refused(leg: Leg) -> None:
    a = leg.clients["a"]
    job_id = noop_job(a)
    leg.store.write("uploads/team-b/private.txt", [b"team-b's"])
    for path in ("%2E%2E/%2E%2E/uploads/team-b/private.txt", "a/%2E%2E/%2E%2E/x", "x%00y"):
        response = a.get(f"/v1/jobs/{job_id}/artifacts/{path}")
        assert response.status_code == 422, (path, response.text)
        assert fields(response) == {"path": "artifact_path"}
    for path in ("%2E%2E/team-b/private.txt", "%2Fetc/passwd", "a/%2E%2E/%2E%2E/b"):
        response = a.put(f"/v1/uploads/{path}", content=b"x")
        assert response.status_code == 422, (path, response.text)
        assert fields(response) == {"path": "artifact_path"}
    for path in ("x" * 256, "/".join(["abc"] * 300)):  # a segment, or the whole, too long
        response = a.put(f"/v1/uploads/{path}", content=b"x")
        assert fields(response) == {"path": "artifact_path"}
    if leg.name == "file":  # a symlink a task left, leading out of the store: not followed
        outside = leg.server.data_dir / "outside"
        outside.mkdir(exist_ok=True)
        (outside / "secret.txt").write_text("not an artifact")
        (leg.server.data_dir / "artifacts" / job_id).mkdir(parents=True, exist_ok=True)
        (leg.server.data_dir / "artifacts" / job_id / "escape").symlink_to(outside)
        assert a.get(f"/v1/jobs/{job_id}/artifacts/escape/secret.txt").status_code == 404
        listed = a.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
        assert all("secret" not in e["path"] for e in listed)
    listing = a.get("/v1/uploads", params={"prefix": "../team-b"})
    assert listing.status_code == 422
    assert fields(listing) == {"prefix": "artifact_path"}
    assert leg.store.stat("uploads/team-b/private.txt").size == len(b"team-b's")


def test_uploads_are_the_tenants_own_and_a_second_put_replaces(leg: Leg) -> None:
    a, b = leg.clients["a"], leg.clients["b"]
    first = a.put("/v1/uploads/recordings/run 1.mat", content=BLOB)
    assert first.status_code == 201, first.text
    assert first.json()["path"] == "uploads/team-a/recordings/run 1.mat"
    assert first.json()["size"] == len(BLOB)
    again = a.put("/v1/uploads/recordings/run 1.mat", content=b"shorter")
    assert again.status_code == 200
    assert again.json()["size"] == len(b"shorter")
    assert again.json()["etag"] != first.json()["etag"]
    with leg.store.open("uploads/team-a/recordings/run 1.mat") as reader:
        assert b"".join(reader) == b"shorter"

    a.put("/v1/uploads/notes.txt", content=b"n")
    listed = {e["path"]: e for e in a.get("/v1/uploads").json()["items"]}
    assert {"recordings/run 1.mat", "notes.txt"} <= set(listed)
    assert listed["recordings/run 1.mat"]["size"] == len(b"shorter")
    assert listed["recordings/run 1.mat"]["etag"] == again.json()["etag"]
    in_folder = a.get("/v1/uploads", params={"prefix": "recordings"}).json()["items"]
    assert [e["path"] for e in in_folder] == ["recordings/run 1.mat"]
    assert all(e["path"] != "notes.txt" for e in b.get("/v1/uploads").json()["items"])
    # a folder is no file, on either store (S3 could hold both, and list neither well)
    in_the_way = a.put("/v1/uploads/recordings", content=b"x")
    assert in_the_way.status_code == 409, in_the_way.text
    assert "'uploads/team-a/recordings/run 1.mat'" in in_the_way.json()["detail"]
    under_a_file = a.put("/v1/uploads/notes.txt/inside", content=b"x")
    assert under_a_file.status_code == 409, under_a_file.text
    assert under_a_file.json()["detail"].endswith("'uploads/team-a/notes.txt'")
    assert a.put("/v1/uploads/notes.txt.old", content=b"o").status_code == 201  # no prefix clash
    assert a.put("/v1/uploads/recordings2/x", content=b"o").status_code == 201


def test_an_upload_over_the_limit_is_413_and_stores_nothing(leg: Leg) -> None:
    a = leg.clients["a"]
    declared = a.put("/v1/uploads/big.bin", content=b"x" * (MAX_UPLOAD + 1))
    assert declared.status_code == 413
    assert declared.headers["content-type"] == PROBLEM

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"y" * 65536

    streamed = a.put("/v1/uploads/streamed.bin", content=chunks())
    assert streamed.status_code == 413, streamed.text
    assert not leg.store.exists("uploads/team-a/big.bin")
    assert not leg.store.exists("uploads/team-a/streamed.bin")
    # nor a folder of it: it would be in the way of a file of that name
    assert a.put("/v1/uploads/toobig/sub/file.bin", content=chunks()).status_code == 413
    assert a.put("/v1/uploads/toobig", content=b"fits").status_code == 201
    # over the JSON routes' limit is fine for an upload within its own
    assert a.put("/v1/uploads/fits.bin", content=b"z" * MAX_UPLOAD).status_code in (200, 201)
    assert a.post("/v1/jobs", content=b" " * (MAX_BODY + 1)).status_code == 413


@pytest.mark.parametrize("name", ["tab\tx", "nl\nx", "bell\x07", "del\x7f", "c1\x85", "a\\..\\b"])
def test_a_path_with_a_control_character_or_a_backslash_is_422_everywhere(
    leg: Leg, name: str
) -> None:
    """Linux takes such a name, S3 does not: no store holds one (it was a 500 on S3)."""
    a = leg.clients["a"]
    quoted_name = quote(name)
    put = a.put(f"/v1/uploads/{quoted_name}", content=b"x")
    assert (put.status_code, fields(put)) == (422, {"path": "artifact_path"})
    listing = a.get("/v1/uploads", params={"prefix": name})
    assert (listing.status_code, fields(listing)) == (422, {"prefix": "artifact_path"})
    job_id = noop_job(a)
    download = a.get(f"/v1/jobs/{job_id}/artifacts/{quoted_name}")
    assert (download.status_code, fields(download)) == (422, {"path": "artifact_path"})
    body = {"kind": "features", "params": {"dataset": f"upload:{name}"}}
    submitted = a.post("/v1/jobs", json=body)
    assert submitted.status_code == 422
    assert list(fields(submitted)) == ["params.dataset"]


def test_any_name_a_filesystem_takes_is_an_upload_but_a_partial_ones(leg: Leg) -> None:
    """A 255-byte name (the store's own partial file is not named after it), and a name a
    write in progress has is refused: no listing would show it."""
    a = leg.clients["a"]
    longest = "n" * 255
    assert a.put(f"/v1/uploads/long/{longest}", content=b"x").status_code == 201, longest
    assert [e["path"] for e in a.get("/v1/uploads", params={"prefix": "long"}).json()["items"]] == [
        f"long/{longest}"
    ]
    partial = a.put("/v1/uploads/data.npz.partial", content=b"x")
    assert (partial.status_code, fields(partial)) == (422, {"path": "artifact_path"})


def test_one_tenants_slow_uploads_hold_up_neither_its_reads_nor_other_tenants(leg: Leg) -> None:
    """Uploads that send their body slowly each hold a thread while it comes: a tenant has
    at most 4 under way (more: 429), on threads of their own, so reads still answer."""
    host, port = "127.0.0.1", leg.server.port
    auth = f"Authorization: Bearer {token('a')}\r\n"
    slow = []
    try:
        for n in range(4):
            conn = socket.create_connection((host, port), timeout=10)
            head = f"PUT /v1/uploads/slow/{n}.bin HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
            conn.sendall(f"{head}Content-Length: 100\r\n\r\nfirst bytes".encode())
            slow.append(conn)
            conn.settimeout(0.5)  # no answer: it waits for the rest of its body
            with pytest.raises(TimeoutError):
                conn.recv(1000)
        refused = leg.clients["a"].put("/v1/uploads/fifth.bin", content=b"x")
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "5"
        job_id = noop_job(leg.clients["b"])
        listed = leg.clients["b"].get(f"/v1/jobs/{job_id}/artifacts", timeout=5)
        assert listed.status_code == 200
        theirs = leg.clients["b"].put("/v1/uploads/theirs.bin", content=b"y", timeout=5)
        assert theirs.status_code in (200, 201), theirs.text
    finally:
        for conn in slow:
            conn.close()
    for _ in range(100):  # the cut-off ones are let go
        again = leg.clients["a"].put("/v1/uploads/fifth.bin", content=b"x")
        if again.status_code != 429:
            break
        time.sleep(0.05)
    assert again.status_code in (200, 201), again.text


def test_an_upload_is_an_input_by_upload_path(leg: Leg) -> None:
    a = leg.clients["a"]
    a.put("/v1/uploads/data/ds.npz", content=b"not really npz")
    body = {"kind": "features", "params": {"dataset": "upload:data/ds.npz"}}
    dry = a.post("/v1/jobs", params={"dry_run": "true"}, json=body)
    assert dry.status_code == 200, dry.text
    assert dry.json()["request"]["params"]["dataset"] == "uploads/team-a/data/ds.npz"
    missing = a.post(
        "/v1/jobs", json={"kind": "features", "params": {"dataset": "upload:data/no.npz"}}
    )
    assert missing.status_code == 422
    assert fields(missing) == {"params.dataset": "upload_not_found"}
    # another tenant's upload:<path> is its own area, where there is nothing
    theirs = leg.clients["b"].post("/v1/jobs", params={"dry_run": "true"}, json=body)
    assert fields(theirs) == {"params.dataset": "upload_not_found"}


def test_a_datagen_dataset_lists_downloads_and_runs_again_as_an_upload(leg: Leg) -> None:
    a = leg.clients["a"]
    made = a.post("/v1/jobs", json={"kind": "datagen", "params": {"n_per_class": 2, "length": 64}})
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    job = wait(a, job_id)
    assert job["state"] == "succeeded", job
    listing = {e["path"]: e for e in a.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
    with leg.store.open(f"{job_id}/dataset.npz") as reader:  # on S3: staged out by the task
        stored = b"".join(reader)
    entry = listing["dataset.npz"]
    assert entry["size"] == len(stored)
    assert entry["content_type"] == "application/octet-stream"
    assert entry["etag"].startswith('"')
    dataset = a.get(f"/v1/jobs/{job_id}/artifacts/dataset.npz")
    assert dataset.content == stored

    assert a.put("/v1/uploads/mine/dataset.npz", content=dataset.content).status_code == 201
    body = {"kind": "features", "params": {"dataset": "upload:mine/dataset.npz"}}
    submitted = a.post("/v1/jobs", json=body)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["request"]["params"]["dataset"] == "uploads/team-a/mine/dataset.npz"
    features = wait(a, submitted.json()["id"])
    assert features["state"] == "succeeded", features


def mat_file(hz: float) -> bytes:
    """A MATLAB v5 file of a 12 kHz vibration signal."""
    t = np.arange(2000) / 12_000
    out = io.BytesIO()
    scipy.io.savemat(out, {"X100_DE_time": np.sin(2 * np.pi * hz * t)[:, None]})
    return out.getvalue()


def test_mat_import_runs_on_files_uploaded_through_the_api(leg: Leg) -> None:
    a = leg.clients["a"]
    for label, hz in (("inner", 160.0), ("outer", 105.0)):
        put = a.put(f"/v1/uploads/bearing/{label}/a.mat", content=mat_file(hz))
        assert put.status_code == 201, put.text
    params = {"files": "upload:bearing/**/*.mat", "segment_length": 1000, "sample_rate": 12_000}
    made = a.post("/v1/jobs", json={"kind": "mat-import", "params": params})
    assert made.status_code == 201, made.text
    assert made.json()["request"]["params"]["files"] == "uploads/team-a/bearing/**/*.mat"
    job = wait(a, made.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["class_counts"] == {"inner": 2, "outer": 2}
    listed = [e["path"] for e in a.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]]
    assert "dataset.npz" in listed

    # a name with glob characters names that very file (`upload` prints it as its ref)
    assert a.put("/v1/uploads/odd/rec[1].mat", content=mat_file(160.0)).status_code == 201
    params = {"files": "upload:odd/rec[1].mat", "segment_length": 1000, "sample_rate": 12_000}
    bracketed = wait(
        a, a.post("/v1/jobs", json={"kind": "mat-import", "params": params}).json()["id"]
    )
    assert bracketed["state"] == "succeeded", bracketed
    assert bracketed["result"]["files_imported"] == 1


def test_render_resolves_an_upload_in_the_store_as_the_server_does(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, artifacts_dir=tmp_path / "artifacts")
    body = json.dumps({"kind": "features", "params": {"dataset": "upload:lab/ds.npz"}})
    with pytest.raises(InvalidRequest, match=r"no upload 'lab/ds\.npz'"):
        render(body, settings)
    FileStore(tmp_path / "artifacts").write("uploads/default/lab/ds.npz", [b"npz"])
    assert "uploads/default/lab/ds.npz" in render(body, settings)


def test_an_unreachable_store_is_503_not_an_error(redis_url: str, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = S3Api(
        s3=S3Server(tmp_path / "none", port=int(closed.rsplit(":", 1)[1])),
        redis_url=own_database(redis_url),
        data_dir=tmp_path / "api",
        artifacts_url="s3://nowhere/x",
    )
    server.start()
    try:
        listing = server.client.get("/v1/uploads")
        assert listing.status_code == 503, listing.text
        assert listing.headers["retry-after"]
        put = server.client.put("/v1/uploads/a.bin", content=b"a")
        assert put.status_code == 503, put.text
        body = {"kind": "features", "params": {"dataset": "upload:a.bin"}}
        submitted = server.client.post("/v1/jobs", json=body)
        assert submitted.status_code == 503, submitted.text
        assert submitted.headers["content-type"] == PROBLEM
    finally:
        server.close()
    assert "Traceback" not in (tmp_path / "api" / "api.log").read_text()
