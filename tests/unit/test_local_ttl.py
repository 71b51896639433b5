"""Finished local jobs' folders go after their TTL; unfinished ones and artifacts stay."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from kubetask.controller.backends.local import LocalBackend
from kubetask.controller.backends.local_ttl import expired, remove_expired

HOUR = 3600.0


def job(root: Path, name: str, *, ended_s_ago: float | None, marker: str = "finished.json") -> Path:
    folder = root / "jobs" / name
    folder.mkdir(parents=True)
    (folder / "job.json").write_text("{}")
    if ended_s_ago is not None:
        end = folder / marker
        end.write_text("{}")
        then = time.time() - ended_s_ago
        os.utime(end, (then, then))
    return folder


def test_only_jobs_ended_longer_ago_than_the_ttl_expire(tmp_path: Path) -> None:
    old = job(tmp_path, "old", ended_s_ago=3 * HOUR)
    cancelled = job(tmp_path, "cancelled", ended_s_ago=2 * HOUR, marker="deleted")
    job(tmp_path, "recent", ended_s_ago=60)
    job(tmp_path, "running", ended_s_ago=None)
    assert expired(tmp_path / "jobs", now=time.time(), ttl_s=HOUR) == [old, cancelled]
    assert remove_expired(tmp_path / "jobs", now=time.time(), ttl_s=HOUR) == ["old", "cancelled"]
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["recent", "running"]


def test_no_jobs_folder_is_nothing_to_remove(tmp_path: Path) -> None:
    assert remove_expired(tmp_path / "missing", now=time.time(), ttl_s=HOUR) == []


def test_the_local_backend_sweeps_on_start(tmp_path: Path) -> None:
    job(tmp_path, "old", ended_s_ago=3 * HOUR)
    job(tmp_path, "recent", ended_s_ago=60)
    artifacts = tmp_path / "artifacts" / "old"
    artifacts.mkdir(parents=True)

    async def start_and_stop() -> None:
        backend = LocalBackend(root=tmp_path, slots=1, finished_ttl_s=HOUR)
        await backend.start()
        await backend.stop()

    asyncio.run(start_and_stop())
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["recent"]
    assert artifacts.exists()  # outputs are the user's
