"""Each task kind's params model. Light (pydantic only), so the API can validate requests
and publish JSON schemas without importing torch or sdv."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Params(BaseModel):
    """Base of every kind's params: unknown fields are errors, every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultClass(StrEnum):
    NORMAL = "normal"
    IMBALANCE = "imbalance"
    MISALIGNMENT = "misalignment"
    LOOSENESS = "looseness"
    BEARING_OUTER = "bearing_outer"
    BEARING_INNER = "bearing_inner"


class DatagenParams(Params):
    """Synthetic vibration signals of a rotating machine, labelled by fault class."""

    n_per_class: int = Field(40, ge=1, le=100_000, description="Signals per fault class.")
    length: int = Field(1024, ge=64, le=1_048_576, description="Samples per signal.")
    sample_rate: float = Field(12_000.0, gt=0, le=1_000_000, description="Hz.")
    rotation_hz: float = Field(29.5, gt=0, le=1_000, description="Shaft speed in Hz.")
    noise: float = Field(0.3, ge=0, le=10, description="Noise std relative to a unit tone.")
    classes: list[FaultClass] = Field(default_factory=lambda: list(FaultClass), min_length=2)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _below_nyquist(self) -> Self:
        # The highest component modelled is the bearing resonance at sample_rate / 4 and the
        # 10th shaft harmonic; both must sit below the Nyquist frequency.
        if 10 * self.rotation_hz >= self.sample_rate / 2:
            raise ValueError("rotation_hz is too high for sample_rate (need 20 x rotation_hz)")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self


class NoopParams(Params):
    """Reports progress and nothing else; can be told to fail, to try retries and errors."""

    steps: int = Field(0, ge=0, le=1_000_000)
    step_s: float = Field(0.0, ge=0, le=3600)
    fail: Literal["exception", "memory", "missing-file", "exit"] | None = None
    fail_message: str = Field("failure requested by params", max_length=1000)
    fail_attempts: int | None = Field(
        None, ge=1, description="Fail only the first N attempts (default: every attempt)."
    )
    exit_code: int = Field(3, ge=1, le=255, description="Exit code when fail='exit'.")
    payload: str = Field(
        "", max_length=1_000_000, description="Carried and counted (large params)."
    )
