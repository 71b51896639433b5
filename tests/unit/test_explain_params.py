"""`explain`/`explain-batch` params: the quadrature rule of integrated gradients and its
points, Gauss-Legendre by default, the midpoint sum of other tools on request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubetask.jobs.params.explain import STEPS, ExplainBatchParams, ExplainParams, Rule


@pytest.mark.parametrize("model", [ExplainParams, ExplainBatchParams])
def test_gauss_legendre_is_the_default_and_midpoint_the_alternative(
    model: type[ExplainParams] | type[ExplainBatchParams],
) -> None:
    default = model.model_validate({"model": "m/model.pt"})
    assert (default.rule, default.steps) == (Rule.GAUSS_LEGENDRE, STEPS) == ("gauss-legendre", 48)
    chosen = model.model_validate({"model": "m/model.pt", "rule": "midpoint", "steps": 64})
    assert (chosen.rule, chosen.steps) == (Rule.MIDPOINT, 64)
    with pytest.raises(ValidationError, match="rule"):
        model.model_validate({"model": "m/model.pt", "rule": "trapezoid"})
