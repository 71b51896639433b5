"""Guards the SDV/ctgan internals that gan-train's per-epoch progress reads (see
jobs/kinds/ml/sdv_progress.py). If an upgrade changes them, these fail loudly: update the
reader and the pins in pyproject.toml together."""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from kubetask.jobs.kinds.ml.sdv_progress import (
    EpochLoss,
    LossWatcher,
    SdvInternalsChanged,
    epoch_losses,
    move_model_to_cpu,
    recorded_losses,
)
from kubetask.jobs.kinds.ml.seed_data import seed_frame

PINNED = {"sdv": "2.0.0", "ctgan": "0.12.1"}
EPOCHS = 3


@pytest.fixture(scope="module")
def sdv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """SDV imported with its data folder (a logging config it writes) in a temp dir."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))
        import sdv.metadata
        import sdv.single_table

        yield sdv


@pytest.mark.parametrize(("package", "version"), sorted(PINNED.items()))
def test_the_versions_read_are_the_pinned_ones(package: str, version: str) -> None:
    assert importlib.metadata.version(package) == version, (
        f"{package} is not the version whose internals sdv_progress.py reads: check them "
        "(this file's tests) and update the pin in pyproject.toml"
    )


def fit(sdv: Any, tmp_path: Path, synthesizer: str) -> tuple[Any, list[EpochLoss]]:
    data = seed_frame("guard", rows=120, fault_rate=0.2, seed=0)
    metadata = sdv.metadata.Metadata.detect_from_dataframes({"readings": data})
    metadata.save_to_json(str(tmp_path / "metadata.json"))
    cls = {"tvae": sdv.single_table.TVAESynthesizer, "ctgan": sdv.single_table.CTGANSynthesizer}
    model = cls[synthesizer](
        metadata, epochs=EPOCHS, batch_size=40, enable_gpu=False, embedding_dim=8
    )
    seen: list[EpochLoss] = []
    with LossWatcher(model, seen.append, interval_s=0.01):
        model.fit({"readings": data})
    return model, seen


@pytest.mark.parametrize("synthesizer", ["tvae", "ctgan"])
def test_a_real_fit_reports_every_epoch_once_with_a_finite_loss(
    sdv: Any, tmp_path: Path, synthesizer: str
) -> None:
    model, seen = fit(sdv, tmp_path, synthesizer)
    assert [loss.epoch for loss in seen] == list(range(1, EPOCHS + 1))
    assert all(math.isfinite(loss.loss) for loss in seen)
    assert (seen[0].discriminator_loss is not None) == (synthesizer == "ctgan")
    # what the watcher reads: the model SDV fitted, and its loss frame
    frame = recorded_losses(model)
    assert frame is not None
    assert epoch_losses(frame) == seen
    assert model._model is not None
    move_model_to_cpu(model)  # what gan-train does before saving
    assert model.sample(5)["readings"].shape == (5, 8)


def test_tvae_losses_are_averaged_per_epoch() -> None:
    frame = pd.DataFrame({"Epoch": [0, 0, 1], "Batch": [0, 1, 0], "Loss": [1.0, 3.0, 5.0]})
    assert epoch_losses(frame) == [EpochLoss(1, 2.0), EpochLoss(2, 5.0)]


def test_ctgan_losses_are_the_generator_s_and_the_discriminator_s() -> None:
    frame = pd.DataFrame(
        {"Epoch": [0, 1], "Generator Loss": [0.5, 0.4], "Discriminator Loss": [-0.1, 0.2]}
    )
    assert epoch_losses(frame) == [EpochLoss(1, 0.5, -0.1), EpochLoss(2, 0.4, 0.2)]
    assert EpochLoss(1, 0.5, -0.1).metrics() == {
        "epoch": 1,
        "loss": 0.5,
        "generator_loss": 0.5,
        "discriminator_loss": -0.1,
    }


def test_no_model_yet_means_no_epochs() -> None:
    assert recorded_losses(object()) is None
    assert epoch_losses(None) == []
    assert epoch_losses(pd.DataFrame(columns=["Epoch", "Batch", "Loss"])) == []


def test_other_columns_mean_the_internals_changed() -> None:
    with pytest.raises(SdvInternalsChanged):
        epoch_losses(pd.DataFrame({"epoch": [0], "loss": [1.0]}))


class FakeSynthesizer:
    """Records losses the way ctgan does: a new frame assigned after each epoch."""

    def __init__(self) -> None:
        self._model: Any = None

    def fit(self, epochs: int, *, broken: bool = False) -> None:
        self._model = type("Model", (), {})()
        self._model.loss_values = pd.DataFrame(columns=["Epoch", "Batch", "Loss"])
        for epoch in range(epochs):
            row = {"Epoch": [epoch], "Batch": [0], "Loss": [float(epoch)]}
            if broken:
                row = {"epoch": [epoch]}
            frame = pd.DataFrame(row)
            old = self._model.loss_values
            self._model.loss_values = frame if old.empty else pd.concat([old, frame])


def test_the_watcher_reports_epochs_it_missed_between_polls_on_exit() -> None:
    fake = FakeSynthesizer()
    seen: list[EpochLoss] = []
    with LossWatcher(fake, seen.append, interval_s=60) as watcher:
        fake.fit(4)
    assert [loss.epoch for loss in seen] == [1, 2, 3, 4]
    assert watcher.losses == seen
    assert watcher.broken is None


def test_a_changed_library_never_fails_the_fit() -> None:
    fake = FakeSynthesizer()
    seen: list[EpochLoss] = []
    with LossWatcher(fake, seen.append, interval_s=60) as watcher:
        fake.fit(2, broken=True)
    assert seen == []
    assert watcher.broken is not None
    assert "SdvInternalsChanged" in watcher.broken


def test_a_model_moved_to_the_cpu_keeps_its_device_there() -> None:
    moved: list[torch.device] = []
    synthesizer = type("S", (), {})()
    synthesizer._model = type("M", (), {"set_device": lambda self, d: moved.append(d)})()
    move_model_to_cpu(synthesizer)
    assert moved == [torch.device("cpu")]
