"""The local backend's `ttlSecondsAfterFinished`: a finished job's folder (its spec, pods,
logs) is removed once it has been finished for longer than the TTL. Artifacts are the
user's outputs and live elsewhere (the artifact store); they are never touched here."""

from __future__ import annotations

import shutil
from pathlib import Path

END_MARKERS = ("finished.json", "deleted")  # written when a job ends, or is deleted


def finished_at(job_dir: Path) -> float | None:
    """When the job ended (its end marker's mtime); None while it has not."""
    times = [(job_dir / name).stat().st_mtime for name in END_MARKERS if (job_dir / name).exists()]
    return min(times) if times else None


def expired(jobs_dir: Path, *, now: float, ttl_s: float) -> list[Path]:
    """The folders of jobs that ended more than `ttl_s` before `now`, oldest first."""
    if not jobs_dir.is_dir():
        return []
    ended = [(t, d) for d in jobs_dir.iterdir() if d.is_dir() and (t := finished_at(d))]
    return [d for t, d in sorted(ended) if now - t > ttl_s]


def remove_expired(jobs_dir: Path, *, now: float, ttl_s: float) -> list[str]:
    """Remove the expired folders; the ids of the jobs removed."""
    removed = []
    for job_dir in expired(jobs_dir, now=now, ttl_s=ttl_s):
        shutil.rmtree(job_dir, ignore_errors=True)
        removed.append(job_dir.name)
    return removed
