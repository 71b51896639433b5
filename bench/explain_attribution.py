"""Figure: `explain-batch`'s default arithmetic against the former default.

kubetask: `attribute_batch` with explain's default params (`STEPS` Gauss-Legendre points)
through the network with its BatchNorms folded (`fold_batch_norms`), as `explain-batch` runs
it: every signal's path points and its own point (saliency) share the forward/backward
passes, f(0) once. Baseline: what explain-batch did before: `attribute` signal by signal,
64 midpoint-rule steps, on the unfolded network (its own logits, f(0), saliency and path
passes per signal). Both on `train`'s default model trained on `datagen`'s default data (the
README's chain, trained here first), the same signals; rounds alternate the order.
Integrated gradients are compute-bound (~12 MFLOP of convolutions per path point), so the
gain is the points saved plus the passes shared. Faithfulness: the completeness gaps
(|sum(attributions) - (f(x) - f(0))| / |f(x) - f(0)|) of both, mean and largest.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.harness import Bench, Counts, Figure, Row, median, rounded
from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds import datagen, train
from kubetask.jobs.kinds.ml.attribution import (
    Attribution,
    Forward,
    attribute,
    attribute_batch,
)
from kubetask.jobs.kinds.ml.data import default_threads
from kubetask.jobs.kinds.ml.folding import fold_batch_norms
from kubetask.jobs.kinds.ml.inference import SignalPipeline, load_model, open_dataset
from kubetask.jobs.params import DatagenParams, TrainParams
from kubetask.jobs.params.explain import STEPS, Rule
from kubetask.jobs.reporter import ProgressReporter

SIGNALS, FORMER_STEPS, CHUNK = 24, 64, 256


def trained(root: Path) -> tuple[SignalPipeline, np.ndarray]:
    """The README chain's model (datagen {} -> train {"dataset": ...}) and its signals."""

    def context(job_id: str) -> TaskContext:
        reporter = ProgressReporter(None, job_id=job_id)
        return TaskContext(job_id=job_id, index=0, artifacts_root=root, reporter=reporter)

    data = datagen.run(DatagenParams(), context("data"))
    made = context("model")
    model = train.run(TrainParams.model_validate({"dataset": data["dataset"]}), made)
    loaded = load_model(root / str(model["model"]), torch.device("cpu"))
    signals = open_dataset(made, str(data["dataset"])).x
    pipeline = loaded.pipeline(signals.shape[1]).eval().requires_grad_(False)
    return pipeline, signals


def gaps(forward: Forward, signals: torch.Tensor, *, steps: int, rule: Rule) -> str:
    """The completeness gaps of a rule over every signal (batched: the per-signal loop's
    arithmetic up to float rounding, tests/unit/test_attribution.py)."""
    explained: list[Attribution] = []
    per_pass = max(1, CHUNK // (steps + 1))
    for start in range(0, len(signals), per_pass):
        part = signals[start : start + per_pass]
        targets: list[int | None] = [None] * len(part)
        explained += attribute_batch(
            forward, part, targets=targets, steps=steps, rule=rule, chunk=CHUNK
        )
    values = [a.relative_gap for a in explained]
    return f"mean {np.mean(values):.2%}, largest {max(values):.2%}"


def run(bench: Bench, counts: Counts) -> Figure:
    bench.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bench.scratch) as folder:
        reference, x = trained(Path(folder))
    torch.set_num_threads(default_threads())
    every = len(x) // SIGNALS  # spread over the classes
    signals = torch.from_numpy(np.ascontiguousarray(x[::every][:SIGNALS]))
    folded = fold_batch_norms(reference).requires_grad_(False)
    targets: list[int | None] = [None] * SIGNALS
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(counts.warmup + max(3, counts.launches // 4)):
        for side in ("kubetask", "loop") if i % 2 == 0 else ("loop", "kubetask"):
            started = time.perf_counter()
            if side == "kubetask":
                attribute_batch(
                    folded,
                    signals,
                    targets=targets,
                    steps=STEPS,
                    rule=Rule.GAUSS_LEGENDRE,
                    chunk=CHUNK,
                )
                mine = SIGNALS / (time.perf_counter() - started)
            else:
                for signal in signals:
                    attribute(
                        reference,
                        signal,
                        target=None,
                        steps=FORMER_STEPS,
                        rule=Rule.MIDPOINT,
                        chunk=CHUNK,
                    )
                other = SIGNALS / (time.perf_counter() - started)
        if i >= counts.warmup:
            ours.append(mine)
            theirs.append(other)
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    every_signal = torch.from_numpy(x)
    ours_gaps = gaps(folded, every_signal, steps=STEPS, rule=Rule.GAUSS_LEGENDRE)
    former_gaps = gaps(folded, every_signal, steps=FORMER_STEPS, rule=Rule.MIDPOINT)
    return Figure(
        key="explain",
        title="explain-batch: the default arithmetic vs the former default",
        kubetask=f"attribute_batch, {STEPS} Gauss-Legendre points, BatchNorms folded",
        baseline=f"attribute() per signal, {FORMER_STEPS} midpoint steps, network as trained",
        rows=[
            Row("best round", "signals/s", max(ours), max(theirs)),
            Row("median round", "signals/s", median(ours), median(theirs)),
            Row("median paired ratio", "x", median(ratios), 1.0),
        ],
        notes=[
            f"CPU, {torch.get_num_threads()} threads; train's default cnn1d on datagen's "
            f"default data, {SIGNALS} of its signals per round",
            f"completeness gap over all {len(x)} signals, kubetask: {ours_gaps}; former: "
            f"{former_gaps}",
        ],
        raw={"kubetask": rounded(ours, 2), "baseline": rounded(theirs, 2)},
    )
