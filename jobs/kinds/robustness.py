"""`test` (model testing): how a trained model's accuracy holds up when its input is
perturbed: white noise at several SNRs, circular time shifts and amplitude scaling. Each
condition is one evaluation over the whole dataset, reported as it finishes
(`stage="test"`, with its accuracy in the metrics); the result holds the degradation table
(accuracy and the drop from the clean accuracy per condition), also written to
`robustness.csv`, and `robustness.png` plots it."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.ml import plots, scores
from kubetask.jobs.kinds.ml.inference import model_on_data
from kubetask.jobs.params.catalog import RobustnessParams

Signals = NDArray[np.float32]
AXIS_TITLES = {"noise": "SNR (dB)", "shift": "shift (fraction of length)", "scale": "scale"}


def with_noise(x: Signals, snr_db: float, rng: np.random.Generator) -> Signals:
    """Each signal plus white Gaussian noise of power = its own power / 10^(snr_db / 10)."""
    power = np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True)
    std = np.sqrt(power / 10.0 ** (snr_db / 10))
    noisy: Signals = (x + rng.normal(size=x.shape) * std).astype(np.float32)
    return noisy


def shifted(x: Signals, fraction: float) -> Signals:
    """Each signal rotated right by `fraction` of its length (a circular time shift)."""
    rolled: Signals = np.roll(x, round(fraction * x.shape[1]), axis=1)
    return rolled


def scaled(x: Signals, factor: float) -> Signals:
    return (x * np.float32(factor)).astype(np.float32)


def conditions(params: RobustnessParams) -> list[tuple[str, float]]:
    """(perturbation, level) pairs in the order they run."""
    return [
        *(("noise", s) for s in params.snr_db),
        *(("shift", s) for s in params.shifts),
        *(("scale", s) for s in params.scales),
    ]


def perturb(x: Signals, name: str, level: float, rng: np.random.Generator) -> Signals:
    if name == "noise":
        return with_noise(x, level, rng)
    if name == "shift":
        return shifted(x, level)
    return scaled(x, level)


@dataclass(frozen=True)
class Row:
    perturbation: str
    level: float
    accuracy: float
    drop: float  # clean accuracy - accuracy


def curves(rows: list[Row]) -> dict[str, tuple[list[float], list[float]]]:
    """Per perturbation: its levels and the accuracies at them, in run order."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        levels, accuracies = out.setdefault(r.perturbation, ([], []))
        levels.append(r.level)
        accuracies.append(r.accuracy)
    return out


def run(params: RobustnessParams, context: TaskContext) -> dict[str, JsonValue]:
    setup = model_on_data(params, context, held_out=True)
    model, x, labels, reporter = setup.model, setup.data.x, setup.labels, context.reporter
    todo = conditions(params)
    total = len(todo) + 1

    def accuracy_of(signals: Signals) -> float:
        logits = model.logits(signals, batch_size=params.batch_size)
        return round(scores.accuracy(labels, logits.argmax(axis=1)), 6)

    clean = accuracy_of(x)
    reporter.update(1, total, stage="test", message="clean", accuracy=clean)
    rng = np.random.default_rng(params.seed)
    rows: list[Row] = []
    for number, (name, level) in enumerate(todo, 2):
        accuracy = accuracy_of(perturb(x, name, level, rng))
        rows.append(Row(name, level, accuracy, round(clean - accuracy, 6)))
        message = f"{name} {level:g}: accuracy {accuracy:.3f}"
        reporter.update(number, total, stage="test", message=message, accuracy=accuracy)

    reporter.update(total, total, stage="save", message="writing robustness.csv and .png")
    table_path = context.artifact("robustness.csv")
    with table_path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["perturbation", "level", "accuracy", "drop"])
        writer.writerow(["clean", "", clean, 0.0])
        writer.writerows([r.perturbation, r.level, r.accuracy, r.drop] for r in rows)
    plot_path = context.artifact("robustness.png")
    plots.degradation_png(plot_path, curves(rows), clean, titles=AXIS_TITLES)
    table: list[JsonValue] = [dict(asdict(r)) for r in rows]
    worst = max(rows, key=lambda r: r.drop, default=None)
    return {
        "model": params.model,
        "dataset": params.dataset,
        "n_signals": len(labels),
        "rows": setup.rows,
        "clean_accuracy": clean,
        "table": table,
        "worst": dict(asdict(worst)) if worst else None,
        "table_file": context.relative(table_path),
        "plot": context.relative(plot_path),
    }
