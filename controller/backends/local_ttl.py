"""The local backend's `ttlSecondsAfterFinished`: a finished job's folder (its spec, pods,
logs) is removed once it has been finished for longer than the TTL. Artifacts are the
user's outputs and live elsewhere (the artifact store); they are never touched here.

The sweep reads one directory listing and at most two stats per folder (no path objects per
entry); the backend runs it in a thread, off the event loop."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

END_MARKERS = ("finished.json", "deleted")  # written when a job ends, or is deleted


def finished_at(job_dir: Path | str) -> float | None:
    """When the job ended (its end marker's mtime); None while it has not."""
    times = []
    for name in END_MARKERS:
        try:
            times.append(os.stat(os.path.join(job_dir, name)).st_mtime)
        except OSError:
            continue
    return min(times) if times else None


def expired(jobs_dir: Path, *, now: float, ttl_s: float) -> list[Path]:
    """The folders of jobs that ended more than `ttl_s` before `now`, oldest first."""
    try:
        entries = list(os.scandir(jobs_dir))
    except OSError:
        return []
    ended = []
    for entry in entries:
        if entry.is_dir() and (t := finished_at(entry.path)) is not None and now - t > ttl_s:
            ended.append((t, entry.name))
    return [jobs_dir / name for _, name in sorted(ended)]


def remove_expired(jobs_dir: Path, *, now: float, ttl_s: float) -> list[str]:
    """Remove the expired folders; the ids of the jobs removed."""
    removed = []
    for job_dir in expired(jobs_dir, now=now, ttl_s=ttl_s):
        shutil.rmtree(job_dir, ignore_errors=True)
        removed.append(job_dir.name)
    return removed
