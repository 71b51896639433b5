"""The artifact store's contract, the same for both stores: a filesystem root (in tmp_path)
and S3-compatible object storage (a fresh bucket on the real MinIO of `s3_server`)."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetask.params.paths import OutsideTheStore
from kubetask.storage import (
    ArtifactStore,
    ByteRange,
    FileStore,
    NotFound,
    RangeNotSatisfiable,
    StoreError,
    UploadFailed,
    store_from_url,
)
from tests.s3.server import S3Server

MiB = 1 << 20


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file":
        return FileStore(tmp_path / "artifacts")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = server.make_bucket(f"test-{uuid.uuid4().hex[:12]}")
    env = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    return store_from_url(f"s3://{bucket}/some/prefix", endpoint=server.endpoint, env=env)


def read(store: ArtifactStore, path: str, byte_range: ByteRange | None = None) -> bytes:
    with store.open(path, byte_range=byte_range) as reader:
        return b"".join(reader)


def test_what_is_written_reads_back_with_its_entry(store: ArtifactStore) -> None:
    entry = store.write("job-1/model.json", [b'{"layers": ', b"3}"])
    assert read(store, "job-1/model.json") == b'{"layers": 3}'
    assert (entry.path, entry.size, entry.content_type) == (
        "job-1/model.json",
        13,
        "application/json",
    )
    assert entry.etag
    assert entry.modified.tzinfo is not None
    assert store.stat("job-1/model.json").etag == entry.etag
    assert store.exists("job-1/model.json")


def test_a_file_like_source_is_written_and_a_rewrite_replaces_it(
    store: ArtifactStore, tmp_path: Path
) -> None:
    local = tmp_path / "local.csv"
    local.write_bytes(b"a,b\n1,2\n")
    with local.open("rb") as source:
        first = store.write("job-1/data.csv", source)
    second = store.write("job-1/data.csv", [b"a,b\n"])
    assert read(store, "job-1/data.csv") == b"a,b\n"
    assert first.etag != second.etag
    assert second.content_type == "text/csv"


def test_listing_gives_every_artifact_under_a_folder_with_sizes_and_etags(
    store: ArtifactStore,
) -> None:
    store.write("job-1/a.txt", [b"aaa"])
    store.write("job-1/deep/b.bin", [b"bb"])
    store.write("job-10/c.txt", [b"c"])
    listed = {entry.path: entry for entry in store.list("job-1")}
    assert sorted(listed) == ["job-1/a.txt", "job-1/deep/b.bin"]  # not job-10's
    assert listed["job-1/a.txt"].size == 3
    assert listed["job-1/a.txt"].etag == store.stat("job-1/a.txt").etag
    assert listed["job-1/deep/b.bin"].content_type == "application/octet-stream"
    assert [entry.path for entry in store.list()] == [
        "job-1/a.txt",
        "job-1/deep/b.bin",
        "job-10/c.txt",
    ]
    assert list(store.list("nobody")) == []


@pytest.mark.parametrize(
    ("byte_range", "expected"),
    [
        (ByteRange(0, 3), b"0123"),  # the first bytes
        (ByteRange(4, 6), b"456"),  # the middle
        (ByteRange(7), b"789"),  # from a byte to the end
        (ByteRange(suffix=2), b"89"),  # the last bytes
        (ByteRange(suffix=50), b"0123456789"),  # a suffix longer than the artifact: all
        (ByteRange(8, 99), b"89"),  # ending past the end: stops there
    ],
)
def test_a_byte_range_reads_just_those_bytes(
    store: ArtifactStore, byte_range: ByteRange, expected: bytes
) -> None:
    store.write("job-1/digits.txt", [b"0123456789"])
    with store.open("job-1/digits.txt", byte_range=byte_range) as reader:
        assert b"".join(reader) == expected
        assert reader.length == len(expected)
        assert reader.entry.size == 10


def test_a_range_starting_past_the_end_is_refused_clearly(store: ArtifactStore) -> None:
    store.write("job-1/digits.txt", [b"0123456789"])
    with pytest.raises(RangeNotSatisfiable, match=r"bytes=10-.*'job-1/digits.txt'.*10 bytes"):
        store.open("job-1/digits.txt", byte_range=ByteRange(10))


def test_an_empty_artifact_reads_as_nothing(store: ArtifactStore) -> None:
    assert store.write("job-1/empty", []).size == 0
    assert read(store, "job-1/empty") == b""


def test_a_missing_path_is_not_found_everywhere(store: ArtifactStore) -> None:
    for call in (store.stat, store.open, store.delete):
        with pytest.raises(NotFound, match=r"no artifact at 'job-1/missing\.txt'"):
            call("job-1/missing.txt")
    assert not store.exists("job-1/missing.txt")


def test_delete_removes_the_artifact(store: ArtifactStore) -> None:
    store.write("job-1/a.txt", [b"a"])
    store.delete("job-1/a.txt")
    assert not store.exists("job-1/a.txt")
    assert list(store.list("job-1")) == []


@pytest.mark.parametrize("path", ["../escape.txt", "job-1/../../x", "/etc/passwd", "", "a\x00b"])
def test_paths_outside_the_store_are_refused(store: ArtifactStore, path: str) -> None:
    with pytest.raises(OutsideTheStore):
        store.write(path, [b"x"])
    with pytest.raises(OutsideTheStore):
        store.stat(path)
    with pytest.raises(OutsideTheStore):
        store.open(path)


def test_a_large_stream_is_written_piece_by_piece_and_read_back(store: ArtifactStore) -> None:
    """20 MiB from a generator that makes each MiB as it is asked for (never all at once):
    a multipart upload on object storage."""
    piece = hashlib.sha256(b"kubetask").digest() * (MiB // 32)
    made: list[int] = []

    def pieces() -> Iterator[bytes]:
        for index in range(20):
            made.append(index)
            yield piece

    entry = store.write("job-1/big.bin", pieces())
    assert entry.size == 20 * MiB
    assert made == list(range(20))
    digest = hashlib.sha256()
    with store.open("job-1/big.bin") as reader:
        for chunk in reader:
            assert len(chunk) <= 16 * MiB  # streamed, not the whole file at once
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(piece * 20).hexdigest()
    with store.open("job-1/big.bin", byte_range=ByteRange(15 * MiB, 15 * MiB + 3)) as reader:
        assert b"".join(reader) == piece[:4]


@pytest.mark.parametrize("size", [10, 9 * MiB])  # one request; a multipart upload
def test_a_failed_upload_surfaces_and_stores_nothing(store: ArtifactStore, size: int) -> None:
    store.write("job-1/kept.txt", [b"kept"])

    def failing() -> Iterator[bytes]:
        yield from itertools.repeat(b"x" * (size // 10), 10)
        raise OSError("the source went away")

    with pytest.raises(
        UploadFailed, match=r"writing 'job-1/out\.bin' failed: the source went away"
    ):
        store.write("job-1/out.bin", failing())
    assert not store.exists("job-1/out.bin")
    assert [entry.path for entry in store.list()] == ["job-1/kept.txt"]


# -- what is particular to each store ------------------------------------------------------


def s3_store(server: S3Server, url: str) -> ArtifactStore:
    env = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    return store_from_url(url, endpoint=server.endpoint, env=env)


def test_an_s3_store_keeps_to_its_prefix(s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket(f"test-{uuid.uuid4().hex[:12]}")
    s3_store(s3_server, f"s3://{bucket}/team-a/artifacts").write("job-1/a.txt", [b"a"])
    s3_store(s3_server, f"s3://{bucket}/team-b").write("job-1/b.txt", [b"b"])
    whole_bucket = s3_store(s3_server, f"s3://{bucket}")
    assert [entry.path for entry in whole_bucket.list()] == [
        "team-a/artifacts/job-1/a.txt",
        "team-b/job-1/b.txt",
    ]
    assert [entry.path for entry in s3_store(s3_server, f"s3://{bucket}/team-b").list()] == [
        "job-1/b.txt"
    ]


def test_an_s3_store_on_a_missing_bucket_fails_clearly(s3_server: S3Server) -> None:
    store = s3_store(s3_server, "s3://no-such-bucket/prefix")
    no_bucket = "NoSuchBucket: The specified bucket does not exist"
    with pytest.raises(UploadFailed, match=rf"writing 'a\.txt' failed: {no_bucket}"):
        store.write("a.txt", [b"a"])
    with pytest.raises(
        StoreError, match=rf"listing S3Store\('s3://no-such-bucket/prefix'\) failed: {no_bucket}"
    ):
        list(store.list())


def test_a_file_store_refuses_a_symlink_out_of_its_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "artifacts"
    (root / "job-1").mkdir(parents=True)
    (root / "job-1" / "link").symlink_to(outside)
    store = FileStore(root)
    with pytest.raises(OutsideTheStore):
        store.open("job-1/link/secret.txt")
    with pytest.raises(OutsideTheStore):
        store.write("job-1/link/new.txt", [b"x"])
    assert not (outside / "new.txt").exists()
    assert list(store.list()) == []


def test_a_file_store_delete_leaves_no_empty_folder_behind(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.write("job-1/logs/output.log", [b"log"])
    store.write("job-1/model.pt", [b"m"])
    store.delete("job-1/logs/output.log")
    assert sorted(p.name for p in (tmp_path / "job-1").iterdir()) == ["model.pt"]
    store.delete("job-1/model.pt")
    assert list(tmp_path.iterdir()) == []  # the job's folder went with its last file
    assert tmp_path.is_dir()  # never the root
    store.write("job-1/logs/output.log", [b"again"])  # and a write makes its folders again
    assert [e.path for e in store.list()] == ["job-1/logs/output.log"]


def test_a_file_store_lists_no_write_in_progress(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    seen: list[list[str]] = []

    def pieces() -> Iterator[bytes]:
        yield b"half"
        seen.append([entry.path for entry in store.list()])
        yield b" and the rest"

    store.write("job-1/out.txt", pieces())
    assert seen == [[]]
    assert [entry.path for entry in store.list()] == ["job-1/out.txt"]
