"""Figure: `train`'s training loop against a plain PyTorch loop, same model, same data.

kubetask: the epoch as the `train` kind runs it (jobs/kinds/train.py): `train_epoch` (autocast
and gradient scaler, disabled on the CPU; loss and accuracy summed on the device; the
throttled in-epoch progress callback) and the per-epoch progress event with its metrics, sent
to the real Redis by the task's reporter and publisher. Timed per epoch around those two.
The second row adds what `train` also does every epoch: the validation pass and the
checkpoint (work the plain loop does not do, shown for scale rather than as overhead).
Baseline: `zero_grad; cross_entropy(model(x), y).backward(); step` over the same batches
(same seeded order), nothing else. Each round builds both from the same seed and runs
`EPOCHS` epochs of each, the order alternating between rounds; warm-up rounds are dropped.
On a shared machine other processes slow rounds down, often by far more than the effect
measured here, so three views are shown: the best round of each side (interference only ever
slows a round), the median round, and the median over rounds of the paired ratio (the two
sides of a round run back to back, under about the same load): the steadiest of the three.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional

from bench.harness import Bench, Counts, Figure, Row, median, rounded
from kubetask.jobs.kinds.ml.best_epoch import BestWeights, keep_best
from kubetask.jobs.kinds.ml.checkpoint import save_checkpoint
from kubetask.jobs.kinds.ml.data import Prepared, default_threads, obtain_dataset, prepare
from kubetask.jobs.kinds.ml.loop import (
    Tensors,
    Trainer,
    build_trainer,
    epoch_metrics,
    evaluate,
    index_batches,
    model_spec,
    to_device,
    train_epoch,
)
from kubetask.jobs.kinds.train import BATCH_REPORT_INTERVAL_S, batch_progress
from kubetask.jobs.params import DatagenParams, TrainParams
from kubetask.jobs.publisher import RedisPublisher
from kubetask.jobs.reporter import ProgressReporter


def paired_ratio(metric: str, ours: list[float], theirs: list[float]) -> Row:
    """The median over rounds of kubetask / baseline within each round (a row of ratios)."""
    ratios = [o / t for o, t in zip(ours, theirs, strict=True) if t > 0]
    return Row(metric, "x", median(ratios), 1.0)


EPOCHS = 2
PARAMS = TrainParams(
    datagen=DatagenParams(n_per_class=200, length=1024),
    model="cnn1d",
    width=32,
    depth=3,
    batch_size=64,
    epochs=EPOCHS,
)


def kubetask_round(
    bench: Bench, trainer: Trainer, data: tuple[Tensors, Tensors], run_id: str, folder: Path
) -> tuple[float, float]:
    """(training samples/s, samples/s with validation and checkpoint) over `EPOCHS` epochs."""
    train_set, val_set = data
    publisher = RedisPublisher(bench.redis_url, job_id=run_id)
    reporter = ProgressReporter(publisher, job_id=run_id)
    training_s = whole_s = 0.0
    history: list[dict[str, float]] = []
    best: BestWeights | None = None
    for epoch in range(1, EPOCHS + 1):
        started = time.perf_counter()
        on_batch = batch_progress(
            reporter, epoch=epoch, epochs=EPOCHS, interval_s=BATCH_REPORT_INTERVAL_S
        )
        stats = train_epoch(trainer, train_set, on_batch)
        reporter.update(epoch, EPOCHS, stage="train", epoch=epoch, loss=stats.loss)
        trained = time.perf_counter()
        metrics = epoch_metrics(epoch, stats, evaluate(trainer, val_set))
        history.append(metrics)
        best = keep_best(
            best, epoch=epoch, val_accuracy=metrics["val_accuracy"], model=trainer.model
        )
        checkpoint = folder / "checkpoint.pt"
        save_checkpoint(checkpoint, trainer, epoch=epoch, history=history, best=best, key="")
        training_s += trained - started
        whole_s += time.perf_counter() - started
    reporter.close()
    publisher.close()
    samples = EPOCHS * len(train_set.y)
    return samples / training_s, samples / whole_s


def plain_round(trainer: Trainer, train_set: Tensors) -> float:
    """Training samples/s of the textbook loop on the same model, optimizer and batches."""
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    started = time.perf_counter()
    for _ in range(EPOCHS):
        for idx in index_batches(len(train_set.y), trainer.batch_size, trainer.generator):
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(model(train_set.x[idx]), train_set.y[idx])
            torch.autograd.backward(loss)
            optimizer.step()
    return EPOCHS * len(train_set.y) / (time.perf_counter() - started)


def run(bench: Bench, counts: Counts) -> Figure:
    torch.set_num_threads(default_threads())
    device = torch.device("cpu")
    data: Prepared = prepare(obtain_dataset(PARAMS, None), PARAMS)
    spec = model_spec(PARAMS, data)
    tensors = (
        to_device(data.x_train, data.y_train, device),
        to_device(data.x_val, data.y_val, device),
    )
    ours: list[tuple[float, float]] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kubetask-bench-train-") as scratch:
        for i in range(counts.warmup + counts.launches):
            for side in ("kubetask", "plain") if i % 2 == 0 else ("plain", "kubetask"):
                trainer = build_trainer(PARAMS, spec, device)  # the same weights each time
                if side == "plain":
                    plain = plain_round(trainer, tensors[0])
                else:
                    run_id = f"bench-train-{i}"
                    measured = kubetask_round(bench, trainer, tensors, run_id, Path(scratch))
            if i >= counts.warmup:
                ours.append(measured)
                theirs.append(plain)
    training = [o[0] for o in ours]
    whole = [o[1] for o in ours]
    return Figure(
        key="train",
        title="train: training throughput with progress reporting vs a plain PyTorch loop",
        kubetask="kubetask.jobs.kinds.train's epoch (train_epoch + progress events to Redis)",
        baseline="zero_grad / forward / backward / step on the same model and batches",
        rows=[
            Row("training, best round", "samples/s", max(training), max(theirs)),
            Row("training, median round", "samples/s", median(training), median(theirs)),
            paired_ratio("training, median paired ratio", training, theirs),
            paired_ratio("+ validation, checkpoint, paired", whole, theirs),
        ],
        notes=[
            f"CPU, {torch.get_num_threads()} threads; {spec.kind} width {spec.width} depth "
            f"{spec.depth}, {len(data.y_train)} training signals of {spec.input_length} "
            f"features, batch {PARAMS.batch_size}; {counts.launches} rounds of {EPOCHS} epochs "
            f"per side after {counts.warmup} warm-up round(s)",
            "training rows at ratio >= 0.97: the reporting overhead is in the noise",
        ],
        raw={
            "kubetask_training": rounded(training, 1),
            "kubetask_whole_epoch": rounded(whole, 1),
            "baseline": rounded(theirs, 1),
        },
    )
