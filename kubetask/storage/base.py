"""The artifact store's interface (`ArtifactStore`) and what every implementation shares:
entries, byte ranges, readers, errors, and the path rule.

Paths are store-relative POSIX paths, checked by the artifact path rule of the params
(`kubetask.params.paths.store_parts`: relative, no '..', no NUL), so nothing a caller names
escapes the store's root (a folder) or prefix (a bucket's). The content type of an entry is
derived from its name, the same on every store (object listings carry none).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import BinaryIO, Protocol

from kubetask.params.paths import store_parts

CHUNK = 1 << 20  # the size of the pieces a reader yields and a writer reads
# A file being written (by a store, a staging or a kind) before it is renamed into place:
# never listed, never uploaded, and no upload may take such a name.
PARTIAL_SUFFIX = ".partial"
FALLBACK_TYPE = "application/octet-stream"


class StoreError(Exception):
    """The artifact store failed; the message says what and where."""


class NotFound(StoreError):
    """No artifact at that path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no artifact at {path!r}")
        self.path = path


class RangeNotSatisfiable(StoreError):
    """The byte range starts past the end of the artifact (HTTP 416)."""

    def __init__(self, path: str, size: int, byte_range: ByteRange) -> None:
        super().__init__(f"byte range {byte_range} is outside {path!r}, which has {size} bytes")
        self.path = path
        self.size = size


class UploadFailed(StoreError):
    """A write did not complete; nothing was stored at the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"writing {path!r} failed: {reason}")
        self.path = path


def first_line(error: BaseException) -> str:
    """What an error says, in one line (libraries append pages of debug detail)."""
    return (str(error) or type(error).__name__).splitlines()[0]


def store_key(path: str) -> str:
    """The normal form of an artifact path (`a//b/./c` is `a/b/c`); `OutsideTheStore`
    (a `ValueError`) for an absolute path, a '..' segment, a NUL or an empty path."""
    return "/".join(store_parts(path))


# What the kinds write, typed the same whatever this machine's /etc/mime.types says (it
# differs by OS; one maps .pt to a games console's ROM type)
KNOWN_TYPES = {
    ".log": "text/plain",
    ".csv": "text/csv",
    ".json": "application/json",
    ".png": "image/png",
    **dict.fromkeys((".pt", ".pth", ".npz", ".npy", ".pkl", ".onnx", ".mat"), FALLBACK_TYPE),
}


def content_type(path: str) -> str:
    suffix = path[path.rfind(".") :].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in KNOWN_TYPES:
        return KNOWN_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or FALLBACK_TYPE


@dataclass(frozen=True)
class Entry:
    path: str  # store-relative
    size: int
    etag: str  # opaque: changes when the content does (bare, without HTTP's quotes)
    content_type: str
    modified: datetime  # timezone-aware, UTC


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start`..`end` (inclusive, as in HTTP; `end=None`: to the end), or the last
    `suffix` bytes."""

    start: int = 0
    end: int | None = None
    suffix: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or (self.end is not None and self.end < self.start):
            raise ValueError(f"invalid byte range: start {self.start}, end {self.end}")
        if self.suffix is not None and (self.suffix <= 0 or self.start or self.end is not None):
            raise ValueError("a suffix range takes a positive length and no start or end")

    def __str__(self) -> str:
        if self.suffix is not None:
            return f"bytes=-{self.suffix}"
        return f"bytes={self.start}-{'' if self.end is None else self.end}"

    def resolve(self, path: str, size: int) -> tuple[int, int]:
        """`(start, stop)` (stop exclusive) within an artifact of `size` bytes; a range
        ending past the end stops there; `RangeNotSatisfiable` when it starts past the end."""
        if self.suffix is not None:
            if size == 0:
                raise RangeNotSatisfiable(path, size, self)
            return max(0, size - self.suffix), size
        if self.start >= size:
            raise RangeNotSatisfiable(path, size, self)
        return self.start, size if self.end is None else min(self.end + 1, size)


class Reader:
    """An open artifact: its entry, the bytes `start`..`stop` (exclusive) it yields, in
    chunks, as it is iterated; closes what it holds on `close()` or leaving a `with`."""

    def __init__(
        self,
        entry: Entry,
        start: int,
        stop: int,
        chunks: Iterator[bytes],
        close: Callable[[], None],
    ) -> None:
        self.entry = entry
        self.start = start
        self.stop = stop
        self._chunks = chunks
        self._close = close

    @property
    def length(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


Source = BinaryIO | Iterable[bytes]


def chunks_of(source: Source, size: int = CHUNK) -> Iterator[bytes]:
    """A stream's content in pieces of at most `size` bytes (a file-like object is read
    piece by piece; an iterable of bytes passes as it is)."""
    read = getattr(source, "read", None)
    if read is not None:
        while piece := read(size):
            yield piece
        return
    for piece in source:
        if piece:
            yield bytes(piece)


class ArtifactStore(Protocol):
    """Where artifacts live: a filesystem root (`FileStore`) or S3-compatible object storage
    (`S3Store`). Every path is store-relative; see the module docstring."""

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Every artifact under the folder `prefix` (all when empty), by path."""
        ...

    def stat(self, path: str) -> Entry:
        """The artifact's entry; `NotFound` when there is none."""
        ...

    def exists(self, path: str) -> bool: ...

    def open(self, path: str, *, byte_range: ByteRange | None = None) -> Reader:
        """A streaming reader of the artifact (or of `byte_range` of it); `NotFound`,
        `RangeNotSatisfiable`."""
        ...

    def write(self, path: str, source: Source) -> Entry:
        """Store a stream at `path` (replacing what was there), read piece by piece; whole or
        not at all: `UploadFailed` when the stream or the store fails."""
        ...

    def delete(self, path: str) -> None:
        """Remove the artifact; `NotFound` when there is none."""
        ...
