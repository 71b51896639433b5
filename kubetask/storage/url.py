"""`store_from_url`: the artifact store named by the setting `KUBETASK_ARTIFACTS_URL`.

- a folder: `file:///srv/artifacts` or a plain path (`/srv/artifacts`, `artifacts`);
- S3-compatible object storage: `s3://bucket` or `s3://bucket/prefix`, with the endpoint and
  region as settings of their own (`AWS_ENDPOINT_URL`, `AWS_REGION`; or arguments) and the
  credentials never in the URL: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
  `AWS_SESSION_TOKEN`) from the environment (a Secret's `envFrom`), or files of those names
  in the folder `KUBETASK_S3_CREDENTIALS_DIR` names (the same Secret, mounted); its time
  limits from `KUBETASK_S3_TIMEOUT_S` and `KUBETASK_S3_READ_IDLE_S` (or arguments).

Parsing is pure (`parse_store_url`, `s3_credentials` over a mapping); every refusal names
the setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kubetask import env as contract
from kubetask.params.paths import OutsideTheStore
from kubetask.storage.base import ArtifactStore, store_key
from kubetask.storage.files import FileStore

SETTING = "KUBETASK_ARTIFACTS_URL"
CREDENTIALS_DIR = "KUBETASK_S3_CREDENTIALS_DIR"
KEY_ID, SECRET, TOKEN = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"
DEFAULT_REGION = "us-east-1"
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
EXPECTED = "expected a folder (file:///path or a plain path) or s3://bucket[/prefix]"


class InvalidStoreUrl(ValueError):
    """The artifact store setting cannot be used; the message names it and says why."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"{SETTING}={url!r}: {why}")


@dataclass(frozen=True)
class FileLocation:
    root: Path


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # normal form, '' for the whole bucket


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def parse_store_url(url: str) -> FileLocation | S3Location:
    if not url.strip():
        raise InvalidStoreUrl(url, f"empty; {EXPECTED}")
    parts = urlsplit(url)
    if parts.scheme == "":
        return FileLocation(Path(url))
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"} or parts.query or parts.fragment:
            raise InvalidStoreUrl(url, "a file URL is file:///absolute/path, on this host")
        if not parts.path:
            raise InvalidStoreUrl(url, "names no folder")
        return FileLocation(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return _s3_location(url)
    raise InvalidStoreUrl(url, f"unsupported scheme {parts.scheme!r}; {EXPECTED}")


def _s3_location(url: str) -> S3Location:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise InvalidStoreUrl(
            url,
            f"credentials never go in the URL: give {KEY_ID} and {SECRET} in the environment "
            f"or as files in the folder {CREDENTIALS_DIR} names (a Secret)",
        )
    if parts.query or parts.fragment:
        raise InvalidStoreUrl(url, "no query or fragment (endpoint and region are settings)")
    if not BUCKET.fullmatch(parts.netloc):
        raise InvalidStoreUrl(
            url, f"{parts.netloc!r} is not a bucket name (3-63 of a-z, 0-9, '.', '-')"
        )
    prefix = unquote(parts.path).strip("/")
    try:
        prefix = store_key(prefix) if prefix else ""
    except OutsideTheStore:
        raise InvalidStoreUrl(url, "the prefix may not have '..' segments") from None
    return S3Location(parts.netloc, prefix)


def s3_credentials(url: str, env: Mapping[str, str], folder: Path | None) -> S3Credentials:
    """The credentials from the files in `folder` when given, else from `env`."""
    if folder is not None:
        values = {
            name: (folder / name).read_text().strip()
            for name in (KEY_ID, SECRET, TOKEN)
            if (folder / name).is_file()
        }
        where = f"the folder {folder} ({CREDENTIALS_DIR})"
    else:
        values = {name: env[name] for name in (KEY_ID, SECRET, TOKEN) if env.get(name)}
        where = f"the environment (or files in the folder {CREDENTIALS_DIR} names)"
    missing = [name for name in (KEY_ID, SECRET) if not values.get(name)]
    if missing:
        raise InvalidStoreUrl(url, f"object storage needs {' and '.join(missing)} in {where}")
    return S3Credentials(values[KEY_ID], values[SECRET], values.get(TOKEN))


def seconds(env: Mapping[str, str], name: str) -> float | None:
    """A time limit from `env` (None: not set); `ValueError` naming it unless positive."""
    text = env.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={text!r}: expected a number of seconds above 0")
    return value


def store_from_url(
    url: str,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    timeout_s: float | None = None,
    read_idle_s: float | None = None,
    env: Mapping[str, str] | None = None,
) -> ArtifactStore:
    """The store `url` names (see the module docstring); `InvalidStoreUrl` if it cannot be."""
    env = os.environ if env is None else env
    location = parse_store_url(url)
    if isinstance(location, FileLocation):
        return FileStore(location.root)
    folder = env.get(CREDENTIALS_DIR)
    credentials = s3_credentials(url, env, Path(folder) if folder else None)
    from kubetask.storage.s3 import READ_IDLE_S, TIMEOUT_S, S3Store  # only where it is used

    return S3Store(
        bucket=location.bucket,
        prefix=location.prefix,
        endpoint=endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
        region=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
        session_token=credentials.session_token,
        timeout_s=timeout_s or seconds(env, contract.S3_TIMEOUT) or TIMEOUT_S,
        read_idle_s=read_idle_s or seconds(env, contract.S3_READ_IDLE) or READ_IDLE_S,
    )
