"""datagen: deterministic synthetic vibration signals whose classes differ physically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.datagen import generate, run
from kubetask.jobs.params import DatagenParams, FaultClass
from kubetask.jobs.reporter import ProgressReporter

F = FaultClass
RATE = 2000.0
SHAFT = 29.5
# 4096 samples at 2 kHz: 0.49 Hz per FFT bin, so the shaft harmonics are well resolved.
SPECTRAL = {"n_per_class": 6, "length": 4096, "sample_rate": RATE, "rotation_hz": SHAFT}


def small(**fields: object) -> DatagenParams:
    return DatagenParams.model_validate({"n_per_class": 5, "length": 256, **fields})


def band_energy(signals: NDArray[np.float32], low_hz: float, high_hz: float) -> NDArray[np.float64]:
    """Each signal's spectral energy between low_hz and high_hz (Hann window)."""
    window = np.hanning(signals.shape[1])
    spectrum = np.abs(np.fft.rfft(signals * window, axis=1)) ** 2
    freqs = np.fft.rfftfreq(signals.shape[1], d=1 / RATE)
    in_band = (freqs >= low_hz) & (freqs <= high_hz)
    energy: NDArray[np.float64] = spectrum[:, in_band].sum(axis=1)
    return energy


def by_class(
    classes: list[FaultClass],
) -> dict[FaultClass, NDArray[np.float32]]:
    signals, labels = generate(DatagenParams.model_validate({**SPECTRAL, "classes": classes}))
    return {fault: signals[labels == i] for i, fault in enumerate(classes)}


def around(multiple: float) -> tuple[float, float]:
    """A band around a multiple of the shaft speed, wide enough for its +-3% jitter."""
    return multiple * SHAFT * 0.93, multiple * SHAFT * 1.07


# --- the dataset ----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_dataset() -> None:
    x1, y1 = generate(small(seed=11))
    x2, y2 = generate(small(seed=11))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_different_seeds_give_different_datasets() -> None:
    x1, _ = generate(small(seed=1))
    x2, _ = generate(small(seed=2))
    assert not np.array_equal(x1, x2)


def test_shape_and_dtype() -> None:
    params = small(n_per_class=7, length=300)
    signals, labels = generate(params)
    assert signals.shape == (7 * len(FaultClass), 300)
    assert signals.dtype == np.float32
    assert labels.shape == (7 * len(FaultClass),)
    assert labels.dtype == np.int64
    assert np.isfinite(signals).all()


def test_each_class_has_n_per_class_signals() -> None:
    params = small(n_per_class=9, classes=["normal", "looseness", "bearing_inner"])
    _, labels = generate(params)
    assert np.bincount(labels).tolist() == [9, 9, 9]


def test_labels_are_shuffled() -> None:
    _, labels = generate(small(n_per_class=10))
    assert not (np.diff(labels) >= 0).all()


def test_generate_reports_per_signal_progress(tmp_path: Path) -> None:
    reporter = ProgressReporter(None, job_id="j")
    context = TaskContext(job_id="j", index=0, artifacts_root=tmp_path, reporter=reporter)
    generate(small(n_per_class=2, classes=["normal", "imbalance"]), context)
    assert reporter.last is not None
    assert (reporter.last["current"], reporter.last["total"]) == (4, 4)
    assert reporter.last["stage"] == "generate"


def test_run_saves_the_dataset_and_describes_it(tmp_path: Path) -> None:
    reporter = ProgressReporter(None, job_id="job1")
    context = TaskContext(job_id="job1", index=0, artifacts_root=tmp_path, reporter=reporter)
    params = small(n_per_class=3, classes=["normal", "misalignment"])
    result = run(params, context)
    assert result["dataset"] == "job1/dataset.npz"
    assert result["n_signals"] == 6
    assert result["class_counts"] == {"normal": 3, "misalignment": 3}
    with np.load(tmp_path / "job1" / "dataset.npz") as saved:
        assert saved["X"].shape == (6, 256)
        assert saved["classes"].tolist() == ["normal", "misalignment"]
        np.testing.assert_array_equal(saved["y"], generate(params)[1])


# --- the physics ----------------------------------------------------------------------------


def test_imbalance_has_much_more_energy_at_the_shaft_frequency() -> None:
    signals = by_class([F.NORMAL, F.IMBALANCE])
    normal = band_energy(signals[F.NORMAL], *around(1))
    imbalance = band_energy(signals[F.IMBALANCE], *around(1))
    assert imbalance.min() > 4 * normal.max()


def test_misalignment_has_much_more_energy_at_twice_the_shaft_frequency() -> None:
    signals = by_class([F.NORMAL, F.MISALIGNMENT])
    normal = band_energy(signals[F.NORMAL], *around(2))
    misaligned = band_energy(signals[F.MISALIGNMENT], *around(2))
    assert misaligned.min() > 4 * normal.max()


def test_looseness_has_a_half_order_subharmonic() -> None:
    signals = by_class([F.NORMAL, F.LOOSENESS])
    normal = band_energy(signals[F.NORMAL], *around(0.5))
    loose = band_energy(signals[F.LOOSENESS], *around(0.5))
    assert loose.min() > 4 * normal.max()


@pytest.mark.parametrize("fault", [F.BEARING_OUTER, F.BEARING_INNER])
def test_bearing_faults_ring_the_resonance_far_above_the_shaft(fault: FaultClass) -> None:
    signals = by_class([F.NORMAL, fault])
    resonance = RATE / 4
    normal = band_energy(signals[F.NORMAL], resonance * 0.8, resonance * 1.2)
    bearing = band_energy(signals[fault], resonance * 0.8, resonance * 1.2)
    # Noise alone fills this band too; every faulty signal still has over twice its energy.
    assert bearing.min() > 2 * normal.max()


# --- params ---------------------------------------------------------------------------------


def test_rotation_too_fast_for_the_sample_rate_is_rejected() -> None:
    with pytest.raises(ValidationError, match="rotation_hz"):
        DatagenParams(sample_rate=1000, rotation_hz=50)
    assert DatagenParams(sample_rate=1000, rotation_hz=49.9).rotation_hz == 49.9


def test_repeated_classes_are_rejected() -> None:
    with pytest.raises(ValidationError, match="repeat"):
        DatagenParams.model_validate({"classes": ["normal", "imbalance", "normal"]})


@pytest.mark.parametrize("classes", [["normal"], [], ["normal", "broken"]])
def test_fewer_than_two_or_unknown_classes_are_rejected(classes: list[str]) -> None:
    with pytest.raises(ValidationError):
        DatagenParams.model_validate({"classes": classes})


def test_defaults_use_every_class() -> None:
    assert DatagenParams().classes == list(FaultClass)
