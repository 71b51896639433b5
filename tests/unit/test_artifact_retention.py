"""Artifact retention (controller/retention.py) over a real FileStore in a temp folder: which
job folders the sweep deletes (finished, newest file past the retention; never an
unfinished job's, never uploads), what a purge deletes and in which order, and that each
deletion is counted in `kubetask_artifacts_purged_total` and logged."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kubetask.controller.retention import (
    ArtifactJanitor,
    JobFolder,
    due,
    job_folders,
    sweep_interval_s,
)
from kubetask.storage import Entry, FileStore
from kubetask.storage.base import PARTIAL_SUFFIX

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD, NEW, RUNNING = "0000000000000001", "0000000000000002", "0000000000000003"
HOUR = 3600


def entry(path: str, age_s: float) -> Entry:
    return Entry(path, 1, "e", "text/plain", NOW - timedelta(seconds=age_s))


def put(store: FileStore, path: str, age_s: float) -> None:
    store.write(path, [b"x"])
    when = (NOW - timedelta(seconds=age_s)).timestamp()
    os.utime(store.root / path, (when, when))


def purged(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("kubetask_artifacts_purged_total", {"reason": reason})


def test_job_folders_group_by_job_and_leave_other_folders_out() -> None:
    entries = [
        entry(f"{OLD}/model.pt", 5 * HOUR),
        entry(f"{OLD}/logs/output.log", 2 * HOUR),
        entry("uploads/team-a/data.mat", 9 * HOUR),
        entry("loose-file", 9 * HOUR),
        entry("not-a-job/x", 9 * HOUR),
    ]
    (folder,) = job_folders(entries)
    assert folder == JobFolder(
        OLD, (f"{OLD}/model.pt", f"{OLD}/logs/output.log"), NOW - timedelta(hours=2)
    )


def test_due_are_finished_jobs_whose_newest_file_is_past_the_retention() -> None:
    folders = [
        JobFolder(OLD, (), NOW - timedelta(hours=3)),
        JobFolder(NEW, (), NOW - timedelta(minutes=30)),
        JobFolder(RUNNING, (), NOW - timedelta(hours=30)),
    ]
    chosen = due(folders, unfinished={RUNNING}, now=NOW, retention_s=HOUR)
    assert [f.job_id for f in chosen] == [OLD]


def test_the_sweep_deletes_only_what_is_due_counts_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubetask.retention")
    store = FileStore(tmp_path)
    put(store, f"{OLD}/model.pt", 3 * HOUR)
    put(store, f"{OLD}/logs/output.log", 2 * HOUR)
    put(store, f"{NEW}/model.pt", 60)
    put(store, f"{RUNNING}/checkpoint.pt", 9 * HOUR)
    put(store, "uploads/team-a/data.mat", 9 * HOUR)
    for job in (OLD, RUNNING):  # a task killed as it wrote; one still writing
        (tmp_path / job / f".0a1b{PARTIAL_SUFFIX}").write_bytes(b"half")
    registry = CollectorRegistry()
    janitor = ArtifactJanitor(store=store, retention_s=HOUR, registry=registry, clock=lambda: NOW)
    assert purged(registry, "retention") == 0  # exposed before anything went

    assert asyncio.run(janitor.sweep({RUNNING})) == [OLD]
    left = [e.path for e in store.list()]
    assert left == [f"{NEW}/model.pt", f"{RUNNING}/checkpoint.pt", "uploads/team-a/data.mat"]
    assert purged(registry, "retention") == 1
    assert f"job {OLD}'s artifacts deleted: 2 files" in caplog.text
    assert not (tmp_path / OLD).exists()
    assert (tmp_path / RUNNING / f".0a1b{PARTIAL_SUFFIX}").exists()
    assert asyncio.run(janitor.sweep({RUNNING})) == []  # nothing more is due


def test_without_a_retention_nothing_is_swept(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    put(store, f"{OLD}/model.pt", 1000 * HOUR)
    janitor = ArtifactJanitor(store=store, retention_s=0, clock=lambda: NOW)
    assert asyncio.run(janitor.sweep(set())) == []
    asyncio.run(asyncio.wait_for(janitor.run(lambda: asyncio.sleep(0, [])), 1))  # returns
    assert [e.path for e in store.list()] == [f"{OLD}/model.pt"]


def test_a_purge_deletes_the_prefix_forgets_the_record_and_catches_a_late_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubetask.retention")
    store = FileStore(tmp_path)
    put(store, f"{OLD}/model.pt", 60)
    put(store, f"{OLD}/deep/er/file.csv", 60)
    put(store, f"{NEW}/model.pt", 60)
    registry = CollectorRegistry()
    janitor = ArtifactJanitor(store=store, registry=registry)
    forgotten: list[list[str]] = []

    async def forget() -> bool:  # the record goes after the files; a log archived meanwhile
        forgotten.append([e.path for e in store.list(OLD)])
        store.write(f"{OLD}/logs/output.log", [b"late"])
        return len(forgotten) == 1  # a second purge finds no record

    left = tmp_path / OLD / "models" / f".0a1b{PARTIAL_SUFFIX}"  # a task killed as it wrote
    left.parent.mkdir()
    left.write_bytes(b"half")
    assert asyncio.run(janitor.purge(OLD, forget=forget)) == 3
    assert forgotten == [[]]
    assert [e.path for e in store.list()] == [f"{NEW}/model.pt"]
    assert not (tmp_path / OLD).exists()
    assert purged(registry, "purge") == 1
    assert f"job {OLD} purged with its record: 3 artifact files deleted" in caplog.text
    asyncio.run(janitor.purge(OLD, forget=forget))  # asked twice at once: both delete
    assert purged(registry, "purge") == 1  # one job, counted once


def test_the_sweep_looks_a_tenth_of_the_retention_between_a_second_and_an_hour() -> None:
    assert sweep_interval_s(2) == 1.0
    assert sweep_interval_s(600) == 60.0
    assert sweep_interval_s(30 * 24 * HOUR) == HOUR
