"""`explain` and `explain-batch` params: which trained model, which signals, which class,
and how finely integrated gradients follow the path from a zero signal to each signal."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from kubetask.jobs.params.catalog import ModelOnData

PREDICTED = "predicted"
LABEL = "label"
# Gauss-Legendre points by default: on `train`'s default model and data (two seeds), both the
# mean and the largest completeness gap over the 240 signals are below those of the 64-point
# midpoint sum explain used before (bench/explain_attribution.py prints both); 32 and 40
# points were not (the network's gradient jumps along the path: errors fall as 1/steps)
STEPS = 48


class Rule(StrEnum):
    """How integrated gradients' integral over the path is summed."""

    GAUSS_LEGENDRE = "gauss-legendre"  # exact for polynomials of degree 2 steps - 1
    MIDPOINT = "midpoint"  # the Riemann sum of other tools (Captum's riemann_middle)


class ExplainBase(ModelOnData):
    """What both explain kinds share (model, signals, device: see `ModelOnData`)."""

    target: str = Field(
        PREDICTED,
        min_length=1,
        max_length=200,
        description="The class whose logit is explained: 'predicted' (the model's prediction "
        "for the signal), 'label' (the dataset's label) or a class name of the model.",
    )
    steps: int = Field(
        STEPS,
        ge=1,
        le=4096,
        description="Points of integrated gradients' path from the zero signal to the signal "
        "(more: a smaller completeness gap, slower). `batch_size` of them per forward pass.",
    )
    rule: Rule = Field(
        Rule.GAUSS_LEGENDRE,
        description="How the path's gradients are summed: 'gauss-legendre' (weighted, "
        "exact for a gradient polynomial of degree 2 steps - 1 along the path) or 'midpoint' "
        "(the Riemann sum of other tools, e.g. Captum's riemann_middle, for comparison).",
    )


class ExplainParams(ExplainBase):
    """Attributions (integrated gradients, saliency) of one signal's class logit over its
    time samples, as arrays and a PNG overlay."""

    index: int = Field(0, ge=0, description="The signal explained: its row in the dataset.")


class ExplainBatchParams(ExplainBase):
    """Attributions of many signals; the job's workers (completions) share them out."""

    indices: list[int] | None = Field(
        None,
        min_length=1,
        max_length=100_000,
        description="Rows of the dataset to explain. None: every signal.",
    )
    plots: int = Field(
        4, ge=0, le=64, description="Signals per part drawn in that part's PNG overlay."
    )

    @field_validator("indices")
    @classmethod
    def _rows(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if any(i < 0 for i in value):
                raise ValueError("rows are counted from 0")
            if len(set(value)) != len(value):
                raise ValueError("rows must not repeat")
        return value
