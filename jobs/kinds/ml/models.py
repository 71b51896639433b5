"""The classifiers `train` fits: an MLP over a feature vector and a 1-D CNN over the same
vector read as a one-channel sequence. Both map [batch, length] to [batch, n_classes]."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from pydantic import JsonValue
from torch import nn

from jobs.params import ModelKind


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network (kept in model.pt beside its weights)."""

    kind: ModelKind
    input_length: int
    n_classes: int
    width: int
    depth: int
    dropout: float

    def to_json(self) -> dict[str, JsonValue]:
        return dict(asdict(self))


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


class CNN1d(nn.Module):
    """`depth` blocks of Conv1d(k=7), BatchNorm, ReLU and MaxPool(2) with `width` channels,
    global average pooling, Dropout and the logits."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 1
        for _ in range(spec.depth):
            blocks += [
                nn.Conv1d(channels, spec.width, kernel_size=7, padding=3, bias=False),
                nn.BatchNorm1d(spec.width),
                nn.ReLU(),
                nn.MaxPool1d(2, ceil_mode=True),
            ]
            channels = spec.width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.width, spec.n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x.unsqueeze(1)))
        return out


def build_model(spec: ModelSpec) -> nn.Module:
    return MLP(spec) if spec.kind == "mlp" else CNN1d(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
