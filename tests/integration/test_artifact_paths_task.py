"""The task runtime's own check of artifact paths, the second line behind the API's (issue
13, point 1): a task process, run as its container runs it, refuses (exit 2, invalid params,
never retried) a path that leads out of the store or out of the folder it names through a
symlink, before it reads a byte; and its answer for a path outside the store is the same
whether that path exists or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kubetask import env
from kubetask.jobs.kinds.ml.matfiles import write_examples
from tests.integration.task_process import run_task

JOB = "0abcdefgh1234567"


def write_dataset(path: Path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        np.savez(
            file,
            X=np.full((4, 256), value, dtype=np.float32),
            y=np.array([0, 1, 0, 1]),
            classes=np.array(["normal", "imbalance"]),
            sample_rate=np.array(2000.0),
        )


def test_a_dataset_symlinked_out_of_the_store_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    store = tmp_path / "artifacts"
    write_dataset(tmp_path / "private" / "data.npz", 1234.5)
    (store / JOB).mkdir(parents=True)
    (store / JOB / "dataset.npz").symlink_to(tmp_path / "private" / "data.npz")

    run = run_task(
        "features", {"dataset": f"{JOB}/dataset.npz", "bands": 2}, job_id="0abcdefghfeatures",
        root=tmp_path,
    )  # fmt: skip
    assert run.exit_code == env.EXIT_INVALID_PARAMS, run.outcome
    error = run.outcome["error"]
    assert error["type"] == "InvalidParams"
    assert error["message"].startswith(f"dataset: artifact path '{JOB}/dataset.npz' leads outside")
    assert str(tmp_path / "private") not in error["message"]
    assert "result" not in run.outcome
    assert not (store / "0abcdefghfeatures" / "features.csv").exists()


def test_mat_files_reached_through_a_symlinked_folder_are_refused(tmp_path: Path) -> None:
    write_examples(tmp_path / "elsewhere")
    uploads = tmp_path / "artifacts" / "uploads" / "default"
    uploads.mkdir(parents=True)
    (uploads / "recordings").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    run = run_task(
        "mat-import", {"files": "uploads/default/recordings/**/*.mat"}, job_id="0abcdefghmatimprt",
        root=tmp_path,
    )  # fmt: skip
    assert run.exit_code == env.EXIT_INVALID_PARAMS, run.outcome
    assert run.outcome["error"]["type"] == "InvalidParams"
    assert run.outcome["error"]["message"].startswith("files: artifact path 'uploads/default/")


def test_an_absolute_path_gets_one_answer_whether_it_exists_or_not(tmp_path: Path) -> None:
    answers = []
    for path in ("/etc/passwd", "/nonexistent"):
        run = run_task("evaluate", {"model": path}, job_id="0abcdefghevaluate", root=tmp_path)
        assert run.exit_code == env.EXIT_INVALID_PARAMS, run.outcome
        error = run.outcome["error"]
        answers.append((error["type"], error["message"].replace(path, "<path>")))
    assert answers[0] == answers[1]
    assert answers[0][0] == "InvalidParams"
