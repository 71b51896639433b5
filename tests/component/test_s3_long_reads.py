"""Reads from object storage that last longer than a request may: a slow reader, a slow link
and a store that stops answering mid-body, against the real MinIO of `s3_server` (through
`SlowLink` where the network matters), with the store's limits cut to 1 s so that each test
takes seconds. A read streams to its end however long it takes; a store silent for the idle
limit fails it as a `StoreError` naming the key (staging: `StagingFailed` naming the file),
and an API download cut short by it ends with one log line. The limits are settings
(`KUBETASK_S3_TIMEOUT_S`, `KUBETASK_S3_READ_IDLE_S`) that tasks are handed too."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from kubetask.controller.redis_server import free_port
from kubetask.jobs.staging import Staging, StagingFailed
from kubetask.storage import ByteRange, StoreError, store_from_url
from kubetask.storage.base import PARTIAL_SUFFIX
from kubetask.storage.s3 import S3Store
from tests.component.slow_link import SlowLink
from tests.s3.api import S3Api
from tests.s3.server import S3Server
from tests.servers import own_database

MiB = 1 << 20
LIMIT_S = 1.0  # each metadata request's limit, and a read's idle limit, in these tests
KEY = "job-1/inputs/big.bin"
CONTENT = hashlib.sha256(b"kubetask").digest() * (4 * MiB // 32)


def s3_store(
    server: S3Server, bucket: str, endpoint: str | None = None, *, max_retries: int = 0
) -> S3Store:
    return S3Store(
        bucket=bucket,
        prefix="some/prefix",
        endpoint=endpoint or server.endpoint,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        max_retries=max_retries,
        timeout_s=LIMIT_S,
        read_idle_s=LIMIT_S,
    )


def read_into(got: bytearray, pieces: Iterable[bytes]) -> None:
    """`pieces` to the end, each added to `got` as it comes (what came before a failure
    stays there)."""
    for piece in pieces:
        got += piece


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket holding `CONTENT` (4 MiB) at `KEY`."""
    name = s3_server.make_bucket(f"test-{uuid.uuid4().hex[:12]}")
    s3_store(s3_server, name).write(KEY, [CONTENT])
    return name


@pytest.fixture
def link(s3_server: S3Server) -> Iterator[SlowLink]:
    with SlowLink(upstream_port=s3_server.port, port=free_port()) as proxy:
        yield proxy


def test_a_slow_reader_reads_to_the_end_past_the_request_limit(
    s3_server: S3Server, bucket: str
) -> None:
    """An API client downloading at its own pace: the read outlasts the request limit."""
    store = s3_store(s3_server, bucket)
    started = time.monotonic()
    got = bytearray()
    with store.open(KEY) as reader:
        for piece in reader:
            got += piece
            time.sleep(LIMIT_S / 2)  # 4 pieces of 1 MiB: 2 s in all
    assert time.monotonic() - started > 2 * LIMIT_S
    assert got == CONTENT


def test_a_slow_link_streams_a_range_to_the_end_past_the_request_limit(
    s3_server: S3Server, bucket: str, link: SlowLink
) -> None:
    link.rate = 1.5 * MiB  # 3 MiB: 2 s, never silent for 1 s
    store = s3_store(s3_server, bucket, link.endpoint)
    started = time.monotonic()
    with store.open(KEY, byte_range=ByteRange(MiB)) as reader:
        got = b"".join(reader)
    assert time.monotonic() - started > 1.5 * LIMIT_S
    assert got == CONTENT[MiB:]


def test_staging_in_an_input_slower_than_the_request_limit_succeeds(
    s3_server: S3Server, bucket: str, link: SlowLink, tmp_path: Path
) -> None:
    link.rate = 2 * MiB  # 4 MiB: 2 s
    staging = Staging(s3_store(s3_server, bucket, link.endpoint), tmp_path, "job-1")
    assert staging.stage_in([]) == [KEY]
    assert (tmp_path / KEY).read_bytes() == CONTENT


@pytest.mark.parametrize(
    ("max_retries", "retried"), [(0, ""), (1, " (after 1 retry)"), (2, " (after 2 retries)")]
)
def test_a_store_silent_mid_read_fails_it_naming_the_key_in_bounded_time(
    s3_server: S3Server, bucket: str, link: SlowLink, max_retries: int, retried: str
) -> None:
    link.stall_after = 2 * MiB  # the HEAD's answer, then part of the body: then nothing
    store = s3_store(s3_server, bucket, link.endpoint, max_retries=max_retries)
    got = bytearray()
    started = time.monotonic()
    with pytest.raises(StoreError) as caught, store.open(KEY) as reader:
        read_into(got, reader)
    assert time.monotonic() - started < (max_retries + 3) * LIMIT_S
    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(
        r"reading 'job-1/inputs/big\.bin' in S3Store\('s3://test-\w+/some/prefix'\) failed"
        rf" after \d+ of 4194304 bytes: the store sent nothing for 1 s{re.escape(retried)}",
        message,
    ), message
    assert 0 < len(got) < 2 * MiB


def test_a_connection_cut_once_mid_read_resumes_where_it_stopped(
    s3_server: S3Server, bucket: str, link: SlowLink
) -> None:
    link.stall_after, link.cut, link.heal = 2 * MiB, True, True
    store = s3_store(s3_server, bucket, link.endpoint, max_retries=1)
    with store.open(KEY) as reader:
        assert b"".join(reader) == CONTENT
    assert link.passed < len(CONTENT) + 2 * MiB  # the rest, not all of it again


def test_a_connection_cut_mid_read_fails_it_naming_the_key(
    s3_server: S3Server, bucket: str, link: SlowLink
) -> None:
    link.stall_after, link.cut = 2 * MiB, True
    store = s3_store(s3_server, bucket, link.endpoint)
    with pytest.raises(StoreError) as caught, store.open(KEY) as reader:
        b"".join(reader)
    assert re.fullmatch(
        r"reading 'job-1/inputs/big\.bin' in S3Store\('s3://test-\w+/some/prefix'\) failed"
        r" after \d+ of 4194304 bytes: the connection was cut",
        str(caught.value),
    ), str(caught.value)


def test_a_silent_store_still_fails_metadata_calls_in_bounded_time(
    s3_server: S3Server, bucket: str, link: SlowLink
) -> None:
    link.stall_after = 0
    store = s3_store(s3_server, bucket, link.endpoint)
    for call in (lambda: store.stat(KEY), lambda: list(store.list())):
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"failed: "):
            call()
        assert time.monotonic() - started < 3 * LIMIT_S


def test_staging_in_from_a_store_silent_mid_read_fails_naming_the_file(
    s3_server: S3Server, bucket: str, link: SlowLink, tmp_path: Path
) -> None:
    link.stall_after = 2 * MiB
    store = s3_store(s3_server, bucket, link.endpoint)
    with pytest.raises(StagingFailed) as caught:
        Staging(store, tmp_path, "job-1").download(KEY)
    assert caught.value.path == KEY
    assert re.fullmatch(
        r"downloading 'job-1/inputs/big\.bin' from S3Store\('s3://test-\w+/some/prefix'\)"
        r" failed after \d+ of 4194304 bytes: the store sent nothing for 1 s",
        str(caught.value),
    ), str(caught.value)
    assert caught.value.suggestion
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no partial file, no input
    assert not list(tmp_path.rglob(f"*{PARTIAL_SUFFIX}"))


def test_the_limits_a_task_is_handed_in_its_environment_hold(
    s3_server: S3Server, bucket: str, link: SlowLink
) -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "KUBETASK_S3_TIMEOUT_S": str(LIMIT_S),
        "KUBETASK_S3_READ_IDLE_S": str(LIMIT_S),
    }
    store = store_from_url(f"s3://{bucket}/some/prefix", endpoint=link.endpoint, env=environ)
    link.stall_after = 2 * MiB
    with pytest.raises(StoreError, match=r"the store sent nothing for 1 s"), store.open(KEY) as r:
        b"".join(r)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"failed: "):
        store.stat(KEY)  # the link is silent now: the whole request's limit, 3 retries
    assert time.monotonic() - started < 10 * LIMIT_S  # not the default's 30 s


def test_an_api_download_the_store_stops_sending_ends_short_with_one_log_line(
    s3_server: S3Server, bucket: str, link: SlowLink, redis_url: str, tmp_path: Path
) -> None:
    api = S3Api(
        s3=s3_server,
        redis_url=own_database(redis_url),
        data_dir=tmp_path / "api",
        artifacts_url=f"s3://{bucket}/some/prefix",
        s3_endpoint=link.endpoint,
        s3_read_idle_s=LIMIT_S,
    )
    api.start()
    try:
        job_id = api.submit("noop", {"steps": 0})
        s3_store(s3_server, bucket).write(f"{job_id}/big.bin", [CONTENT])
        link.stall_after = link.passed + 2 * MiB
        got = bytearray()
        started = time.monotonic()
        with api.client.stream("GET", f"/v1/jobs/{job_id}/artifacts/big.bin") as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(CONTENT))
            with pytest.raises(httpx.RemoteProtocolError):  # fewer bytes than Content-Length
                read_into(got, response.iter_bytes())
        assert time.monotonic() - started < 10 * LIMIT_S
        assert 0 < len(got) < len(CONTENT)
        assert api.client.get("/readyz").status_code == 200  # the server serves on
        log = api.log_tail()
        (line,) = [line for line in log.splitlines() if "cut short" in line]
        assert re.search(rf"a download was cut short: reading '{job_id}/big\.bin'", line), line
        assert "Traceback" not in log
        assert "Exception in ASGI application" not in log
    finally:
        api.close()
