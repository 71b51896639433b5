"""Whether an `upload:<path>` names something in the artifact store (controller/chaining.py
asks at submit): a file, a folder with files below it, or for a glob pattern, files below
the folder its literal leading segments name (what matches is the task's to find). The
store is sync: `upload_check` runs each question in a worker thread."""

from __future__ import annotations

import asyncio

from kubetask.controller.chaining import UploadCheck
from kubetask.params.paths import has_wildcards, store_parts
from kubetask.storage import ArtifactStore


def literal_folder(path: str) -> str:
    """The leading segments of a glob pattern before the first one with a wildcard."""
    parts = store_parts(path)
    literal: list[str] = []
    for part in parts:
        if has_wildcards((part,)):
            break
        literal.append(part)
    return "/".join(literal)


def has_files(store: ArtifactStore, path: str, *, glob: bool = False) -> bool:
    """Whether `path` is a file of `store`, or a folder (or a glob's folder) with files."""
    if glob and has_wildcards(store_parts(path)):
        path = literal_folder(path)
    elif store.exists(path):
        return True
    return next(iter(store.list(path)), None) is not None


def upload_check(store: ArtifactStore) -> UploadCheck:
    """`has_files` on `store`, off the event loop."""

    async def check(path: str, glob: bool) -> bool:
        return await asyncio.to_thread(has_files, store, path, glob=glob)

    return check
