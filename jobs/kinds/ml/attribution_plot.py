"""PNG overlays of attributions on their signals (matplotlib's Agg renderer through its
object API: no display, no pyplot global state).

Per signal, two panels over time: the signal with |integrated gradients| as a heat band
behind it (where the model looked), then the signed integrated gradients with the saliency
scaled to the same height. Long signals are drawn from at most `MAX_POINTS` buckets.
matplotlib is imported when a drawing is made, not with this module (~0.5 s of a task's
start, plus its font cache where that is not kept between tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kubetask.jobs.writes import written_whole

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MAX_POINTS = 4000
PAIR_HEIGHT_IN = 3.4  # figure height per signal
SPACER = 0.25  # the gap between two signals' pairs of panels, relative to a panel
Floats = NDArray[np.float32]


@dataclass(frozen=True)
class OverlayRow:
    """One signal's drawing: the signal, its attributions and a title."""

    signal: Floats
    integrated_gradients: Floats
    saliency: Floats
    title: str


def bucket_mean(values: NDArray[np.floating], buckets: int) -> NDArray[np.float64]:
    """`values` averaged over `buckets` equal runs (the last one padded by its own end)."""
    if len(values) <= buckets:
        return values.astype(np.float64)
    size = -(-len(values) // buckets)
    padded = np.pad(values.astype(np.float64), (0, size * buckets - len(values)), mode="edge")
    means: NDArray[np.float64] = padded.reshape(buckets, size).mean(axis=1)
    return means


def _draw(axes: tuple[Axes, Axes], row: OverlayRow, sample_rate: float | None) -> None:
    length = len(row.signal)
    points = min(length, MAX_POINTS)
    span = length / sample_rate if sample_rate else float(length)
    t = np.linspace(0.0, span, points, endpoint=False)
    signal = bucket_mean(row.signal, points)
    heat = bucket_mean(np.abs(row.integrated_gradients), points)
    ig = bucket_mean(row.integrated_gradients, points)
    sal = bucket_mean(row.saliency, points)

    top, bottom = axes
    low, high = float(signal.min()), float(signal.max())
    pad = 0.05 * (high - low or 1.0)
    top.imshow(
        heat[None, :],
        aspect="auto",
        cmap="Reds",
        extent=(0.0, span, low - pad, high + pad),
        origin="lower",
        alpha=0.8,
        interpolation="nearest",
    )
    top.plot(t, signal, color="black", linewidth=0.6)
    top.set_ylim(low - pad, high + pad)
    top.set_title(row.title, fontsize=9)
    top.set_ylabel("signal", fontsize=8)

    bottom.fill_between(t, 0.0, ig, color="tab:red", alpha=0.6, label="integrated gradients")
    scale = float(np.abs(ig).max()) / (float(sal.max()) or 1.0)
    bottom.plot(t, sal * scale, color="tab:blue", linewidth=0.6, label="saliency (scaled)")
    bottom.axhline(0.0, color="grey", linewidth=0.4)
    bottom.set_ylabel("attribution", fontsize=8)
    bottom.legend(fontsize=7, loc="upper right")
    bottom.set_xlabel("time (s)" if sample_rate else "sample", fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.set_xlim(0.0, span)


def render_overlay(path: Path, rows: list[OverlayRow], *, sample_rate: float | None) -> None:
    """Write the overlays of `rows` (one pair of panels each) as a PNG, atomically."""
    if not rows:
        raise ValueError("nothing to draw")
    from matplotlib.figure import Figure  # only a task that draws pays for matplotlib

    height = PAIR_HEIGHT_IN * len(rows)
    figure = Figure(figsize=(10, height))
    # Margins fixed in inches (a tight layout measured every label: a third of the drawing
    # time); a spacer row between pairs leaves room for one's x label and the next's title.
    ratios = [1.0, 1.0, SPACER] * len(rows)
    grid = figure.add_gridspec(
        3 * len(rows) - 1,
        1,
        height_ratios=ratios[:-1],
        hspace=0.3,
        left=0.07,
        right=0.98,
        top=1 - 0.3 / height,
        bottom=0.45 / height,
    )
    for number, row in enumerate(rows):
        top = figure.add_subplot(grid[3 * number, 0])
        _draw((top, figure.add_subplot(grid[3 * number + 1, 0])), row, sample_rate)
    with written_whole(path) as partial:
        figure.savefig(partial, format="png", dpi=100)
