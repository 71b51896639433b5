"""The classifiers `train` fits: an MLP over a feature vector and a 1-D CNN over the same
vector read as a one-channel sequence. Both map [batch, length] to [batch, n_classes]. The
CNN is `depth` identical blocks, or the per-block architecture `nas` finds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from pydantic import JsonValue
from torch import nn

from kubetask.jobs.params import ConvLayer, ModelKind, Pooling

DEFAULT_KERNEL = 7


@dataclass(frozen=True)
class ConvBlock:
    """One conv block of a CNN1d: its output channels, kernel size and pooling."""

    channels: int
    kernel_size: int
    pooling: Pooling

    @classmethod
    def of(cls, layer: ConvBlock | ConvLayer | Mapping[str, JsonValue]) -> ConvBlock:
        """From a params `ConvLayer`, or the dict a saved spec holds."""
        if isinstance(layer, ConvBlock):
            return layer
        valid = layer if isinstance(layer, ConvLayer) else ConvLayer.model_validate(layer)
        return cls(valid.channels, valid.kernel_size, valid.pooling)


def conv_blocks(architecture: Sequence[ConvLayer] | None) -> tuple[ConvBlock, ...] | None:
    """The spec's blocks for params' `architecture`; None (the default CNN) without one."""
    return None if architecture is None else tuple(ConvBlock.of(a) for a in architecture)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network (kept in model.pt beside its weights)."""

    kind: ModelKind
    input_length: int
    n_classes: int
    width: int
    depth: int
    dropout: float
    layers: tuple[ConvBlock, ...] | None = None  # cnn1d: per-block; None: `depth` x `width`

    def __post_init__(self) -> None:
        if self.layers is not None:  # rebuilt from a saved spec: dicts back into blocks
            object.__setattr__(self, "layers", tuple(ConvBlock.of(b) for b in self.layers))

    def to_json(self) -> dict[str, JsonValue]:
        data: dict[str, JsonValue] = dict(asdict(self))
        if self.layers is None:
            del data["layers"]  # as specs were before architectures existed
        else:
            data["layers"] = [dict(asdict(block)) for block in self.layers]
        return data

    @property
    def blocks(self) -> tuple[ConvBlock, ...]:
        """The CNN's blocks: the architecture's, or `depth` blocks of `width`, k=7, max."""
        if self.layers is not None:
            return self.layers
        return (ConvBlock(self.width, DEFAULT_KERNEL, "max"),) * self.depth


class MLP(nn.Module):
    """`depth` hidden layers of `width` units (Linear, ReLU, Dropout), then the logits."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = spec.input_length
        for _ in range(spec.depth):
            layers += [nn.Linear(size, spec.width), nn.ReLU(), nn.Dropout(spec.dropout)]
            size = spec.width
        layers.append(nn.Linear(size, spec.n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def pooling_layer(pooling: Pooling) -> list[nn.Module]:
    if pooling == "max":
        return [nn.MaxPool1d(2, ceil_mode=True)]
    if pooling == "avg":
        return [nn.AvgPool1d(2, ceil_mode=True)]
    return []


class CNN1d(nn.Module):
    """Blocks of Conv1d ('same' padding), BatchNorm, ReLU and pooling by 2 (by default
    `depth` blocks of `width` channels, k=7, max pooling), then global average pooling,
    Dropout and the logits."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 1
        for block in spec.blocks:
            k = block.kernel_size
            blocks += [
                nn.Conv1d(channels, block.channels, kernel_size=k, padding=k // 2, bias=False),
                nn.BatchNorm1d(block.channels),
                nn.ReLU(),
                *pooling_layer(block.pooling),
            ]
            channels = block.channels
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Dropout(spec.dropout),
            nn.Linear(channels, spec.n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x.unsqueeze(1)))
        return out


def narrowest_norm(spec: ModelSpec) -> int | None:
    """The fewest values per channel a cnn1d's BatchNorm sees (each block halves the length
    its pooling passes on, rounding up); None for a model without BatchNorm (mlp)."""
    if spec.kind != "cnn1d":
        return None
    length, narrowest = spec.input_length, spec.input_length
    for block in spec.blocks:
        narrowest = min(narrowest, length)
        if block.pooling != "none":
            length = -(-length // 2)
    return narrowest


def build_model(spec: ModelSpec) -> nn.Module:
    return MLP(spec) if spec.kind == "mlp" else CNN1d(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
