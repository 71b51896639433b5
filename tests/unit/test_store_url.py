"""`KUBETASK_ARTIFACTS_URL` names the artifact store: a folder or an S3 bucket (and prefix),
with the credentials from the environment or a mounted Secret, never from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetask.storage import FileStore, InvalidStoreUrl, store_from_url
from kubetask.storage.base import content_type
from kubetask.storage.s3 import S3Store
from kubetask.storage.url import (
    FileLocation,
    S3Credentials,
    S3Location,
    parse_store_url,
    s3_credentials,
)

KEYS = {"AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": "secret"}


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("/srv/artifacts", "/srv/artifacts"),
        ("artifacts", "artifacts"),
        ("file:///srv/artifacts", "/srv/artifacts"),
        ("file://localhost/srv/my%20files", "/srv/my files"),
    ],
)
def test_a_folder_is_a_file_store(url: str, root: str) -> None:
    assert parse_store_url(url) == FileLocation(Path(root))


def test_store_from_url_makes_a_file_store_on_the_folder(tmp_path: Path) -> None:
    store = store_from_url(tmp_path.as_uri(), env={})
    assert isinstance(store, FileStore)
    assert store.root == tmp_path.resolve()


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://artifacts", "artifacts", ""),
        ("s3://artifacts/", "artifacts", ""),
        ("s3://my.bucket-1/team/kubetask/", "my.bucket-1", "team/kubetask"),
        ("s3://artifacts//a/./b", "artifacts", "a/b"),
    ],
)
def test_an_s3_url_names_a_bucket_and_a_prefix(url: str, bucket: str, prefix: str) -> None:
    assert parse_store_url(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("gs://bucket", "unsupported scheme 'gs'"),
        ("file://otherhost/x", "file:///absolute/path, on this host"),
        ("file://", "names no folder"),
        ("s3://key:secret@bucket/x", "credentials never go in the URL"),
        ("s3://key@bucket", "credentials never go in the URL"),
        ("s3://bucket/x?endpoint=http://minio", "no query"),
        ("s3://Bucket", "is not a bucket name"),
        ("s3://ab", "is not a bucket name"),
        ("s3://", "is not a bucket name"),
        ("s3://bucket:9000/x", "is not a bucket name"),
        ("s3://bucket/a/../../b", "'..'"),
    ],
)
def test_a_bad_url_is_refused_naming_the_setting(url: str, why: str) -> None:
    with pytest.raises(InvalidStoreUrl) as refused:
        store_from_url(url, env=KEYS)
    assert str(refused.value).startswith(f"KUBETASK_ARTIFACTS_URL={url!r}: ")
    assert why in str(refused.value)


def test_credentials_come_from_the_environment() -> None:
    env = {**KEYS, "AWS_SESSION_TOKEN": "token"}
    assert s3_credentials("s3://b", env, None) == S3Credentials("key-id", "secret", "token")


def test_credentials_come_from_a_mounted_secret(tmp_path: Path) -> None:
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("file-key\n")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("file-secret\n")
    assert s3_credentials("s3://b", KEYS, tmp_path) == S3Credentials("file-key", "file-secret")


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"),
        ({"AWS_ACCESS_KEY_ID": "k"}, "needs AWS_SECRET_ACCESS_KEY in the environment"),
    ],
)
def test_missing_credentials_are_named(env: dict[str, str], missing: str) -> None:
    with pytest.raises(InvalidStoreUrl, match="KUBETASK_ARTIFACTS_URL='s3://bucket'") as refused:
        store_from_url("s3://bucket", env=env)
    assert missing in str(refused.value)


def test_a_secret_folder_without_the_keys_is_named(tmp_path: Path) -> None:
    env = {**KEYS, "KUBETASK_S3_CREDENTIALS_DIR": str(tmp_path)}
    with pytest.raises(InvalidStoreUrl) as refused:
        store_from_url("s3://bucket", env=env)
    assert f"in the folder {tmp_path} (KUBETASK_S3_CREDENTIALS_DIR)" in str(refused.value)


def test_store_from_url_makes_an_s3_store_from_the_settings(tmp_path: Path) -> None:
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("k")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("s")
    env = {"KUBETASK_S3_CREDENTIALS_DIR": str(tmp_path), "AWS_ENDPOINT_URL": "http://s3:9000"}
    store = store_from_url("s3://artifacts/team", env=env)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("artifacts", "team")
    assert repr(store) == "S3Store('s3://artifacts/team')"


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
@pytest.mark.parametrize("name", ["KUBETASK_S3_TIMEOUT_S", "KUBETASK_S3_READ_IDLE_S"])
def test_a_time_limit_that_is_no_positive_number_is_refused_naming_it(
    name: str, value: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name}='{value}': expected a number of seconds"):
        store_from_url("s3://bucket", env={**KEYS, name: value})


def test_the_logs_and_tables_kinds_write_get_a_text_type_on_every_platform() -> None:
    assert content_type("job/logs/output.log") == "text/plain"
    assert content_type("job/features.CSV") == "text/csv"
    assert content_type("job/metrics.json") == "application/json"
    assert content_type("job/plots/confusion.png") == "image/png"
    assert content_type("job/v1.2/model") == "application/octet-stream"


def test_the_models_and_arrays_kinds_write_are_bytes_whatever_mime_types_says() -> None:
    """A machine's /etc/mime.types maps `.pt` to a games console's ROM type."""
    for name in ("model.pt", "last.PT", "dataset.npz", "synthesizer.pkl", "model.onnx", "a.mat"):
        assert content_type(f"job/{name}") == "application/octet-stream", name
