"""Per-epoch losses from an SDV synthesizer while it fits. SDV has no callback hook, so this
reads what ctgan records: during `fit`, SDV builds the ctgan model as `synthesizer._model`,
and the model's epoch loop assigns a new `loss_values` DataFrame after every epoch (TVAE: one
row per batch, column `Loss`; CTGAN: one row per epoch, `Generator Loss` and
`Discriminator Loss`). A watcher thread polls that attribute, so the fit itself runs untouched
(no patching, no per-batch cost). The versions this relies on are pinned in pyproject.toml and
guarded by tests/unit/test_sdv_internals.py."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pandas as pd
from pydantic import JsonValue

log = logging.getLogger("kubetask.task")

TVAE_COLUMNS = ("Epoch", "Loss")
CTGAN_COLUMNS = ("Epoch", "Generator Loss", "Discriminator Loss")


class SdvInternalsChanged(RuntimeError):
    """The synthesizer no longer records its losses the way this module reads them."""


@dataclass(frozen=True)
class EpochLoss:
    epoch: int  # from 1
    loss: float  # TVAE: the epoch's mean batch loss; CTGAN: the generator's loss
    discriminator_loss: float | None = None  # CTGAN only

    def metrics(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"epoch": self.epoch, "loss": _round(self.loss)}
        if self.discriminator_loss is not None:
            out |= {"generator_loss": _round(self.loss)}
            out |= {"discriminator_loss": _round(self.discriminator_loss)}
        return out


def _round(value: float) -> float:
    return round(value, 6) if math.isfinite(value) else value


def epoch_losses(frame: pd.DataFrame | None) -> list[EpochLoss]:
    """Every finished epoch's loss in a ctgan model's `loss_values`, in order."""
    if frame is None or len(frame) == 0:
        return []
    columns = set(frame.columns)
    if columns >= set(TVAE_COLUMNS):
        means = frame.groupby("Epoch", sort=True)["Loss"].mean()
        return [EpochLoss(int(e) + 1, float(v)) for e, v in means.items()]
    if columns >= set(CTGAN_COLUMNS):
        return [
            EpochLoss(int(row[0]) + 1, float(row[1]), float(row[2]))
            for row in frame[list(CTGAN_COLUMNS)].itertuples(index=False)
        ]
    raise SdvInternalsChanged(f"loss_values has columns {sorted(columns)}")


def recorded_losses(synthesizer: Any) -> pd.DataFrame | None:
    """The loss frame of the model the synthesizer is fitting (None before it exists)."""
    model = getattr(synthesizer, "_model", None)
    frame = getattr(model, "loss_values", None)
    return frame if isinstance(frame, pd.DataFrame) else None


def move_model_to_cpu(synthesizer: Any) -> None:
    """A synthesizer fitted on a GPU is saved with its model on the CPU, so that any node
    can load it (SDV cannot unpickle CUDA tensors on a CPU-only machine)."""
    import torch

    synthesizer._model.set_device(torch.device("cpu"))


class LossWatcher:
    """Calls `on_epoch` once per finished epoch while `synthesizer.fit` runs, from a
    background thread, and for the remaining epochs on exit. Never fails the fit."""

    def __init__(
        self, synthesizer: Any, on_epoch: Callable[[EpochLoss], None], interval_s: float = 0.2
    ) -> None:
        self._synthesizer = synthesizer
        self._on_epoch = on_epoch
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="kubetask-sdv-losses", daemon=True)
        self.losses: list[EpochLoss] = []
        self.broken: str | None = None  # why the losses could not be read, if so

    def __enter__(self) -> LossWatcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()

    def poll(self) -> None:
        """Report the epochs finished since the last poll."""
        with self._lock:
            if self.broken is not None:
                return
            try:
                finished = epoch_losses(recorded_losses(self._synthesizer))
            except Exception as exc:  # a changed library must not fail the training
                self.broken = f"{type(exc).__name__}: {exc}"
                log.warning("cannot read the synthesizer's losses: %s", self.broken)
                return
            for loss in finished[len(self.losses) :]:
                self.losses.append(loss)
                self._on_epoch(loss)
