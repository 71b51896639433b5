"""The API process on object storage, and the same bucket as the test process reaches it."""

from __future__ import annotations

from typing import Any

from kubetask.storage import ArtifactStore, store_from_url
from tests.s3.server import S3Server
from tests.servers import ApiServer


class S3Api(ApiServer):
    """The API with object storage: the endpoint and credentials as the environment, which
    the local backend hands on to its task processes."""

    def __init__(self, *, s3: S3Server, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s3 = s3

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "AWS_ENDPOINT_URL": self.s3.endpoint,
            "AWS_REGION": self.s3.region,
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
        }


def bucket_store(s3: S3Server, url: str) -> ArtifactStore:
    """The store at `url` (s3://bucket/prefix) on `s3`, with its root credentials."""
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    return store_from_url(url, endpoint=s3.endpoint, env=keys)
