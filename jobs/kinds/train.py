"""`train`: a machine-fault classifier (MLP or 1-D CNN) on a `datagen` dataset.

Each epoch reports its metrics (`stage="train"`: epoch, loss, accuracy, val_loss,
val_accuracy, samples_per_s) and writes `checkpoint.pt` in the job's artifacts; a retried
attempt finds it and goes on from there (`resumed_from_epoch` in the result). CUDA with
float16 autocast and a gradient scaler when a GPU is present, the CPU otherwise; the same
seed gives the same metrics on the same hardware. The network of the best epoch (highest
validation accuracy, the earlier on a tie; `best_epoch`, `best_metrics`), its spec and its
input standardization are saved as `model.pt`, which `job:<id>` chaining names; the last
epoch's network as `last.pt` (`last_model`, `metrics`). The best weights wait on the CPU, so
the GPU never holds two copies of the model. Signals generated on the fly (no `dataset`)
are kept as the job's `dataset.npz`; the result names the dataset trained on and its signals'
shape (`length`, `sample_rate`, `classes`), which the analysis kinds are checked against at
submit and, when they name no data of their own, take as theirs.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.datagen import save as save_dataset
from kubetask.jobs.kinds.ml.best_epoch import StateDict, cpu_state, keep_best
from kubetask.jobs.kinds.ml.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from kubetask.jobs.kinds.ml.data import (
    Prepared,
    configure_torch,
    obtain_dataset,
    pick_device,
    prepare,
    require_classes,
)
from kubetask.jobs.kinds.ml.inference import read_sample_rate
from kubetask.jobs.kinds.ml.loop import (
    OnBatch,
    build_trainer,
    epoch_metrics,
    evaluate,
    model_spec,
    to_device,
    train_epoch,
)
from kubetask.jobs.kinds.ml.models import ModelSpec, count_parameters
from kubetask.jobs.params import TrainParams
from kubetask.jobs.reporter import ProgressReporter
from kubetask.jobs.writes import written_whole

BATCH_REPORT_INTERVAL_S = 1.0


def batch_progress(
    reporter: ProgressReporter, *, epoch: int, epochs: int, interval_s: float
) -> OnBatch:
    """Progress within a long epoch, at most once per `interval_s` (no metrics: conflated)."""
    last = time.monotonic()

    def on_batch(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval_s:
            last = now
            message = f"epoch {epoch}/{epochs}: batch {done}/{total}"
            reporter.update(epoch - 1 + done / total, epochs, stage="train", message=message)

    return on_batch


def save_model(
    path: Path,
    weights: StateDict,
    *,
    spec: ModelSpec,
    data: Prepared,
    features: str,
    metrics: dict[str, float],
    sample_rate: float | None = None,
) -> None:
    """Weights with what inference needs (the spec, the classes, the standardization and
    the signals' sample rate) and the epoch's metrics they scored."""
    state: dict[str, object] = {
        "spec": spec.to_json(),
        "sample_rate": sample_rate,  # None: not known (a dataset that does not record it)
        "features": features,
        "classes": data.classes,
        "mean": torch.from_numpy(data.mean),
        "std": torch.from_numpy(data.std),
        # what `evaluate`, `test` and `export` score it on when given the data it trained on
        "held_out": None
        if data.source is None
        else {"dataset": data.source, "n": data.n, "rows": torch.from_numpy(data.val_rows)},
        "epoch": int(metrics["epoch"]),
        "metrics": metrics,
        "state_dict": weights,
    }
    with written_whole(path) as partial:
        torch.save(state, partial)


def without_speed(metrics: dict[str, float]) -> dict[str, JsonValue]:
    """An epoch's metrics for the result: its throughput is the run's `samples_per_s`."""
    return {k: v for k, v in metrics.items() if k != "samples_per_s"}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def sample_rate_of(params: TrainParams, context: TaskContext) -> float | None:
    """The sample rate of the signals trained on: generated, or as the dataset records it."""
    if params.dataset is None:
        return params.datagen.sample_rate
    return read_sample_rate(context.resolve(params.dataset))


def run(params: TrainParams, context: TaskContext) -> dict[str, JsonValue]:
    device = pick_device(params.device)
    configure_torch(threads=params.threads, seed=params.seed, device=device)
    reporter = context.reporter
    reporter.update(0, params.epochs, stage="data", message="preparing the dataset")
    dataset = obtain_dataset(params, context)
    require_classes(dataset)
    if dataset.source is None:  # generated: kept, so the model's data can be named later
        saved = context.artifact("dataset.npz")
        save_dataset(saved, dataset.x, dataset.y, params.datagen)
        dataset = replace(dataset, source=context.relative(saved))
    data = prepare(dataset, params)
    spec = model_spec(params, data)
    trainer = build_trainer(params, spec, device, n_train=len(data.y_train))
    train_set = to_device(data.x_train, data.y_train, device)
    val_set = to_device(data.x_val, data.y_val, device)

    checkpoint = context.artifact("checkpoint.pt")
    key = fingerprint(params)
    resumed = load_checkpoint(checkpoint, trainer, key=key, epochs=params.epochs)
    history = resumed.history if resumed else []
    best = resumed.best if resumed else None
    first = resumed.epoch + 1 if resumed else 1
    if resumed:
        reporter.update(resumed.epoch, params.epochs, stage="train", message="resumed")

    samples, seconds = 0, 0.0
    for epoch in range(first, params.epochs + 1):
        on_batch = batch_progress(
            reporter, epoch=epoch, epochs=params.epochs, interval_s=BATCH_REPORT_INTERVAL_S
        )
        stats = train_epoch(trainer, train_set, on_batch)
        metrics = epoch_metrics(epoch, stats, evaluate(trainer, val_set))
        history.append(metrics)
        best = keep_best(
            best, epoch=epoch, val_accuracy=metrics["val_accuracy"], model=trainer.model
        )
        save_checkpoint(checkpoint, trainer, epoch=epoch, history=history, best=best, key=key)
        message = f"epoch {epoch}/{params.epochs}"
        reporter.update(epoch, params.epochs, stage="train", message=message, **metrics)
        samples, seconds = samples + stats.samples, seconds + stats.seconds

    if best is None:  # epochs >= 1: an epoch ran, or a checkpoint brought its best
        raise RuntimeError("no epoch trained")
    best_metrics, final = history[best.epoch - 1], history[-1]
    model_path, last_path = context.artifact("model.pt"), context.artifact("last.pt")
    rate = sample_rate_of(params, context)
    for path, weights, metrics in (
        (model_path, best.state_dict, best_metrics),
        (last_path, cpu_state(trainer.model), final),
    ):
        save_model(
            path, weights, spec=spec, data=data, features=params.features, metrics=metrics,
            sample_rate=rate,
        )  # fmt: skip
    return {
        "model": context.relative(model_path),
        "last_model": context.relative(last_path),
        "checkpoint": context.relative(checkpoint),
        "dataset": data.source,
        "length": int(dataset.x.shape[1]),
        "sample_rate": rate,
        "features": params.features,
        "device": describe_device(device),
        "amp": trainer.amp,
        "epochs": params.epochs,
        "epochs_run": params.epochs - first + 1,
        "resumed_from_epoch": resumed.epoch if resumed else None,
        "best_epoch": best.epoch,
        "best_val_accuracy": best.val_accuracy,
        "best_metrics": without_speed(best_metrics),
        "metrics": without_speed(final),
        "samples_per_s": round(samples / seconds, 1) if seconds else None,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "classes": list(data.classes),
        "parameters": count_parameters(trainer.model),
    }
