"""PNG plots of the workflow kinds (matplotlib's Agg canvas: no display, no pyplot state):
a confusion matrix, and accuracy against perturbation level."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

DPI = 100


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=DPI)


def confusion_png(path: Path, confusion: NDArray[np.int64], classes: Sequence[str]) -> None:
    """Counts, coloured by each true class's share, true classes down, predictions across."""
    counts = confusion.astype(np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.6 * len(classes)
    figure = Figure(figsize=(size + 1, size))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    axes.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), labels=list(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (row, col), count in np.ndenumerate(counts):
        colour = "white" if shares[row, col] > 0.5 else "black"
        axes.text(col, row, f"{int(count)}", ha="center", va="center", color=colour)
    axes.set_title("confusion matrix")
    _save(figure, path)


def degradation_png(
    path: Path,
    curves: dict[str, tuple[list[float], list[float]]],
    baseline: float,
    *,
    titles: dict[str, str],
) -> None:
    """One panel per perturbation: accuracy (y) against its level (x), the clean accuracy
    as a dashed line."""
    figure = Figure(figsize=(4.2 * max(1, len(curves)), 3.6))
    for number, (name, (levels, accuracies)) in enumerate(curves.items(), 1):
        axes = figure.add_subplot(1, len(curves), number)
        axes.plot(levels, accuracies, marker="o")
        axes.axhline(baseline, linestyle="--", color="grey", label="clean")
        axes.set_ylim(0, 1.05)
        axes.set_xlabel(titles.get(name, name))
        axes.set_ylabel("accuracy")
        axes.set_title(name)
        axes.legend(loc="lower left")
    _save(figure, path)
