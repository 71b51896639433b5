"""Attributions of a classifier's logit to each input sample, with torch autograd.

- Integrated gradients (Sundararajan et al., 2017): the input times the mean gradient of the
  target logit along the straight path from a baseline (zeros) to the input, an integral over
  alpha in [0, 1] taken by a quadrature rule of `steps` points (`quadrature`): Gauss-Legendre
  (weighted; exact for polynomials of degree 2 steps - 1) or the midpoint Riemann sum other
  tools use. A ReLU network's gradient jumps along the path, so neither converges faster
  than 1/steps there; Gauss-Legendre's error is the smaller one on `train`'s models (48 of
  its points beat 64 midpoints: bench/explain_attribution.py). Completeness: the
  attributions sum to f(x) - f(baseline) up to the rule's error, which `Attribution.gap`
  reports.
- Saliency: |d logit / d input| at the input.

`forward` maps a batch [n, length] to logits [n, n_classes]; for a `train` model it is the
whole pipeline from the raw signal (`LoadedModel.pipeline`), so the attributions are over time
samples even when the network sees a spectrum.

`attribute` explains one signal; `attribute_batch` explains many with the same arithmetic in
fewer, fuller passes: every (signal, path point) row and each signal's own point (its
saliency) share the forward/backward passes, f(0) is computed once and the logits in one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from kubetask.jobs.params.explain import Rule

Forward = Callable[[torch.Tensor], torch.Tensor]
Floats = NDArray[np.float32]


@dataclass(frozen=True)
class Attribution:
    """One signal's attributions for one target class."""

    target: int
    integrated_gradients: Floats  # [length]
    saliency: Floats  # [length]
    logits: Floats  # f(x), [n_classes]
    baseline_logit: float  # f(baseline)[target]

    @property
    def logit_delta(self) -> float:
        """f(x) - f(baseline) for the target: what the attributions should add up to."""
        return float(self.logits[self.target]) - self.baseline_logit

    @property
    def gap(self) -> float:
        """Completeness error: sum(attributions) - (f(x) - f(baseline))."""
        return float(self.integrated_gradients.astype(np.float64).sum()) - self.logit_delta

    @property
    def relative_gap(self) -> float:
        """|gap| relative to |f(x) - f(baseline)| (at least 1e-6)."""
        return abs(self.gap) / max(abs(self.logit_delta), 1e-6)


def quadrature(rule: Rule, steps: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The nodes (alphas in (0, 1), increasing) and weights (summing to 1) of `rule` with
    `steps` points: the integral of g over [0, 1] is about sum(weights * g(nodes))."""
    if steps < 1:
        raise ValueError(f"a rule needs at least one point, not {steps}")
    if rule is Rule.MIDPOINT:
        return (np.arange(steps, dtype=np.float64) + 0.5) / steps, np.full(steps, 1.0 / steps)
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1], weights sum to 2
    return (nodes + 1.0) / 2.0, weights / 2.0


def _tensors(rule: Rule, steps: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    nodes, weights = quadrature(rule, steps)
    return (
        torch.from_numpy(nodes).to(device=like.device, dtype=like.dtype),
        torch.from_numpy(weights).to(device=like.device, dtype=like.dtype),
    )


def integrated_gradients(
    forward: Forward,
    x: torch.Tensor,
    target: int,
    *,
    steps: int,
    rule: Rule,
    baseline: torch.Tensor | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    """IG of `forward(.)[target]` at `x` [length], `chunk` path points per forward pass."""
    base = torch.zeros_like(x) if baseline is None else baseline
    delta = x - base
    alphas, weights = _tensors(rule, steps, x)
    total = torch.zeros_like(x)
    for start in range(0, steps, chunk):
        part = slice(start, start + chunk)
        points = (base + alphas[part, None] * delta).requires_grad_(True)
        with torch.enable_grad():
            outputs = forward(points)[:, target].sum()
            (grads,) = torch.autograd.grad(outputs, points)
        total += weights[part] @ grads
    return delta * total


def saliency(forward: Forward, x: torch.Tensor, target: int) -> torch.Tensor:
    """|d forward(x)[target] / d x|, [length]."""
    point = x.detach().clone()[None].requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(forward(point)[0, target], point)
    return grad[0].abs()


@torch.no_grad()
def logits_of(forward: Forward, x: torch.Tensor) -> torch.Tensor:
    return forward(x[None])[0]


def attribute(
    forward: Forward,
    x: torch.Tensor,
    *,
    target: int | None,
    steps: int,
    rule: Rule,
    chunk: int = 256,
) -> Attribution:
    """Both attributions of one signal `x` [length] for `target` (None: the predicted class),
    against a zero baseline."""
    logits = logits_of(forward, x).float()
    chosen = int(logits.argmax()) if target is None else target
    baseline_logit = float(logits_of(forward, torch.zeros_like(x))[chosen])
    ig = integrated_gradients(forward, x, chosen, steps=steps, rule=rule, chunk=chunk)
    return Attribution(
        target=chosen,
        integrated_gradients=ig.detach().float().cpu().numpy(),
        saliency=saliency(forward, x, chosen).float().cpu().numpy(),
        logits=logits.cpu().numpy(),
        baseline_logit=baseline_logit,
    )


def attribute_batch(
    forward: Forward,
    signals: torch.Tensor,
    *,
    targets: Sequence[int | None],
    steps: int,
    rule: Rule,
    chunk: int = 256,
) -> list[Attribution]:
    """`attribute` for each row of `signals` [n, length] and its target (None: predicted),
    `chunk` rows of (signal, path point) per forward/backward pass."""
    n = len(signals)
    if len(targets) != n:
        raise ValueError(f"{n} signals but {len(targets)} targets")
    if n == 0:
        return []
    with torch.no_grad():
        logits = forward(signals).float()
        baseline = forward(torch.zeros_like(signals[:1]))[0].float()
    chosen = [int(logits[i].argmax()) if t is None else t for i, t in enumerate(targets)]
    alphas, weights = _tensors(rule, steps, signals)
    gradients = path_gradients(forward, signals, chosen, alphas=alphas, chunk=chunk)
    ig = signals * torch.einsum("s,nsl->nl", weights, gradients[:, :steps])
    sal = gradients[:, steps].abs()
    return [
        Attribution(
            target=chosen[i],
            integrated_gradients=ig[i].detach().float().cpu().numpy(),
            saliency=sal[i].float().cpu().numpy(),
            logits=logits[i].cpu().numpy(),
            baseline_logit=float(baseline[chosen[i]]),
        )
        for i in range(n)
    ]


def path_gradients(
    forward: Forward,
    signals: torch.Tensor,
    targets: list[int],
    *,
    alphas: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """d forward(a x)[target] / d(a x) for every signal x and every a in `alphas`, then
    a = 1: [n, len(alphas) + 1, length]."""
    n, length = signals.shape
    scales = torch.cat([alphas, torch.ones_like(alphas[:1])])
    per_signal = len(scales)
    rows = n * per_signal
    which = torch.arange(n, device=signals.device).repeat_interleave(per_signal)
    scale = scales.repeat(n)
    wanted = torch.tensor(targets, device=signals.device)
    out = torch.empty(rows, length, dtype=signals.dtype, device=signals.device)
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        points = (scale[part, None] * signals[which[part]]).requires_grad_(True)
        with torch.enable_grad():
            chosen = forward(points).gather(1, wanted[which[part], None]).sum()
            (out[part],) = torch.autograd.grad(chosen, points)
    return out.view(n, per_signal, length)


def top_samples(values: Floats, k: int) -> list[int]:
    """The positions of the `k` largest |values|, largest first."""
    k = min(k, len(values))
    if k <= 0:
        return []
    magnitude = np.abs(values)
    best = np.argpartition(-magnitude, k - 1)[:k]
    return [int(i) for i in best[np.argsort(-magnitude[best], kind="stable")]]


def softmax(logits: Floats) -> Floats:
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    probabilities: Floats = (shifted / shifted.sum()).astype(np.float32)
    return probabilities
