"""`features`: per-signal features of a dataset (`datagen` or `mat-import`, or generated on
the fly) into `features.csv`, one row per signal: its class, the time-domain features, the
energy in each FFT band and the largest envelope-spectrum peaks (jobs/kinds/ml/
signal_features.py says how each is defined). Progress per signal (`stage="features"`)."""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import InvalidParams, TaskError
from kubetask.jobs.kinds.datagen import generate
from kubetask.jobs.kinds.ml.data import Dataset
from kubetask.jobs.kinds.ml.inference import open_dataset, read_sample_rate
from kubetask.jobs.kinds.ml.signal_features import (
    TIME_FEATURES,
    band_edges,
    band_energies,
    envelope_peaks,
    time_features,
)
from kubetask.jobs.params.catalog import FeaturesParams


def columns(edges: np.ndarray, peaks: int) -> list[str]:
    bands = [f"band_{low:g}_{high:g}_hz" for low, high in itertools.pairwise(edges)]
    envelope = [f"envelope_peak_{i}_{part}" for i in range(1, peaks + 1) for part in ("hz", "amp")]
    return ["signal", "class", *TIME_FEATURES, *bands, *envelope]


def _data(params: FeaturesParams, context: TaskContext) -> tuple[Dataset, float]:
    if params.dataset is None:
        x, y = generate(params.datagen, context)
        classes = [c.value for c in params.datagen.classes]
        return Dataset(x=x, y=y, classes=classes, source=None), params.datagen.sample_rate
    data = open_dataset(context, params.dataset)
    rate = read_sample_rate(context.resolve(params.dataset))
    if rate is None:
        raise TaskError(
            f"dataset {params.dataset!r} records no sample_rate",
            suggestion="Use a dataset written by datagen or mat-import.",
            permanent=True,
        )
    return data, rate


def row(signal: np.ndarray, params: FeaturesParams, sample_rate: float) -> list[float | str]:
    """The feature values of one signal, in `columns` order (after signal and class)."""
    x = signal.astype(np.float64)
    values: list[float | str] = list(time_features(x).values())
    values += band_energies(x, sample_rate, params.bands).tolist()
    peaks = envelope_peaks(
        x,
        sample_rate,
        count=params.envelope_peaks,
        band=params.envelope_band,
        max_hz=params.envelope_max_hz,
    )
    for i in range(params.envelope_peaks):
        values += [peaks[i].hz, peaks[i].amplitude] if i < len(peaks) else ["", ""]
    return values


def run(params: FeaturesParams, context: TaskContext) -> dict[str, JsonValue]:
    data, sample_rate = _data(params, context)
    if params.envelope_band is not None and params.envelope_band[0] >= sample_rate / 2:
        raise InvalidParams(  # the dataset's sample rate is what it is: never retried
            f"envelope_band: starts at or above the Nyquist frequency ({sample_rate / 2:g} Hz)"
        )
    bins = data.x.shape[1] // 2 + 1  # of a signal's one-sided spectrum
    if params.bands > bins:
        raise InvalidParams(  # the dataset's signals are what they are: never retried
            f"bands: {params.bands} bands of a spectrum of {bins} bins (signals of "
            f"{data.x.shape[1]} samples) would leave {params.bands - bins} or more always 0: "
            f"ask for at most {bins}"
        )
    edges = band_edges(sample_rate, params.bands)
    header = columns(edges, params.envelope_peaks)
    path = context.artifact("features.csv")
    total = len(data.y)
    sums = np.zeros(len(TIME_FEATURES))
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for index, (signal, label) in enumerate(zip(data.x, data.y, strict=True)):
            values = row(signal, params, sample_rate)
            sums += np.array(values[: len(TIME_FEATURES)], dtype=np.float64)
            writer.writerow([index, data.classes[label], *values])
            context.reporter.update(index + 1, total, stage="features")
    means = sums / max(total, 1)
    return {
        "table": context.relative(path),
        "dataset": params.dataset,
        "n_signals": total,
        "sample_rate": sample_rate,
        "columns": list(header),
        "band_edges_hz": [round(float(e), 6) for e in edges],
        "means": {
            name: round(float(v), 6) if math.isfinite(v) else None
            for name, v in zip(TIME_FEATURES, means, strict=True)
        },
        "bytes": path.stat().st_size,
    }
