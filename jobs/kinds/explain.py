"""`explain`: why a trained model classifies one signal as it does.

Integrated gradients (from a zero signal, `steps` points of a quadrature `rule`) and
saliency of the target class's logit, over the signal's time samples: autograd runs through
the whole pipeline the model was trained behind (the Hann window, `torch.fft.rfft`,
log(1 + |.|), the standardization), so even a spectrum model is explained by which moments
of the signal mattered. Saved as `explanation.npz` (the arrays, in the same layout as an
`explain-batch` part, one row) and `explanation.png` (the overlay); the result reports the
prediction, the completeness gap (sum of attributions minus f(x) - f(0)) and the most
important samples.

The loading and per-signal parts here are shared with `explain-batch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import InvalidParams
from kubetask.jobs.kinds.datagen import generate
from kubetask.jobs.kinds.ml.attribution import (
    Attribution,
    attribute_batch,
    softmax,
    top_samples,
)
from kubetask.jobs.kinds.ml.attribution_plot import OverlayRow, render_overlay
from kubetask.jobs.kinds.ml.data import Array, Dataset, Labels, configure_torch, pick_device
from kubetask.jobs.kinds.ml.folding import fold_batch_norms
from kubetask.jobs.kinds.ml.inference import (
    LoadedModel,
    SignalPipeline,
    align_labels,
    load_model,
    open_dataset,
    read_sample_rate,
)
from kubetask.jobs.params.explain import LABEL, PREDICTED, ExplainBase, ExplainParams
from kubetask.jobs.writes import written_whole

TOP_SAMPLES = 5


@dataclass(frozen=True)
class Subject:
    """A model ready to be differentiated from raw signals, and the signals it explains."""

    model: LoadedModel
    pipeline: SignalPipeline  # raw signals -> logits, eval mode, weights frozen
    signals: Array
    labels: Labels  # indices into the model's classes
    sample_rate: float | None
    dataset: str | None  # the artifact path; None when generated

    @property
    def classes(self) -> list[str]:
        return self.model.classes


def load_subject(params: ExplainBase, context: TaskContext) -> Subject:
    """The model and the signals named in `params` (the signals generated when no dataset)."""
    device = pick_device(params.device)
    configure_torch(threads=params.threads, seed=0, device=device)
    model = load_model(context.resolve(params.model), device, relative=params.model)
    if params.dataset is None:
        x, y = generate(params.datagen)
        classes = [c.value for c in params.datagen.classes]
        dataset = Dataset(x=x, y=y, classes=classes, source=None)
        sample_rate: float | None = params.datagen.sample_rate
    else:
        dataset = open_dataset(context, params.dataset)
        sample_rate = read_sample_rate(context.resolve(params.dataset))
    labels = align_labels(dataset, model.classes)
    pipeline = model.pipeline(dataset.x.shape[1])
    pipeline.network = fold_batch_norms(pipeline.network)  # the same function, cheaper
    for weight in pipeline.parameters():
        weight.requires_grad_(False)  # gradients are taken with respect to the signal only
    target_of(params.target, model.classes, label=0)  # an unknown class fails before any work
    return Subject(
        model=model,
        pipeline=pipeline,
        signals=dataset.x,
        labels=labels,
        sample_rate=sample_rate,
        dataset=dataset.source,
    )


def target_of(target: str, classes: list[str], *, label: int) -> int | None:
    """The class index `target` names for a signal labelled `label` (None: predicted)."""
    if target == PREDICTED:
        return None
    if target == LABEL:
        return label
    if target in classes:
        return classes.index(target)
    raise InvalidParams(  # the model's classes never change: a retry would fail the same
        f"target: {target!r} is not {PREDICTED!r}, {LABEL!r} or one of the model's classes, "
        f"{classes}"
    )


def check_rows(rows: list[int], subject: Subject, field: str) -> None:
    """`InvalidParams` naming `field` for a row past the dataset's end (never retried: the
    dataset does not grow)."""
    count = len(subject.signals)
    outside = [row for row in rows if row >= count]
    if outside:
        raise InvalidParams(
            f"{field}: the dataset has {count} signals (rows 0 to {count - 1}); "
            f"asked for {outside[:10]}"
        )


def explain_rows(subject: Subject, rows: list[int], params: ExplainBase) -> list[Attribution]:
    """The attributions of the signals at `rows`, computed together."""
    x = torch.from_numpy(subject.signals[rows]).to(subject.model.device)
    targets = [
        target_of(params.target, subject.classes, label=int(subject.labels[row])) for row in rows
    ]
    return attribute_batch(
        subject.pipeline,
        x,
        targets=targets,
        steps=params.steps,
        rule=params.rule,
        chunk=params.batch_size,
    )


def signal_summary(subject: Subject, row: int, attribution: Attribution) -> dict[str, JsonValue]:
    """What a result tells of one explained signal."""
    classes = subject.classes
    probabilities = softmax(attribution.logits)
    top = top_samples(attribution.integrated_gradients, TOP_SAMPLES)
    top_json: list[JsonValue] = list(top)
    summary: dict[str, JsonValue] = {
        "index": row,
        "label": classes[int(subject.labels[row])],
        "predicted": classes[int(attribution.logits.argmax())],
        "target": classes[attribution.target],
        "target_probability": round(float(probabilities[attribution.target]), 6),
        "logit_delta": round(attribution.logit_delta, 6),
        "attribution_sum": round(attribution.logit_delta + attribution.gap, 6),
        "completeness_gap": round(attribution.gap, 6),
        "relative_gap": round(attribution.relative_gap, 6),
        "top_samples": top_json,
    }
    if subject.sample_rate:
        summary["top_times_s"] = [round(i / subject.sample_rate, 6) for i in top]
    return summary


def overlay_row(subject: Subject, row: int, attribution: Attribution) -> OverlayRow:
    classes = subject.classes
    probability = float(softmax(attribution.logits)[attribution.target])
    title = (
        f"signal {row} (label {classes[int(subject.labels[row])]}): "
        f"{classes[attribution.target]} p={probability:.2f}, "
        f"completeness gap {attribution.relative_gap:.1%}"
    )
    return OverlayRow(
        signal=subject.signals[row],
        integrated_gradients=attribution.integrated_gradients,
        saliency=attribution.saliency,
        title=title,
    )


def save_arrays(
    path: Path, subject: Subject, rows: list[int], attributions: list[Attribution]
) -> None:
    """One row per signal: its index, the signal, both attributions, logits, target, label,
    prediction and completeness gap; plus the class names and the sample rate (0: unknown)."""
    length, n_classes = subject.signals.shape[1], len(subject.classes)

    def stacked(values: list[np.ndarray], width: int) -> np.ndarray:
        return np.stack(values) if values else np.empty((0, width), dtype=np.float32)

    with written_whole(path) as partial, partial.open("wb") as file:
        # stored, not deflated: float noise shrinks by ~8% for ~0.1 s per 240 signals
        np.savez(
            file,
            indices=np.array(rows, dtype=np.int64),
            signals=stacked([subject.signals[row] for row in rows], length),
            integrated_gradients=stacked([a.integrated_gradients for a in attributions], length),
            saliency=stacked([a.saliency for a in attributions], length),
            logits=stacked([a.logits for a in attributions], n_classes),
            targets=np.array([a.target for a in attributions], dtype=np.int64),
            labels=np.array([subject.labels[row] for row in rows], dtype=np.int64),
            predicted=np.array([int(a.logits.argmax()) for a in attributions], dtype=np.int64),
            completeness_gaps=np.array([a.gap for a in attributions], dtype=np.float64),
            classes=np.array(subject.classes),
            sample_rate=np.array(subject.sample_rate or 0.0),
        )


def run(params: ExplainParams, context: TaskContext) -> dict[str, JsonValue]:
    reporter = context.reporter
    reporter.update(0, 3, stage="load", message="loading the model and the signals")
    subject = load_subject(params, context)
    check_rows([params.index], subject, "index")
    message = f"signal {params.index}: integrated gradients ({params.steps} {params.rule} points)"
    reporter.update(1, 3, stage="explain", message=message)
    (attribution,) = explain_rows(subject, [params.index], params)
    summary = signal_summary(subject, params.index, attribution)
    reporter.update(2, 3, stage="save", message="writing the arrays and the overlay")
    arrays, overlay = context.artifact("explanation.npz"), context.artifact("explanation.png")
    save_arrays(arrays, subject, [params.index], [attribution])
    render_overlay(
        overlay, [overlay_row(subject, params.index, attribution)], sample_rate=subject.sample_rate
    )
    reporter.update(3, 3, stage="save", message="saved", relative_gap=summary["relative_gap"])
    return {
        "model": params.model,
        "dataset": subject.dataset,
        "steps": params.steps,
        "rule": params.rule.value,
        **summary,
        "arrays": context.relative(arrays),
        "overlay": context.relative(overlay),
    }
