"""Artifact retention: a finished job's files (everything under its prefix, its archived log
too) deleted with its record on `DELETE /v1/jobs/{id}?purge=true`, and, with
`KUBETASK_ARTIFACTS_RETENTION_S` set, by a periodic sweep once they are older than that.

The sweep works from the store itself, not from job records (which expire after
`KUBETASK_RETENTION_S`, possibly before the artifacts): each top-level folder named like a
job id is one job's; its age is that of its newest file (the archived log, written when the
job ended); an unfinished job's folder is never touched, whatever its age. Uploads
(`uploads/<tenant>/`) are not job folders and are kept. The store is sync: listing and
deleting run in a worker thread, never on the event loop. Nothing goes silently: a log line
per job, and the counter `kubetask_artifacts_purged_total{reason}` (jobs purged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from kubetask.controller.clock import Clock, utcnow
from kubetask.controller.ids import is_job_id
from kubetask.storage import ArtifactStore, Entry, FileStore, NotFound

log = logging.getLogger("kubetask.retention")

PURGED = "kubetask_artifacts_purged"  # exposed as kubetask_artifacts_purged_total
MAX_SWEEP_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class JobFolder:
    """One job's files in the store: their paths and when the newest was written."""

    job_id: str
    paths: tuple[str, ...]
    newest: datetime


def job_folders(entries: Iterable[Entry]) -> list[JobFolder]:
    """The store's entries grouped by the job whose prefix holds them (other folders, such
    as uploads, left out), by job id."""
    paths: dict[str, list[str]] = {}
    newest: dict[str, datetime] = {}
    for entry in entries:
        top, sep, _ = entry.path.partition("/")
        if not sep or not is_job_id(top):
            continue
        paths.setdefault(top, []).append(entry.path)
        if top not in newest or entry.modified > newest[top]:
            newest[top] = entry.modified
    return [JobFolder(j, tuple(paths[j]), newest[j]) for j in sorted(paths)]


def due(
    folders: Iterable[JobFolder],
    *,
    unfinished: Collection[str],
    now: datetime,
    retention_s: float,
) -> list[JobFolder]:
    """The folders of finished jobs whose newest file is older than `retention_s`."""
    cutoff = now - timedelta(seconds=retention_s)
    return [f for f in folders if f.job_id not in unfinished and f.newest < cutoff]


def sweep_interval_s(retention_s: float) -> float:
    """How often the sweep looks: a tenth of the retention, at least every second, at most
    hourly."""
    return min(max(retention_s / 10, 1.0), MAX_SWEEP_INTERVAL_S)


def delete_all(store: ArtifactStore, paths: Iterable[str]) -> int:
    """Delete each path (one gone already is no error); how many were deleted. Sync."""
    deleted = 0
    for path in paths:
        with contextlib.suppress(NotFound):
            store.delete(path)
            deleted += 1
    return deleted


def delete_prefix(store: ArtifactStore, job_id: str) -> int:
    """Delete every file under the job's prefix; how many. Sync."""
    deleted = delete_all(store, [entry.path for entry in store.list(job_id)])
    remove_partials(store, job_id)
    return deleted


def remove_partials(store: ArtifactStore, job_id: str) -> None:
    """The partial files a killed task left under the job's prefix (a folder store's: the
    listing hides them), with their folders. Only for a job whose tasks have ended. Sync."""
    if isinstance(store, FileStore):
        store.remove_stale_partials(job_id, older_than_s=0)


class ArtifactJanitor:
    """Deletes jobs' artifacts: on request (`purge`) and, with a retention, by `run`'s sweep."""

    def __init__(
        self,
        *,
        store: ArtifactStore,
        retention_s: float = 0,
        registry: CollectorRegistry | None = None,
        clock: Clock = utcnow,
        settled: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`retention_s`: 0 keeps artifacts forever (no sweep). `registry`: where the
        counter is exposed (the app's metrics). `settled`: until no write of the job's
        files is under way (the log archiver's), awaited by a purge before its last look."""
        self._store = store
        self._settled = settled
        self.retention_s = retention_s
        self._clock = clock
        self._purged = Counter(
            PURGED,
            "Jobs whose artifacts were deleted: reason purge (DELETE ?purge=true) or "
            "retention (KUBETASK_ARTIFACTS_RETENTION_S).",
            ["reason"],
            registry=registry,
        )
        for reason in ("purge", "retention"):
            self._purged.labels(reason)

    async def purge(self, job_id: str, *, forget: Callable[[], Awaitable[bool]]) -> int:
        """Delete every artifact of the job and, through `forget`, its record (asked by a
        user); how many files went. The files first, so a purge that fails part-way can be
        asked again; then once more after the record (and any write under way: a log
        archived meanwhile). Counted and logged by the purge that took the record out (two
        at once both delete, one counts)."""
        deleted = await asyncio.to_thread(delete_prefix, self._store, job_id)
        forgotten = await forget()
        if self._settled is not None:
            await self._settled(job_id)
        deleted += await asyncio.to_thread(delete_prefix, self._store, job_id)
        if forgotten:
            self._purged.labels("purge").inc()
            log.info("job %s purged with its record: %d artifact files deleted", job_id, deleted)
        return deleted

    async def sweep(self, unfinished: Collection[str]) -> list[str]:
        """Delete the artifacts of finished jobs past the retention; the jobs' ids.
        `unfinished`: the ids of the jobs still running (read just before)."""
        if self.retention_s <= 0:
            return []
        now = self._clock()

        def work() -> list[tuple[JobFolder, int]]:
            folders = job_folders(self._store.list())
            done = []
            for folder in due(
                folders, unfinished=unfinished, now=now, retention_s=self.retention_s
            ):
                done.append((folder, delete_all(self._store, folder.paths)))
                remove_partials(self._store, folder.job_id)
            return done

        swept = await asyncio.to_thread(work)
        for folder, deleted in swept:
            self._purged.labels("retention").inc()
            log.info(
                "job %s's artifacts deleted: %d files, the newest written %s, over the "
                "retention of %.0fs",
                folder.job_id,
                deleted,
                folder.newest.isoformat(),
                self.retention_s,
            )
        return [folder.job_id for folder, _ in swept]

    async def run(self, unfinished: Callable[[], Awaitable[Collection[str]]]) -> None:
        """Sweep every `sweep_interval_s`, forever (nothing to do without a retention);
        `unfinished`: the job store's unfinished ids. A failed sweep is logged and tried
        again at the next."""
        if self.retention_s <= 0:
            return
        interval = sweep_interval_s(self.retention_s)
        while True:
            try:
                await self.sweep(await unfinished())
            except Exception:
                log.exception("artifact retention sweep failed; trying again in %.0fs", interval)
            await asyncio.sleep(interval)
