"""The training loop of `train` and `hpo`, in small functions: batches of indices, one
training epoch (autocast and a gradient scaler on CUDA; losses summed on the device and read
once per epoch, so a GPU is never made to wait per batch), and evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.ml.data import Prepared
from kubetask.jobs.kinds.ml.models import ModelSpec, build_model, conv_blocks, narrowest_norm
from kubetask.jobs.params import TrainParams

OnBatch = Callable[[int, int], None]  # (batches done, batches per epoch)


@dataclass(frozen=True)
class EpochStats:
    loss: float
    accuracy: float
    samples: int
    seconds: float


@dataclass
class Trainer:
    """A model with its optimizer, gradient scaler and shuffling generator, on one device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # on the CPU: the same shuffles on any device
    device: torch.device
    amp: bool
    batch_size: int


@dataclass(frozen=True)
class Tensors:
    x: torch.Tensor
    y: torch.Tensor


def model_spec(params: TrainParams, data: Prepared) -> ModelSpec:
    return ModelSpec(
        kind=params.model,
        input_length=int(data.x_train.shape[1]),
        n_classes=len(data.classes),
        width=params.width,
        depth=params.depth,
        dropout=params.dropout,
        layers=conv_blocks(params.architecture),
    )


def build_trainer(
    params: TrainParams, spec: ModelSpec, device: torch.device, *, n_train: int | None = None
) -> Trainer:
    """Seed first, so that the initial weights depend on the seed alone. A cnn1d so deep that
    a BatchNorm sees one value per channel cannot train on batches of one sample (batch_size
    1, or a training split of `n_train` = 1 signal): refused for good (`TaskError`,
    permanent) before any work."""
    one = params.batch_size == 1 or n_train == 1
    if one and narrowest_norm(spec) == 1:
        raise TaskError(
            f"a cnn1d of depth {len(spec.blocks)} narrows signals of length "
            f"{spec.input_length} to 1 value before its last BatchNorm, which cannot train on "
            "batches of 1 sample"
            + (" (the training split holds 1 signal)" if n_train == 1 else ""),
            suggestion="Use batch_size >= 2 and a training split of 2 signals or more "
            "(more data, or a smaller val_fraction), or a smaller depth.",
            permanent=True,
        )
    torch.manual_seed(params.seed)
    model = build_model(spec).to(device)
    amp = params.amp and device.type == "cuda"
    return Trainer(
        model=model,
        optimizer=torch.optim.AdamW(
            model.parameters(), lr=params.lr, weight_decay=params.weight_decay
        ),
        scaler=torch.amp.GradScaler(device.type, enabled=amp),
        generator=torch.Generator().manual_seed(params.seed),
        device=device,
        amp=amp,
        batch_size=params.batch_size,
    )


def to_device(x: np.ndarray, y: np.ndarray, device: torch.device) -> Tensors:
    """The whole split on the device once: batches are then gathered there."""
    return Tensors(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of `n` samples; a last batch of one sample joins the one
    before it (a BatchNorm cannot train on one value per channel)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [(start, stop) for start, stop in zip(starts, [*starts[1:], n], strict=True)]


def index_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    for start, stop in batch_bounds(n, batch_size):
        yield order[start:stop]


def train_epoch(trainer: Trainer, data: Tensors, on_batch: OnBatch | None = None) -> EpochStats:
    """One pass over `data` in a seeded order; the mean loss and accuracy over it."""
    model, optimizer, scaler = trainer.model, trainer.optimizer, trainer.scaler
    model.train()
    started = time.perf_counter()
    n = len(data.y)
    n_batches = len(batch_bounds(n, trainer.batch_size))
    loss_sum = torch.zeros((), device=trainer.device)
    correct = torch.zeros((), dtype=torch.long, device=trainer.device)
    for number, order in enumerate(index_batches(n, trainer.batch_size, trainer.generator), 1):
        idx = order.to(trainer.device, non_blocking=True)
        xb, yb = data.x[idx], data.y[idx]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(trainer.device.type, dtype=torch.float16, enabled=trainer.amp):
            logits = model(xb)
            loss = functional.cross_entropy(logits, yb)
        torch.autograd.backward(scaler.scale(loss))
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().float() * len(idx)
        correct += (logits.detach().argmax(dim=1) == yb).sum()
        if on_batch is not None:
            on_batch(number, n_batches)
    return EpochStats(
        loss=loss_sum.item() / n,
        accuracy=correct.item() / n,
        samples=n,
        seconds=time.perf_counter() - started,
    )


@torch.no_grad()
def evaluate(trainer: Trainer, data: Tensors) -> tuple[float, float]:
    """Mean loss and accuracy over `data`, in eval mode, batch by batch."""
    trainer.model.eval()
    loss_sum = torch.zeros((), device=trainer.device)
    correct = torch.zeros((), dtype=torch.long, device=trainer.device)
    for start in range(0, len(data.y), trainer.batch_size):
        xb = data.x[start : start + trainer.batch_size]
        yb = data.y[start : start + trainer.batch_size]
        with torch.autocast(trainer.device.type, dtype=torch.float16, enabled=trainer.amp):
            logits = trainer.model(xb)
        loss_sum += functional.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(dim=1) == yb).sum()
    n = len(data.y)
    return loss_sum.item() / n, correct.item() / n


def epoch_metrics(epoch: int, stats: EpochStats, val: tuple[float, float]) -> dict[str, float]:
    """What an epoch's progress event and the result carry (rounded for people)."""
    return {
        "epoch": epoch,
        "loss": round(stats.loss, 6),
        "accuracy": round(stats.accuracy, 6),
        "val_loss": round(val[0], 6),
        "val_accuracy": round(val[1], 6),
        "samples_per_s": round(stats.samples / stats.seconds, 1) if stats.seconds else 0.0,
    }
