"""Figure: an SDV fit with gan-train's per-epoch progress against a plain SDV fit.

kubetask: `synthesizer.fit` inside gan-train's `LossWatcher` (a thread reading the model's
recorded losses) whose epochs become progress events sent to the real Redis by the task's
reporter and publisher, as jobs/kinds/gan_train.py does. Baseline: the same synthesizer
(same seed, data and settings) fitted bare. Both are timed around `fit` alone; a fit also
fits SDV's and ctgan's data transformers, the same on both sides, so enough epochs are run
for the epoch loop to dominate. Reported as epochs per second of the whole fit (so ratio
>= 0.97 means at most 3% overhead); the order alternates between rounds and a warm-up
round (imports, first-call costs) is dropped. The best round, the median round and the
median paired ratio are shown (see train_loop.py on why).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.harness import Bench, Counts, Figure, Row, median, rounded
from bench.train_loop import paired_ratio
from kubetask.jobs.kinds.ml.data import default_threads
from kubetask.jobs.kinds.ml.sdv_progress import EpochLoss, LossWatcher
from kubetask.jobs.kinds.ml.seed_data import seed_frame
from kubetask.jobs.publisher import RedisPublisher
from kubetask.jobs.reporter import ProgressReporter

ROWS = 500
EPOCHS = {"tvae": 60, "ctgan": 30}
TABLE = "readings"


def synthesizer(kind: str, metadata: Any) -> Any:
    from sdv.single_table import CTGANSynthesizer, TVAESynthesizer

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    common = {"epochs": EPOCHS[kind], "batch_size": 100, "embedding_dim": 32, "enable_gpu": False}
    if kind == "tvae":
        return TVAESynthesizer(metadata, compress_dims=(64, 64), decompress_dims=(64, 64), **common)
    return CTGANSynthesizer(metadata, generator_dim=(64, 64), discriminator_dim=(64, 64), **common)


def fit_kubetask(bench: Bench, model: Any, data: pd.DataFrame, run_id: str) -> float:
    """Seconds for the fit with per-epoch progress events, as gan-train runs it."""
    publisher = RedisPublisher(bench.redis_url, job_id=run_id)
    reporter = ProgressReporter(publisher, job_id=run_id)
    epochs = model.epochs

    def on_epoch(loss: EpochLoss) -> None:
        message = f"epoch {loss.epoch}/{epochs}"
        reporter.update(loss.epoch, epochs, stage="train", message=message, **loss.metrics())

    started = time.perf_counter()
    with LossWatcher(model, on_epoch) as watcher:
        model.fit({TABLE: data})
    seconds = time.perf_counter() - started
    reporter.close()
    publisher.close()
    if len(watcher.losses) != epochs:
        raise RuntimeError(f"{len(watcher.losses)} of {epochs} epochs reported: {watcher.broken}")
    return seconds


def fit_plain(model: Any, data: pd.DataFrame) -> float:
    started = time.perf_counter()
    model.fit({TABLE: data})
    return time.perf_counter() - started


def measure(
    bench: Bench, kind: str, metadata: Any, data: pd.DataFrame, rounds: int
) -> tuple[list[float], list[float]]:
    """Epochs per second of each side, warm-up round dropped."""
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(1 + rounds):
        for side in ("kubetask", "plain") if i % 2 == 0 else ("plain", "kubetask"):
            model = synthesizer(kind, metadata)
            if side == "plain":
                plain_s = fit_plain(model, data)
            else:
                ours_s = fit_kubetask(bench, model, data, f"bench-gan-{kind}-{i}")
        if i >= 1:
            ours.append(EPOCHS[kind] / ours_s)
            theirs.append(EPOCHS[kind] / plain_s)
    return ours, theirs


def run(bench: Bench, counts: Counts) -> Figure:
    rounds = 2 if counts.launches <= 5 else 6
    with tempfile.TemporaryDirectory(prefix="kubetask-bench-gan-") as scratch:
        os.environ.setdefault("XDG_DATA_HOME", scratch)  # SDV writes a logging config there
        from sdv.metadata import Metadata

        torch.set_num_threads(default_threads())
        data = seed_frame("bench", rows=ROWS, fault_rate=0.15, seed=0)
        metadata = Metadata.detect_from_dataframes({TABLE: data})
        metadata.save_to_json(str(Path(scratch) / "metadata.json"))
        results = {kind: measure(bench, kind, metadata, data, rounds) for kind in EPOCHS}
    rows = [
        row
        for kind, (o, t) in results.items()
        for row in (
            Row(f"{kind.upper()}, best round", "epochs/s", max(o), max(t)),
            Row(f"{kind.upper()}, median round", "epochs/s", median(o), median(t)),
            paired_ratio(f"{kind.upper()}, median paired ratio", o, t),
        )
    ]
    return Figure(
        key="gan",
        title="gan-train: SDV fit with per-epoch progress vs a plain SDV fit",
        kubetask="synthesizer.fit under LossWatcher, epochs -> progress events to Redis",
        baseline="the same synthesizer.fit, bare",
        rows=rows,
        notes=[
            f"CPU, {torch.get_num_threads()} threads; {ROWS} seed rows x 8 columns, batch 100, "
            f"64x64 layers; TVAE {EPOCHS['tvae']} and CTGAN {EPOCHS['ctgan']} epochs per fit; "
            f"{rounds} rounds per side after 1 warm-up round",
            "whole fit including SDV/ctgan transformer fitting, identical on both sides",
        ],
        raw={
            f"{kind}_{side}": rounded(values, 3)
            for kind, pair in results.items()
            for side, values in zip(("kubetask", "baseline"), pair, strict=True)
        },
    )
