"""The epoch a training keeps (highest validation accuracy, the earlier on a tie): `train`
saves it as `model.pt` and the last epoch as `last.pt`, a resumed run keeps the same one,
and an `hpo`/`nas` trial's value is that epoch's, as `train` with its params would keep."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.ml.best_epoch import cpu_state, improves, keep_best
from kubetask.jobs.kinds.ml.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from kubetask.jobs.kinds.ml.data import obtain_dataset, prepare
from kubetask.jobs.kinds.ml.loop import Trainer, build_trainer, evaluate, model_spec, to_device
from kubetask.jobs.kinds.ml.search import METRICS_ATTR, run_study
from kubetask.jobs.kinds.train import run
from kubetask.jobs.params import HpoParams, TrainParams
from kubetask.jobs.reporter import ProgressReporter

CPU = torch.device("cpu")
# Seeded so that validation accuracy peaks at epoch 2, ties at 3 and 4, and drops at 5.
PEAKS_EARLY = TrainParams.model_validate(
    {
        "datagen": {"n_per_class": 6, "length": 128, "sample_rate": 2000.0},
        "model": "mlp",
        "width": 8,
        "depth": 2,
        "lr": 0.03,
        "epochs": 5,
        "seed": 0,
        "threads": 1,
        "device": "cpu",
    }
)


def context(root: Path, job_id: str = "t") -> TaskContext:
    reporter = ProgressReporter(None, job_id=job_id)
    return TaskContext(job_id=job_id, index=0, artifacts_root=root, reporter=reporter)


def history_of(val_accuracies: list[float]) -> list[dict[str, float]]:
    return [{"epoch": i, "val_accuracy": a} for i, a in enumerate(val_accuracies, 1)]


@pytest.mark.parametrize(
    ("accuracies", "kept"),
    [([0.5], 0), ([0.2, 0.9, 0.4], 1), ([0.3, 0.6, 0.6, 0.1], 1), ([0.1, 0.2, 0.3], 2)],
)
def test_the_best_epoch_is_the_most_accurate_and_the_earlier_on_a_tie(
    accuracies: list[float], kept: int
) -> None:
    model = nn.Linear(2, 2)
    best = None
    for epoch, accuracy in enumerate(accuracies, 1):
        best = keep_best(best, epoch=epoch, val_accuracy=accuracy, model=model)
    assert best is not None
    assert (best.epoch, best.val_accuracy) == (kept + 1, accuracies[kept])


def test_only_a_strictly_better_finite_accuracy_improves() -> None:
    assert improves(0.0, None)
    assert improves(0.6, 0.5)
    assert not improves(0.5, 0.5)
    assert not improves(math.nan, 0.1)


def test_the_kept_weights_are_a_cpu_copy_that_training_does_not_change() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    best = keep_best(None, epoch=1, val_accuracy=0.5, model=model)
    before = {k: v.clone() for k, v in best.state_dict.items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    assert all(v.device.type == "cpu" for v in best.state_dict.values())
    assert all(torch.equal(best.state_dict[k], before[k]) for k in before)
    assert set(best.state_dict) == set(model.state_dict())  # buffers too
    assert keep_best(best, epoch=2, val_accuracy=0.5, model=model) is best  # a tie
    later = keep_best(best, epoch=3, val_accuracy=0.75, model=model)
    assert (later.epoch, later.val_accuracy) == (3, 0.75)
    assert torch.equal(later.state_dict["0.weight"], model.state_dict()["0.weight"])


def accuracy_of(weights: dict[str, torch.Tensor], params: TrainParams) -> float:
    """The validation accuracy of saved weights, measured again."""
    data = prepare(obtain_dataset(params, None), params)
    trainer = build_trainer(params, model_spec(params, data), CPU)
    trainer.model.load_state_dict(weights)
    return evaluate(trainer, to_device(data.x_val, data.y_val, CPU))[1]


def test_train_keeps_its_best_epoch_as_model_pt_and_its_last_as_last_pt(
    tmp_path: Path,
) -> None:
    result = run(PEAKS_EARLY, context(tmp_path))
    history = torch.load(tmp_path / str(result["checkpoint"]))["history"]
    accuracies = [m["val_accuracy"] for m in history]
    peak = accuracies.index(max(accuracies)) + 1
    assert peak < 5
    assert accuracies[-1] < max(accuracies)  # the arrangement this test is about

    assert (result["model"], result["last_model"]) == ("t/model.pt", "t/last.pt")
    assert result["best_epoch"] == peak
    assert result["best_val_accuracy"] == max(accuracies)
    best_metrics: Any = result["best_metrics"]
    assert best_metrics["epoch"] == peak
    last_metrics: Any = result["metrics"]
    assert last_metrics["epoch"] == 5

    model = torch.load(tmp_path / "t" / "model.pt", weights_only=True)
    last = torch.load(tmp_path / "t" / "last.pt", weights_only=True)
    assert (model["epoch"], last["epoch"]) == (peak, 5)
    assert model["metrics"]["val_accuracy"] == result["best_val_accuracy"]
    assert last["metrics"]["val_accuracy"] == accuracies[-1]
    assert accuracy_of(model["state_dict"], PEAKS_EARLY) == pytest.approx(max(accuracies), abs=1e-6)
    assert accuracy_of(last["state_dict"], PEAKS_EARLY) == pytest.approx(accuracies[-1], abs=1e-6)


def test_a_resumed_run_keeps_the_same_best_epoch(tmp_path: Path) -> None:
    straight = run(PEAKS_EARLY, context(tmp_path, "straight"))
    run(PEAKS_EARLY.model_copy(update={"epochs": 3}), context(tmp_path, "resumed"))
    resumed = run(PEAKS_EARLY, context(tmp_path, "resumed"))
    assert resumed["resumed_from_epoch"] == 3
    assert resumed["best_epoch"] == straight["best_epoch"]
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def trainer_for(params: TrainParams) -> Trainer:
    data = prepare(obtain_dataset(params, None), params)
    return build_trainer(params, model_spec(params, data), CPU)


def test_a_checkpoint_without_a_best_epoch_is_not_taken_up(tmp_path: Path) -> None:
    trainer = trainer_for(PEAKS_EARLY)
    best = keep_best(None, epoch=1, val_accuracy=0.25, model=trainer.model)
    path = tmp_path / "checkpoint.pt"
    key = fingerprint(PEAKS_EARLY)
    save_checkpoint(path, trainer, epoch=1, history=history_of([0.25]), best=best, key=key)
    resumed = load_checkpoint(path, trainer, key=key, epochs=5)
    assert resumed is not None
    assert (resumed.best.epoch, resumed.best.val_accuracy) == (1, 0.25)
    assert all(v.device.type == "cpu" for v in resumed.best.state_dict.values())

    older = torch.load(path, weights_only=True)
    del older["best_state"]
    torch.save(older, path)
    assert load_checkpoint(path, trainer, key=key, epochs=5) is None
    assert set(cpu_state(trainer.model)) == set(best.state_dict)


def test_a_trial_scores_the_epoch_that_train_keeps(tmp_path: Path) -> None:
    study = HpoParams(n_trials=1, metric="val_accuracy", train=PEAKS_EARLY)
    run_ = run_study(study, context(tmp_path, "study"), suggest=lambda _: PEAKS_EARLY)
    trial = run_.study.trials[0]
    kept = run(PEAKS_EARLY, context(tmp_path, "train"))
    assert trial.value == pytest.approx(kept["best_val_accuracy"], abs=1e-6)
    assert trial.user_attrs[METRICS_ATTR]["epoch"] == kept["best_epoch"]
