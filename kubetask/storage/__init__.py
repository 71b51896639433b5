"""The artifact store: one interface (`ArtifactStore`), a filesystem root (`FileStore`) and
S3-compatible object storage (`S3Store`), chosen by `KUBETASK_ARTIFACTS_URL`
(`store_from_url`). Between the task runtime (kubetask.jobs) and the core."""

from kubetask.storage.base import (
    ArtifactStore,
    ByteRange,
    Entry,
    NotFound,
    RangeNotSatisfiable,
    Reader,
    StoreError,
    UploadFailed,
)
from kubetask.storage.files import FileStore
from kubetask.storage.url import InvalidStoreUrl, store_from_url

__all__ = [
    "ArtifactStore",
    "ByteRange",
    "Entry",
    "FileStore",
    "InvalidStoreUrl",
    "NotFound",
    "RangeNotSatisfiable",
    "Reader",
    "StoreError",
    "UploadFailed",
    "store_from_url",
]
