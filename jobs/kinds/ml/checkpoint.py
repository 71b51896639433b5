"""`train`'s checkpoint: written atomically after every epoch, so that a retried attempt
(same job, same artifact folder) goes on from the last finished epoch with the same weights,
optimizer, gradient scaler and random streams, as if it had never stopped; it holds the
best epoch so far too (its number, validation accuracy and CPU weights), so that a resumed
run keeps the same epoch as `model.pt` as an uninterrupted one.

A checkpoint is only taken up when it was written for the same training (params other than
`epochs`, `device`, `threads` and `amp`) and not for more epochs than asked for."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kubetask.jobs.kinds.ml.best_epoch import BestWeights
from kubetask.jobs.kinds.ml.loop import Trainer
from kubetask.jobs.params import TrainParams
from kubetask.jobs.writes import written_whole

log = logging.getLogger("kubetask.task")

RUNTIME_FIELDS = {"epochs", "device", "threads", "amp"}


@dataclass(frozen=True)
class Resumed:
    epoch: int  # the last finished epoch
    history: list[dict[str, float]]
    best: BestWeights


def fingerprint(params: TrainParams) -> str:
    """What makes two runs the same training, whatever their epochs and hardware."""
    return json.dumps(params.model_dump(mode="json", exclude=RUNTIME_FIELDS), sort_keys=True)


def save_checkpoint(
    path: Path,
    trainer: Trainer,
    *,
    epoch: int,
    history: list[dict[str, float]],
    best: BestWeights,
    key: str,
) -> None:
    state: dict[str, Any] = {
        "fingerprint": key,
        "epoch": epoch,
        "history": history,
        "best_epoch": best.epoch,
        "best_val_accuracy": best.val_accuracy,
        "best_state": best.state_dict,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "shuffle_rng": trainer.generator.get_state(),
        "cpu_rng": torch.get_rng_state(),
    }
    if trainer.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(trainer.device)
    with written_whole(path) as partial:  # a crash mid-write leaves the previous one whole
        torch.save(state, partial)


def load_checkpoint(path: Path, trainer: Trainer, *, key: str, epochs: int) -> Resumed | None:
    """Restore the trainer from `path` when it holds this training's state; else None."""
    if not path.is_file():
        return None
    # on the CPU: the best weights stay there; the rest is copied to the model's device
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != key:
        log.warning("%s was written for other params: starting over", path.name)
        return None
    if int(state["epoch"]) > epochs:
        log.warning(
            "%s is at epoch %s, past epochs=%s: starting over", path, state["epoch"], epochs
        )
        return None
    if "best_state" not in state:
        log.warning("%s holds no best epoch (an older format): starting over", path.name)
        return None
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state["scaler"] and trainer.scaler.is_enabled():  # empty when saved without AMP
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.generator.set_state(state["shuffle_rng"].cpu())
    torch.set_rng_state(state["cpu_rng"].cpu())
    if trainer.device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), trainer.device)
    best = BestWeights(
        epoch=int(state["best_epoch"]),
        val_accuracy=float(state["best_val_accuracy"]),
        state_dict=dict(state["best_state"]),
    )
    return Resumed(epoch=int(state["epoch"]), history=list(state["history"]), best=best)
