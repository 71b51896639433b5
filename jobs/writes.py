"""How a task writes a file whole: into `<name>.partial`, renamed over the file when done,
removed when the write fails (a full disk must not stay full for the next job; only a
SIGKILL leaves one), and a full disk said as such, with what to do."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from kubetask.jobs.errors import DISK_FULL, TaskError
from kubetask.storage.base import PARTIAL_SUFFIX

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # the disk full, or the owner's quota


class ArtifactStoreFull(TaskError):
    """A file the task wrote did not fit: no space left where its artifacts go. Not
    permanent: a retry writes again, once space was made."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(
            f"writing {path.name} failed: {error.strerror or error}",
            suggestion=DISK_FULL,
        )


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """The path to write `path`'s content at (`path.partial`), renamed over `path` when the
    block ends. When it fails (an error, SIGTERM) the partial file is removed, and a full
    disk is `ArtifactStoreFull`; `path` stays as it was (a previous checkpoint: whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        yield partial
        os.replace(partial, path)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise ArtifactStoreFull(path, error) from error
        raise
    finally:
        partial.unlink(missing_ok=True)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(temporary path)`, then rename it over `path` (`written_whole`)."""
    with written_whole(path) as partial:
        write(partial)
