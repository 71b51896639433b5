"""`train` for real: deterministic with a seed, a retried attempt that resumes from its
checkpoint (exactly, and after a SIGKILL), datasets by path, and a missing one.
test_train_backends.py runs it through both backends with its per-epoch progress."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from tests.integration.task_process import api_task_pid, finish, start_task
from tests.servers import ApiServer

TINY = {"datagen": {"n_per_class": 8, "length": 256, "sample_rate": 2000.0}, "threads": 1}


def test_a_seeded_run_is_reproduced_and_a_retry_resumes_exactly(tmp_path: Path) -> None:
    params: dict[str, Any] = {**TINY, "epochs": 4, "dropout": 0.3}
    straight = start_task("train", params, job_id="straight", root=tmp_path)
    stopped = start_task("train", {**params, "epochs": 2}, job_id="resumed", root=tmp_path)
    first_two = finish(*stopped).result
    assert first_two["epochs_run"] == 2
    # a new attempt of the same job (same artifact folder), asked for all 4 epochs
    resumed = finish(*start_task("train", params, job_id="resumed", root=tmp_path)).result
    expected = finish(*straight).result

    # the same seed in another process: the same metrics at epoch 2 and at the end
    history = torch.load(tmp_path / "artifacts" / expected["checkpoint"])["history"]
    assert {k: history[1][k] for k in first_two["metrics"]} == first_two["metrics"]
    assert (resumed["resumed_from_epoch"], resumed["epochs_run"]) == (2, 2)
    assert resumed["metrics"] == expected["metrics"]

    # model.pt is the best epoch, last.pt the last one, in a resumed run as in a straight one
    accuracies = [m["val_accuracy"] for m in history]
    assert expected["best_epoch"] == accuracies.index(max(accuracies)) + 1
    assert resumed["best_metrics"] == expected["best_metrics"]
    for result in (expected, resumed):
        model = torch.load(tmp_path / "artifacts" / result["model"], weights_only=True)
        last = torch.load(tmp_path / "artifacts" / result["last_model"], weights_only=True)
        assert (model["epoch"], last["epoch"]) == (expected["best_epoch"], 4)
        assert model["metrics"]["val_accuracy"] == expected["best_val_accuracy"]


def test_a_killed_attempt_is_retried_from_its_last_checkpoint(api: ApiServer) -> None:
    data = {"n_per_class": 40, "length": 1024, "sample_rate": 2000.0}
    job_id = api.submit("train", {"datagen": data, "epochs": 12, "threads": 1}, retries=1)
    pid = api_task_pid(api.data_dir, job_id)
    deadline = time.monotonic() + 60
    while True:
        progress = api.job(job_id).get("progress") or {}
        if (progress.get("metrics") or {}).get("epoch", 0) >= 1:  # its checkpoint is written
            break
        assert time.monotonic() < deadline, api.job(job_id)
        time.sleep(0.02)
    os.kill(pid, 9)

    job = api.wait(job_id, timeout_s=90)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2
    result = job["result"]
    assert 1 <= result["resumed_from_epoch"] < 12
    assert result["epochs_run"] == 12 - result["resumed_from_epoch"]


def test_train_on_a_datagen_dataset_and_on_a_missing_one(api: ApiServer) -> None:
    datagen = api.wait(api.submit("datagen", {"n_per_class": 6, "length": 256}))
    missing = api.submit("train", {"dataset": f"{datagen['id']}/nowhere.npz"})
    dataset = datagen["result"]["dataset"]
    job = api.wait(api.submit("train", {"dataset": dataset, "epochs": 1, "threads": 1}))
    assert job["state"] == "succeeded", job
    assert job["result"]["dataset"] == dataset
    assert job["result"]["n_train"] + job["result"]["n_val"] == 36

    failed = api.wait(missing)
    assert failed["state"] == "failed"
    assert f"{datagen['id']}/nowhere.npz" in failed["error"]["message"]
    assert "datagen" in failed["error"]["suggestion"]
