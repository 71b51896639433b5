"""`datagen`: synthetic vibration signals of a rotating machine, one class per fault.

Each class is a physical signature on top of the shaft tone: imbalance raises the 1x
component, misalignment the 2x, looseness adds many harmonics and a 0.5x subharmonic,
bearing faults add impacts that ring a structural resonance at the outer-race (BPFO) or
inner-race (BPFI, amplitude-modulated by the shaft) defect frequency. Signals are saved as
`dataset.npz` (X float32 [n, length], y int64, class names, sample rate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.params import DatagenParams, FaultClass
from kubetask.jobs.writes import written_whole

# Defect frequencies as multiples of the shaft speed, for a typical deep-groove bearing.
BPFO_RATIO = 3.58
BPFI_RATIO = 5.42

Signal = NDArray[np.float64]


def _impacts(t: Signal, rate_hz: float, resonance_hz: float, decay: float) -> Signal:
    """A train of decaying resonance bursts, one per defect strike."""
    phase = np.mod(t * rate_hz, 1.0) / rate_hz  # time since the last strike
    return np.exp(-decay * phase) * np.sin(2 * np.pi * resonance_hz * phase)


def make_signal(fault: FaultClass, params: DatagenParams, rng: np.random.Generator) -> Signal:
    """One signal of the given class, with random speed jitter, phases and noise."""
    t = np.arange(params.length) / params.sample_rate
    shaft = params.rotation_hz * rng.uniform(0.97, 1.03)
    phase = rng.uniform(0, 2 * np.pi, size=4)
    signal = 1.0 * np.sin(2 * np.pi * shaft * t + phase[0])
    signal += 0.2 * np.sin(2 * np.pi * 2 * shaft * t + phase[1])
    resonance = params.sample_rate / 4
    match fault:
        case FaultClass.NORMAL:
            pass
        case FaultClass.IMBALANCE:
            signal += rng.uniform(1.5, 2.5) * np.sin(2 * np.pi * shaft * t + phase[0])
        case FaultClass.MISALIGNMENT:
            signal += rng.uniform(1.0, 1.6) * np.sin(2 * np.pi * 2 * shaft * t + phase[2])
            signal += 0.5 * np.sin(2 * np.pi * 3 * shaft * t + phase[3])
        case FaultClass.LOOSENESS:
            for harmonic in range(3, 11):
                signal += (0.6 / harmonic**0.5) * np.sin(2 * np.pi * harmonic * shaft * t)
            signal += 0.5 * np.sin(2 * np.pi * 0.5 * shaft * t + phase[2])
        case FaultClass.BEARING_OUTER:
            signal += rng.uniform(1.5, 2.5) * _impacts(t, BPFO_RATIO * shaft, resonance, 800.0)
        case FaultClass.BEARING_INNER:
            modulation = 1 + 0.8 * np.sin(2 * np.pi * shaft * t + phase[3])
            bursts = _impacts(t, BPFI_RATIO * shaft, resonance, 800.0)
            signal += rng.uniform(1.5, 2.5) * modulation * bursts
    noisy: Signal = signal + rng.normal(0.0, params.noise, size=params.length)
    return noisy


def generate(
    params: DatagenParams, context: TaskContext | None = None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The whole dataset, shuffled, reporting per-signal progress when given a context."""
    rng = np.random.default_rng(params.seed)
    total = params.n_per_class * len(params.classes)
    signals = np.empty((total, params.length), dtype=np.float32)
    labels = np.repeat(np.arange(len(params.classes), dtype=np.int64), params.n_per_class)
    rng.shuffle(labels)
    for row, label in enumerate(labels):
        signals[row] = make_signal(params.classes[label], params, rng)
        if context is not None:
            context.reporter.update(row + 1, total, stage="generate")
    return signals, labels


def save(
    path: Path, signals: NDArray[np.float32], labels: NDArray[np.int64], params: DatagenParams
) -> None:
    """`dataset.npz` as `datagen` writes it (and `train` for the data it generates)."""
    with written_whole(path) as partial, partial.open("wb") as file:
        np.savez_compressed(
            file,
            X=signals,
            y=labels,
            classes=np.array([c.value for c in params.classes]),
            sample_rate=np.array(params.sample_rate),
        )


def run(params: DatagenParams, context: TaskContext) -> dict[str, JsonValue]:
    signals, labels = generate(params, context)
    path = context.artifact("dataset.npz")
    context.reporter.update(0, 1, stage="save", message=f"writing {path.name}")
    save(path, signals, labels, params)
    context.reporter.update(1, 1, stage="save", message="saved")
    counts = np.bincount(labels, minlength=len(params.classes)).tolist()
    return {
        "dataset": context.relative(path),
        "n_signals": len(labels),
        "length": params.length,
        "sample_rate": params.sample_rate,
        "classes": [c.value for c in params.classes],
        "class_counts": dict(zip([c.value for c in params.classes], counts, strict=True)),
        "bytes": path.stat().st_size,
    }
