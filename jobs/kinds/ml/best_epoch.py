"""Which epoch a training keeps, for `train` and for every `hpo`/`nas` trial alike: the one
with the highest validation accuracy, the earlier one on a tie. `train` keeps that epoch's
weights as a copy on the CPU (never a second copy of the model on the GPU) and saves them as
`model.pt`; a trial keeps only its metrics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


def improves(val_accuracy: float, best: float | None) -> bool:
    """Whether an epoch with `val_accuracy` replaces the best so far (None: none yet).
    Strictly better only, so a tie keeps the earlier epoch; NaN never replaces one."""
    return best is None or val_accuracy > best


def cpu_state(model: nn.Module) -> StateDict:
    """A copy of the model's weights and buffers on the CPU, sharing no storage with it
    (on the CPU too, where `.cpu()` alone would return the very tensors being trained)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass(frozen=True)
class BestWeights:
    """The epoch kept so far, with its weights on the CPU."""

    epoch: int
    val_accuracy: float
    state_dict: StateDict


def keep_best(
    best: BestWeights | None, *, epoch: int, val_accuracy: float, model: nn.Module
) -> BestWeights:
    """`best`, or this epoch's weights when they improve on it."""
    if best is not None and not improves(val_accuracy, best.val_accuracy):
        return best
    return BestWeights(epoch=epoch, val_accuracy=val_accuracy, state_dict=cpu_state(model))
