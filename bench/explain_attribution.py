"""Figure: `explain-batch`'s attributions against the per-signal loop it replaced.

kubetask: `attribute_batch` through the network with its BatchNorms folded
(`fold_batch_norms`), as `explain-batch` runs it: every signal's path points and its own point
(saliency) share the forward/backward passes, f(0) once. Baseline: `attribute` signal by
signal on the unfolded network (what explain-batch did before): its own logits, f(0),
saliency and path passes per signal. Same model (`train`'s default CNN on the default
1024-sample spectrum), same signals, same steps; rounds alternate the order. Integrated
gradients are compute-bound (~12 MFLOP of convolutions per path point), so the gain is
bounded by the work saved, not by batching; the paired ratio is the steadiest view.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.harness import Bench, Counts, Figure, Row, median, rounded
from kubetask.jobs.kinds.datagen import generate
from kubetask.jobs.kinds.ml.attribution import attribute, attribute_batch
from kubetask.jobs.kinds.ml.data import default_threads
from kubetask.jobs.kinds.ml.folding import fold_batch_norms
from kubetask.jobs.kinds.ml.inference import SignalPipeline
from kubetask.jobs.kinds.ml.models import ModelSpec, build_model
from kubetask.jobs.params import DatagenParams

SIGNALS, LENGTH, STEPS, CHUNK = 12, 1024, 64, 256


def pipeline() -> SignalPipeline:
    torch.manual_seed(0)
    bins = LENGTH // 2 + 1
    spec = ModelSpec(kind="cnn1d", input_length=bins, n_classes=6, width=32, depth=3, dropout=0.1)
    ones = np.ones(bins, dtype=np.float32)
    module = SignalPipeline(
        build_model(spec), features="spectrum", mean=0 * ones, std=ones, length=LENGTH
    )
    return module.eval().requires_grad_(False)


def run(bench: Bench, counts: Counts) -> Figure:
    torch.set_num_threads(default_threads())
    x, _ = generate(DatagenParams(n_per_class=2, length=LENGTH))
    signals = torch.from_numpy(x[:SIGNALS])
    reference = pipeline()
    folded = fold_batch_norms(reference).requires_grad_(False)
    targets: list[int | None] = [None] * SIGNALS
    ours: list[float] = []
    theirs: list[float] = []
    worst = 0.0
    for i in range(counts.warmup + max(3, counts.launches // 4)):
        for side in ("kubetask", "loop") if i % 2 == 0 else ("loop", "kubetask"):
            started = time.perf_counter()
            if side == "kubetask":
                batched = attribute_batch(
                    folded, signals, targets=targets, steps=STEPS, chunk=CHUNK
                )
                mine = SIGNALS / (time.perf_counter() - started)
            else:
                alone = [
                    attribute(reference, s, target=None, steps=STEPS, chunk=CHUNK) for s in signals
                ]
                other = SIGNALS / (time.perf_counter() - started)
        worst = max(
            worst,
            *(
                float(np.abs(a.integrated_gradients - b.integrated_gradients).max())
                for a, b in zip(batched, alone, strict=True)
            ),
        )
        if i >= counts.warmup:
            ours.append(mine)
            theirs.append(other)
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    return Figure(
        key="explain",
        title="explain-batch: attributions batched over signals vs signal by signal",
        kubetask="attribute_batch on the BatchNorm-folded network (explain-batch's path)",
        baseline="attribute() per signal on the network as trained (the former loop)",
        rows=[
            Row("best round", "signals/s", max(ours), max(theirs)),
            Row("median round", "signals/s", median(ours), median(theirs)),
            Row("median paired ratio", "x", median(ratios), 1.0),
        ],
        notes=[
            f"CPU, {torch.get_num_threads()} threads; cnn1d width 32 depth 3 over "
            f"{LENGTH // 2 + 1} spectrum bins; {SIGNALS} signals x {STEPS} steps per round",
            f"largest |difference| in integrated gradients: {worst:.2e} (float rounding)",
        ],
        raw={"kubetask": rounded(ours, 2), "baseline": rounded(theirs, 2)},
    )
