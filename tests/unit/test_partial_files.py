"""A task whose write fails removes its own `.partial` file (a full disk must not stay full
for the next job; only a SIGKILL leaves one), keeps what was there whole, and a full disk
fails it with a suggestion to free space on the artifact store. The disk is full for real:
the partial file's name leads to /dev/full, where every write fails with ENOSPC."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kubetask import env
from kubetask.jobs.runtime import TaskEnv, run_task
from kubetask.jobs.writes import ArtifactStoreFull, write_atomically, written_whole

FULL = Path("/dev/full")
JOB = "0000000000abcdef"
pytestmark = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full here")


def on_a_full_disk(path: Path) -> Path:
    """`path`'s partial file, made to write to a full disk."""
    partial = path.with_name(path.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.symlink_to(FULL)
    return partial


def test_a_task_that_fills_the_disk_leaves_no_partial_file_and_says_free_space(
    tmp_path: Path,
) -> None:
    dataset = tmp_path / JOB / "dataset.npz"
    partial = on_a_full_disk(dataset)
    environ = {
        env.JOB_ID: JOB,
        env.ARTIFACTS: str(tmp_path),
        env.PARAMS: json.dumps({"n_per_class": 50, "length": 1024}),
    }

    code, outcome = run_task("datagen", TaskEnv.from_environ(environ, "datagen"), None)

    assert (code, outcome.ok) == (env.EXIT_FAILED, False)  # retried, once space is made
    assert not partial.exists()
    assert not partial.is_symlink()
    assert not dataset.exists()
    assert outcome.error is not None
    assert "No space left on device" in outcome.error.message
    assert "dataset.npz" in outcome.error.message
    assert outcome.error.suggestion is not None
    assert "no space left" in outcome.error.suggestion
    assert "free some" in outcome.error.suggestion


def test_a_failed_write_keeps_the_file_it_replaces_whole(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"epoch 3")
    partial = on_a_full_disk(checkpoint)

    with pytest.raises(ArtifactStoreFull), written_whole(checkpoint) as path:
        path.write_bytes(b"epoch 4" * 100_000)

    assert checkpoint.read_bytes() == b"epoch 3"
    assert not partial.is_symlink()
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_any_failed_write_removes_its_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "seed.csv"

    def half_then_fail(path: Path) -> None:
        path.write_text("a,b\n1,")
        raise RuntimeError("the writer broke")

    with pytest.raises(RuntimeError, match="the writer broke"):
        write_atomically(target, half_then_fail)

    assert os.listdir(target.parent) == []


def test_a_finished_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("old")
    with written_whole(target) as path:
        path.write_text("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["model.pt"]
