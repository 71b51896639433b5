"""`FileStore`: the artifact store on a filesystem root (the embedded default, and a
ReadWriteMany volume on clusters that have one). Writes go to a hidden partial file next to
the target and are renamed into place, so a reader sees the whole artifact or none; a path
that leads out of the root through a symlink is refused like a '..'."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from kubetask.params.paths import OutsideTheStore
from kubetask.storage.base import (
    CHUNK,
    PARTIAL_SUFFIX,
    ByteRange,
    Entry,
    NotFound,
    Reader,
    Source,
    UploadFailed,
    chunks_of,
    content_type,
    first_line,
    store_key,
)


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    def _real(self, path: str) -> tuple[str, Path]:
        """The normal key and the real file of `path`, checked to stay inside the root."""
        key = store_key(path)
        try:
            real = self.root.joinpath(key).resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop
            raise OutsideTheStore from None
        if real != self.root and not real.is_relative_to(self.root):
            raise OutsideTheStore
        return key, real

    def _entry(self, key: str, real: Path) -> Entry:
        try:
            info = real.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key) from None
        if not real.is_file():
            raise NotFound(key)
        return Entry(
            path=key,
            size=info.st_size,
            etag=f"{info.st_mtime_ns:x}-{info.st_size:x}",
            content_type=content_type(key),
            modified=datetime.fromtimestamp(info.st_mtime, UTC),
        )

    def list(self, prefix: str = "") -> Iterator[Entry]:
        folder = self._real(prefix)[1] if prefix else self.root
        found: list[Entry] = []
        for directory, _, names in os.walk(folder):
            for name in names:
                if name.endswith(PARTIAL_SUFFIX):
                    continue
                key = Path(directory, name).relative_to(self.root).as_posix()
                with contextlib.suppress(OutsideTheStore, NotFound):
                    found.append(self.stat(key))
        return iter(sorted(found, key=lambda entry: entry.path))

    def stat(self, path: str) -> Entry:
        return self._entry(*self._real(path))

    def remove_stale_partials(self, prefix: str, *, older_than_s: float) -> int:
        """Remove the partial files under `prefix` not written to for `older_than_s` (the
        uploads a killed server left half done), and the folders that leaves empty (else in
        the way of a file of their name); how many went. A write under way is newer."""
        folder = self._real(prefix)[1]
        cutoff = time.time() - older_than_s
        removed = 0
        for directory, _, names in os.walk(folder):
            for name in names:
                path = Path(directory, name)
                with contextlib.suppress(OSError):  # gone meanwhile: nothing to do
                    if name.endswith(PARTIAL_SUFFIX) and path.lstat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                        self._prune(path.parent)
        return removed

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NotFound:
            return False
        return True

    def open(self, path: str, *, byte_range: ByteRange | None = None) -> Reader:
        key, real = self._real(path)
        entry = self._entry(key, real)
        start, stop = byte_range.resolve(key, entry.size) if byte_range else (0, entry.size)
        try:
            file = real.open("rb")
        except FileNotFoundError:
            raise NotFound(key) from None
        file.seek(start)

        def chunks() -> Iterator[bytes]:
            left = stop - start
            while left > 0 and (piece := file.read(min(CHUNK, left))):
                left -= len(piece)
                yield piece

        return Reader(entry, start, stop, chunks(), file.close)

    def write(self, path: str, source: Source) -> Entry:
        key, real = self._real(path)
        # not named after the file: a 255-byte name would make it too long
        partial = real.with_name(f".{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        try:
            with self._create(partial) as out:
                for piece in chunks_of(source):
                    out.write(piece)
            partial.replace(real)
        except Exception as error:
            with contextlib.suppress(OSError):  # a file where a folder should be: no partial
                partial.unlink(missing_ok=True)
                self._prune(partial.parent)  # the folders it made would be in the way
            raise UploadFailed(key, first_line(error)) from error
        return self._entry(key, real)

    @staticmethod
    def _create(partial: Path) -> BinaryIO:
        """The partial file, opened for writing in its folder, made if missing."""
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            return partial.open("wb")
        except FileNotFoundError:  # a delete pruned the folder between the two: once more
            partial.parent.mkdir(parents=True, exist_ok=True)
            return partial.open("wb")

    def delete(self, path: str) -> None:
        key, real = self._real(path)
        self._entry(key, real)  # NotFound
        real.unlink()
        self._prune(real.parent)

    def _prune(self, folder: Path) -> None:
        """Remove the folders a delete (or a failed write) left empty, up to the root: the
        store holds files, as object storage does, and a purged job leaves no folder behind
        (nor a failed upload one that would be in the way of the next)."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone already): what is above is in use too
                return
            folder = folder.parent
