"""The local side of downloads and uploads, shared by both clients: where a download lands,
the temporary file it is written to (renamed onto its name only once whole; through a
symlink, onto the file it names; straight into a device or pipe, `/dev/null` or a FIFO),
and a local file read in chunks (never whole into memory)."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import BinaryIO

from kubetask.errors import FileChanged

CHUNK = 1024 * 1024  # bytes read or written at a time

PathArg = str | os.PathLike[str]
OnProgress = Callable[[int, int | None], None]  # (bytes so far, size if announced)


def download_target(to: PathArg | None, remote: str) -> Path:
    """The local file a download of `remote` goes to: `to` itself, or (`to` a folder, or
    None for the current one) the remote file's name in it. A `to` ending in '/' is a
    folder, made if missing."""
    name = PurePosixPath(remote).name
    if to is None:
        return Path(name)
    target = Path(to)
    if str(to).endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
    return target / name if target.is_dir() else target


def upload_name(local: PathArg, remote: str | None) -> str:
    """The path an upload is stored under: as given, else the local file's name."""
    return remote if remote else Path(local).name


def chunks(
    file: BinaryIO, *, total: int | None = None, on_progress: OnProgress | None = None
) -> Iterator[bytes]:
    """An open file, a chunk at a time; `on_progress(bytes so far, total)` after each.
    With `total` (the size the request declared), `FileChanged` rather than a byte more
    or, at the end, fewer."""
    done = 0
    while chunk := file.read(CHUNK):
        done += len(chunk)
        check_size(file, total, done, end=False)
        yield chunk
        if on_progress is not None:
            on_progress(done, total)
    check_size(file, total, done, end=True)


def check_size(file: BinaryIO, total: int | None, done: int, *, end: bool) -> None:
    """`FileChanged` once `done` bytes read from `file` are more than `total`, or at its end
    fewer."""
    if total is not None and (done > total or (end and done < total)):
        raise FileChanged(str(getattr(file, "name", "the file")), total, done)


def is_special(path: Path) -> bool:
    """Whether `path` is there and is neither a regular file nor a folder: a device, a pipe
    or a socket, which a download writes into rather than replaces."""
    try:
        mode = path.stat().st_mode
    except OSError:  # missing (or unreadable: opening it says why)
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


class PartFile:
    """A download in progress: written beside its target under a temporary name, renamed
    onto the target when the block ends without an error, removed when it does not (so a
    failed download never leaves a half file under the real name). A symlink is followed:
    the file it names is replaced, the link stays. A device or pipe is written straight
    into: it is never replaced by a file."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._real = real = Path(os.path.realpath(target))  # a symlink's: the file it names
        self.temp: Path | None = None
        if is_special(real):
            self._file = real.open("wb")
            return
        self.temp = real.with_name(f".{real.name}.{secrets.token_hex(4)}.part")
        self._file = self.temp.open("xb")  # the umask's mode, as the renamed file should have

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def finish(self, *, whole: bool) -> None:
        """Close it: renamed onto the target if `whole`, else removed."""
        self._file.close()
        if self.temp is None:
            return  # written into a device or pipe: nothing to rename or take back
        if whole:
            self.temp.replace(self._real)
        else:
            self.temp.unlink(missing_ok=True)

    def __enter__(self) -> PartFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(whole=exc_type is None)
