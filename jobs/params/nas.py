"""`nas` params: the 1-D CNN architectures a search may choose from, and its study."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from kubetask.jobs.params import Params, Pooling, StudyParams, TrainParams


def _all_poolings() -> list[Pooling]:
    return ["max", "avg", "none"]


class ArchitectureSpace(Params):
    """Per conv block: channels, kernel size and pooling; and how many blocks."""

    depth: tuple[int, int] = Field((1, 4), description="Conv blocks: (low, high), inclusive.")
    channels: list[int] = Field(default_factory=lambda: [8, 16, 32], min_length=1)
    kernel_sizes: list[int] = Field(
        default_factory=lambda: [3, 5, 7, 9], min_length=1, description="Odd sizes."
    )
    pooling: list[Pooling] = Field(default_factory=_all_poolings, min_length=1)

    @model_validator(mode="after")
    def _choices(self) -> Self:
        if not 1 <= self.depth[0] <= self.depth[1] <= 12:
            raise ValueError("depth must be (low, high) with 1 <= low <= high <= 12")
        if any(not 1 <= c <= 4096 for c in self.channels):
            raise ValueError("channels choices must lie in [1, 4096]")
        if any(not 1 <= k <= 255 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError("kernel_sizes choices must be odd and lie in [1, 255]")
        for name in ("channels", "kernel_sizes", "pooling"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} choices must not repeat")
        return self


def _short_cnn_trials() -> TrainParams:
    return TrainParams(model="cnn1d", epochs=3)


class NasParams(StudyParams):
    """An architecture search over 1-D CNNs, shared by every worker of the job like `hpo`."""

    train: TrainParams = Field(
        default_factory=_short_cnn_trials,
        description="Each trial's `train` params but the architecture (data, epochs, lr...).",
    )
    space: ArchitectureSpace = Field(default_factory=ArchitectureSpace)

    @model_validator(mode="after")
    def _searches_cnns(self) -> Self:
        if self.train.model != "cnn1d":
            raise ValueError("nas searches cnn1d architectures: train.model must be 'cnn1d'")
        if self.train.architecture is not None:
            raise ValueError("train.architecture is what nas searches: leave it out")
        return self
