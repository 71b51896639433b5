"""Staging a task's files through object storage: the kinds keep reading and writing files
under a local artifacts root, and with an `s3://` store (`KUBETASK_ARTIFACTS_URL`) that root is
a scratch folder this module fills before the runner and empties into the store after it.

- in: the job's own prefix first (a retry resumes from the checkpoint an earlier attempt
  left), then every artifact path of the params (a file, a folder: all below it, a glob: the
  listing of its fixed leading folders, matched as `Path.glob` does) at the same relative path;
- out: every file under `<job id>/` that is new or changed since staging in (so a worker of an
  Indexed job does not re-upload, stale, what another worker wrote), streamed; whether the
  task succeeded or not, so a failed attempt's checkpoint reaches the next one.

Works against the `ArtifactStore` interface: a `FileStore` stands in for a bucket in tests.
"""

from __future__ import annotations

import fnmatch
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubetask import env
from kubetask.jobs.errors import TaskError
from kubetask.params.paths import GLOB_CHARS, OutsideTheStore, store_parts
from kubetask.params.refs import PathValue
from kubetask.storage import ArtifactStore, StoreError, UploadFailed, store_from_url
from kubetask.storage.base import PARTIAL_SUFFIX, first_line
from kubetask.storage.url import S3Location, parse_store_url


class StagingFailed(TaskError):
    """Moving a file between the store and the scratch folder failed; the message names the
    file and says the store's reason in one line."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(
            message,
            suggestion=f"Check the artifact store ({env.ARTIFACTS_URL}): that its bucket "
            "exists and the task's credentials may read and write it. A retry stages again.",
        )
        self.path = path


def _reason(error: BaseException, key: str) -> str:
    """The store's one-line reason (an `UploadFailed` already names the file: not twice)."""
    reason = first_line(error)
    if isinstance(error, UploadFailed):
        return reason.removeprefix(f"writing {key!r} failed: ")
    return reason


def _read_failure(error: BaseException, key: str, store: ArtifactStore) -> str:
    """What follows "downloading <key> from <store> failed": the store's one-line reason,
    less its own naming of the file and the store (`: <reason>`, or ` after N of M bytes:
    <reason>` for a read cut partway)."""
    reason = first_line(error)
    named = f"reading {key!r} in {store!r} failed"
    return reason.removeprefix(named) if reason.startswith(named) else f": {reason}"


def remote_store(environ: Mapping[str, str]) -> ArtifactStore | None:
    """The object store the task stages through, or None when the artifacts are a folder
    (`KUBETASK_ARTIFACTS_URL` unset, or a folder's URL): then nothing is copied."""
    url = environ.get(env.ARTIFACTS_URL)
    if not url or not isinstance(parse_store_url(url), S3Location):
        return None
    return store_from_url(url, env=environ)


def glob_matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether a path's segments match a glob's, as `Path.glob` matches: each segment by
    `fnmatch` (case-sensitive), `**` for any number of folders."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(glob_matches(pattern[1:], parts[skip:]) for skip in range(len(parts) + 1))
    return bool(parts) and (
        fnmatch.fnmatchcase(parts[0], pattern[0]) and glob_matches(pattern[1:], parts[1:])
    )


def fixed_folder(pattern: tuple[str, ...]) -> str:
    """The leading segments of a glob without wildcards: the prefix to list."""
    fixed: list[str] = []
    for segment in pattern[:-1]:
        if GLOB_CHARS & set(segment) or segment == "**":
            break
        fixed.append(segment)
    return "/".join(fixed)


def named_keys(store: ArtifactStore, value: str, *, glob: bool) -> list[str]:
    """The store's keys an artifact path names: the file (of that very name, glob characters
    or not), or everything below the folder; for a glob, the matches. None when it names
    nothing (the kind then says so)."""
    try:
        parts = store_parts(value)
    except OutsideTheStore:
        return []  # the runtime's own check refuses it, naming the field
    key = "/".join(parts)
    if store.exists(key):  # the file of that very name, one like rec[1].mat too
        return [key]
    if glob and GLOB_CHARS & set(value):
        prefix = fixed_folder(parts)
        listing = store.list(prefix) if prefix else store.list()
        return [e.path for e in listing if glob_matches(parts, tuple(e.path.split("/")))]
    return [entry.path for entry in store.list(key)]


Stamp = tuple[int, int]  # (size, mtime in ns) of a staged file


def _stamp(path: Path) -> Stamp:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


@dataclass
class Staging:
    """One task's staging between `store` and the scratch folder `root`."""

    store: ArtifactStore
    root: Path
    job_id: str
    staged: dict[str, Stamp] = field(default_factory=dict)  # key -> stamp when downloaded

    def download(self, key: str) -> None:
        """One artifact to the same relative path under `root`, whole or not at all."""
        target = self.root.joinpath(*store_parts(key))
        partial = target.with_name(f".{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.store.open(key) as reader, partial.open("wb") as out:
                for piece in reader:
                    out.write(piece)
            partial.replace(target)
        except (StoreError, OSError) as error:
            partial.unlink(missing_ok=True)
            reason = _read_failure(error, key, self.store)
            message = f"downloading {key!r} from {self.store!r} failed{reason}"
            raise StagingFailed(key, message) from error
        self.staged[key] = _stamp(target)

    def stage_in(self, inputs: Iterable[PathValue]) -> list[str]:
        """The job's own prefix, then each input's files; the keys downloaded, in order."""
        try:
            keys = [entry.path for entry in self.store.list(self.job_id)]
            for item in inputs:
                keys += named_keys(self.store, item.value, glob=item.glob)
        except StoreError as error:
            message = f"finding the inputs in {self.store!r} failed: {first_line(error)}"
            raise StagingFailed(self.job_id, message) from error
        done = list(dict.fromkeys(keys))
        for key in done:
            self.download(key)
        return done

    def outputs(self) -> list[str]:
        """The keys of the files under `<job id>/` that are new or changed since staging in
        (the finished ones: a kind's half-written `.partial` files stay behind)."""
        folder = self.root / self.job_id
        changed: list[str] = []
        for directory, _, names in os.walk(folder):
            for name in sorted(names):
                path = Path(directory, name)
                if name.endswith(PARTIAL_SUFFIX) or not path.is_file() or path.is_symlink():
                    continue
                key = path.relative_to(self.root).as_posix()
                if self.staged.get(key) != _stamp(path):
                    changed.append(key)
        return sorted(changed)

    def stage_out(self) -> list[str]:
        """Upload the outputs, each streamed from its file; the keys uploaded.
        `StagingFailed` naming the first file that could not be."""
        uploaded: list[str] = []
        for key in self.outputs():
            try:
                with self.root.joinpath(key).open("rb") as source:
                    self.store.write(key, source)
            except (StoreError, OSError) as error:
                message = f"uploading {key!r} to {self.store!r} failed: {_reason(error, key)}"
                raise StagingFailed(key, message) from error
            uploaded.append(key)
        return uploaded
