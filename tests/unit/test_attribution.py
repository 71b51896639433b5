"""Integrated gradients and saliency where the exact answer is known, through `train`'s
feature pipeline, and the PNG overlay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kubetask.jobs.kinds.ml.attribution import (
    attribute,
    attribute_batch,
    integrated_gradients,
    quadrature,
    saliency,
    softmax,
    top_samples,
)
from kubetask.jobs.kinds.ml.attribution_plot import OverlayRow, bucket_mean, render_overlay
from kubetask.jobs.kinds.ml.folding import fold_batch_norms
from kubetask.jobs.kinds.ml.inference import SignalPipeline
from kubetask.jobs.kinds.ml.models import ModelSpec, build_model
from kubetask.jobs.params.explain import Rule

GL, MIDPOINT = Rule.GAUSS_LEGENDRE, Rule.MIDPOINT


def linear(n_in: int = 16, n_out: int = 3, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    model = nn.Linear(n_in, n_out)
    model.requires_grad_(False)
    return model


def test_integrated_gradients_of_a_linear_model_are_input_times_weight() -> None:
    model = linear()
    x = torch.randn(16, dtype=torch.float32)
    ig = integrated_gradients(model, x, 2, steps=5, rule=GL)
    torch.testing.assert_close(ig, x * model.weight[2])
    # completeness: the attributions add up to f(x) - f(0) for the target logit
    delta = model(x[None])[0, 2] - model(torch.zeros(1, 16))[0, 2]
    assert float(ig.sum()) == pytest.approx(float(delta), abs=1e-5)


def test_saliency_of_a_linear_model_is_the_absolute_weight() -> None:
    model = linear()
    x = torch.randn(16)
    torch.testing.assert_close(saliency(model, x, 1), model.weight[1].abs())


def test_the_riemann_sum_is_exact_for_a_quadratic_and_converges_for_a_cubic() -> None:
    x = torch.linspace(-1.0, 2.0, 12, dtype=torch.float64)

    def quadratic(batch: torch.Tensor) -> torch.Tensor:
        return (batch**2).sum(dim=1, keepdim=True)

    def cubic(batch: torch.Tensor) -> torch.Tensor:
        return (batch**3).sum(dim=1, keepdim=True)

    # d/dx_i of sum(x^2) along the path is 2 a x_i: the exact attribution is x_i^2
    torch.testing.assert_close(integrated_gradients(quadratic, x, 0, steps=3, rule=MIDPOINT), x**2)
    coarse = attribute(cubic, x, target=0, steps=2, rule=MIDPOINT)
    fine = attribute(cubic, x, target=0, steps=64, rule=MIDPOINT)
    np.testing.assert_allclose(fine.integrated_gradients, (x**3).numpy(), rtol=1e-3, atol=1e-4)
    assert fine.relative_gap < 1e-3 < coarse.relative_gap
    assert fine.logit_delta == pytest.approx(float((x**3).sum()))


@pytest.mark.parametrize("points", [1, 2, 3, 8, 24])
def test_gauss_legendre_with_n_points_integrates_degree_2n_minus_1_exactly(points: int) -> None:
    nodes, weights = quadrature(GL, points)
    assert len(nodes) == len(weights) == points
    assert ((nodes > 0) & (nodes < 1)).all()
    assert (np.diff(nodes) > 0).all()
    for degree in range(2 * points):  # the integral of a^k over [0, 1] is 1 / (k + 1)
        assert weights @ nodes**degree == pytest.approx(1 / (degree + 1), rel=1e-12)


def test_the_midpoint_rule_is_equal_weights_at_the_middles_of_equal_intervals_only() -> None:
    nodes, weights = quadrature(MIDPOINT, 4)
    assert nodes.tolist() == [0.125, 0.375, 0.625, 0.875]
    assert weights.tolist() == [0.25] * 4
    assert weights @ nodes == pytest.approx(0.5)  # exact up to degree 1 only
    assert weights @ nodes**2 != pytest.approx(1 / 3, rel=1e-3)
    for points in (1, 2, 3):  # and Gauss-Legendre's n points not beyond degree 2n - 1
        nodes, weights = quadrature(GL, points)
        assert weights @ nodes ** (2 * points) != pytest.approx(1 / (2 * points + 1), rel=1e-3)
    with pytest.raises(ValueError, match="at least one point"):
        quadrature(GL, 0)


def test_gauss_legendre_integrated_gradients_are_exact_where_the_path_is_polynomial() -> None:
    x = torch.linspace(-1.0, 2.0, 12, dtype=torch.float64)

    def quintic(batch: torch.Tensor) -> torch.Tensor:
        return (batch**5).sum(dim=1, keepdim=True)

    # along the path the gradient 5 a^4 x^4 is of degree 4 in a: 3 nodes are exact, as no
    # midpoint sum of 64 is
    exact = attribute(quintic, x, target=0, steps=3, rule=GL)
    np.testing.assert_allclose(exact.integrated_gradients, (x**5).numpy(), rtol=1e-6)
    assert exact.relative_gap < 1e-6
    assert attribute(quintic, x, target=0, steps=2, rule=GL).relative_gap > 1e-3
    assert attribute(quintic, x, target=0, steps=64, rule=MIDPOINT).relative_gap > 1e-5


def test_chunks_of_path_points_give_the_same_attributions() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).requires_grad_(False)
    x = torch.randn(8)
    whole = integrated_gradients(model, x, 0, steps=10, rule=GL, chunk=256)
    torch.testing.assert_close(integrated_gradients(model, x, 0, steps=10, rule=GL, chunk=3), whole)


def test_without_a_target_the_predicted_class_is_explained() -> None:
    model = linear(n_out=4, seed=3)
    x = torch.randn(16)
    attribution = attribute(model, x, target=None, steps=4, rule=GL)
    assert attribution.target == int(model(x[None]).argmax())
    assert attribution.logits.shape == (4,)
    assert attribution.gap == pytest.approx(0.0, abs=1e-5)


def spectrum_pipeline(length: int) -> SignalPipeline:
    torch.manual_seed(0)
    spec = ModelSpec(
        kind="cnn1d", input_length=length // 2 + 1, n_classes=3, width=4, depth=2, dropout=0.0
    )
    n = spec.input_length
    pipeline = SignalPipeline(
        build_model(spec),
        features="spectrum",
        mean=np.full(n, 0.5, dtype=np.float32),
        std=np.full(n, 2.0, dtype=np.float32),
        length=length,
    )
    return pipeline.eval().requires_grad_(False)


def test_a_spectrum_model_is_explained_over_time_samples_and_stays_complete() -> None:
    pipeline = spectrum_pipeline(64)
    t = torch.arange(64, dtype=torch.float32)
    x = torch.sin(t * 0.7) + 0.3 * torch.cos(t * 2.1)
    attribution = attribute(pipeline, x, target=1, steps=256, rule=MIDPOINT)
    assert attribution.integrated_gradients.shape == (64,)
    assert attribution.saliency.shape == (64,)
    assert np.isfinite(attribution.integrated_gradients).all()
    assert attribution.relative_gap < 0.05
    # the Hann window hides the signal's ends from the spectrum: they barely matter
    middle = np.abs(attribution.saliency[24:40]).mean()
    assert np.abs(attribution.saliency[:2]).mean() < 0.1 * middle


@pytest.mark.parametrize("rule", list(Rule))
def test_batched_attributions_equal_the_per_signal_ones(rule: Rule) -> None:
    pipeline = spectrum_pipeline(64)
    generator = torch.Generator().manual_seed(1)
    signals = torch.randn(5, 64, generator=generator)
    targets: list[int | None] = [None, 0, 2, None, 1]
    # 7 rows a pass: passes end inside a signal's path, and a signal's own point (saliency)
    # shares a pass with the next signal's path
    batched = attribute_batch(pipeline, signals, targets=targets, steps=16, rule=rule, chunk=7)
    assert len(batched) == 5
    for x, target, got in zip(signals, targets, batched, strict=True):
        alone = attribute(pipeline, x, target=target, steps=16, rule=rule)
        assert got.target == alone.target
        np.testing.assert_allclose(got.logits, alone.logits, rtol=1e-5, atol=1e-6)
        assert got.baseline_logit == pytest.approx(alone.baseline_logit, abs=1e-6)
        for mine, theirs in (
            (got.integrated_gradients, alone.integrated_gradients),
            (got.saliency, alone.saliency),
        ):
            np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
        assert got.gap == pytest.approx(alone.gap, abs=1e-5)
    assert attribute_batch(pipeline, signals[:0], targets=[], steps=16, rule=rule) == []
    with pytest.raises(ValueError, match="2 signals but 1 targets"):
        attribute_batch(pipeline, signals[:2], targets=[None], steps=4, rule=rule)


def test_folded_batch_norms_compute_the_same_function_and_gradients() -> None:
    pipeline = spectrum_pipeline(64)
    with torch.no_grad():  # statistics as after training, not the identity of a new layer
        for layer in pipeline.modules():
            if isinstance(layer, nn.BatchNorm1d):
                assert layer.running_mean is not None
                assert layer.running_var is not None
                layer.running_mean.uniform_(-1.0, 1.0)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 2.0)
                layer.bias.uniform_(-1.0, 1.0)
    folded = fold_batch_norms(pipeline)

    def norms(module: nn.Module) -> int:
        return sum(isinstance(m, nn.BatchNorm1d) for m in module.modules())

    assert norms(pipeline) == 2  # the original is left as it was
    assert norms(folded) == 0
    x = torch.randn(3, 64)
    torch.testing.assert_close(folded(x), pipeline(x), rtol=1e-5, atol=1e-5)
    mine = attribute(folded, x[0], target=1, steps=8, rule=GL)
    theirs = attribute(pipeline, x[0], target=1, steps=8, rule=GL)
    np.testing.assert_allclose(
        mine.integrated_gradients, theirs.integrated_gradients, rtol=1e-4, atol=1e-5
    )


def test_top_samples_are_the_largest_magnitudes_first() -> None:
    values = np.array([0.1, -3.0, 2.0, 0.0, 2.5], dtype=np.float32)
    assert top_samples(values, 3) == [1, 4, 2]
    assert top_samples(values, 10) == [1, 4, 2, 0, 3]
    assert top_samples(values, 0) == []
    assert softmax(np.array([0.0, 0.0], dtype=np.float32)).tolist() == [0.5, 0.5]


def test_long_signals_are_drawn_from_bucket_means() -> None:
    values = np.arange(10, dtype=np.float32)
    assert bucket_mean(values, 5).tolist() == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert bucket_mean(values, 20).tolist() == values.tolist()
    assert len(bucket_mean(np.ones(10_001, dtype=np.float32), 4000)) == 4000


def test_the_overlay_is_a_png_with_a_pair_of_panels_per_signal(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [
        OverlayRow(
            signal=rng.normal(size=300).astype(np.float32),
            integrated_gradients=rng.normal(size=300).astype(np.float32),
            saliency=np.abs(rng.normal(size=300)).astype(np.float32),
            title=f"signal {i}",
        )
        for i in range(2)
    ]
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    render_overlay(one, rows[:1], sample_rate=1000.0)
    render_overlay(two, rows, sample_rate=None)
    for path in (one, two):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert two.stat().st_size > one.stat().st_size
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="nothing to draw"):
        render_overlay(tmp_path / "none.png", [], sample_rate=None)


def test_the_explain_kinds_import_matplotlib_only_to_draw() -> None:
    code = (
        "import sys, kubetask.jobs.kinds.explain, kubetask.jobs.kinds.explain_batch; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert imported.stdout.strip() == "[]"


def test_a_warm_process_has_imported_what_drawing_an_overlay_imports(tmp_path: Path) -> None:
    # the local backend's zygote imports each kind's runner and its `warm` modules
    code = f"""
import importlib, sys
from pathlib import Path
import numpy as np
from kubetask.jobs.specs import EXPLAIN, EXPLAIN_BATCH
for spec in (EXPLAIN, EXPLAIN_BATCH):
    for module in (spec.runner.split(":")[0], *spec.warm):
        importlib.import_module(module)
warm = set(sys.modules)
from kubetask.jobs.kinds.ml.attribution_plot import OverlayRow, render_overlay
ones = np.ones(64, dtype=np.float32)
row = OverlayRow(ones, ones, ones, "t")
render_overlay(Path({str(tmp_path / "a.png")!r}), [row], sample_rate=None)
print(sorted(m for m in set(sys.modules) - warm if m.split(".")[0] == "matplotlib"))
"""
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert imported.stdout.strip() == "[]"
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
