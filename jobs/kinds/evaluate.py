"""`evaluate`: a trained model on a dataset (on the very data it was trained on, only the
signals it held out: `rows` says which). Accuracy, loss, macro/weighted F1, per-class
precision/recall/F1 and the confusion matrix, in the result, in `metrics.json` (with every
prediction) and as `confusion.png`; progress per batch (`stage="evaluate"`)."""

from __future__ import annotations

import json

from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.ml import plots, scores
from kubetask.jobs.kinds.ml.inference import model_on_data
from kubetask.jobs.params.catalog import EvaluateParams


def run(params: EvaluateParams, context: TaskContext) -> dict[str, JsonValue]:
    setup = model_on_data(params, context, held_out=True)
    model, reporter = setup.model, context.reporter

    def on_batch(done: int, total: int) -> None:
        reporter.update(done, total, stage="evaluate", message=f"batch {done}/{total}")

    logits = model.logits(setup.data.x, batch_size=params.batch_size, on_batch=on_batch)
    predicted = logits.argmax(axis=1)
    report = scores.report(setup.labels, predicted, model.classes)
    report["loss"] = round(scores.cross_entropy(logits, setup.labels), 6)

    reporter.update(0, 2, stage="save", message="writing metrics.json and confusion.png")
    metrics_path = context.artifact("metrics.json")
    full = {
        **report,
        "model": params.model,
        "dataset": params.dataset,
        "predictions": predicted.tolist(),
        "labels": setup.labels.tolist(),
    }
    metrics_path.write_text(json.dumps(full, indent=1))
    plot_path = context.artifact("confusion.png")
    confusion = scores.confusion_matrix(setup.labels, predicted, len(model.classes))
    plots.confusion_png(plot_path, confusion, model.classes)
    reporter.update(2, 2, stage="save", message="saved", accuracy=report["accuracy"])
    return {
        **report,
        "model": params.model,
        "dataset": params.dataset,
        "n_signals": len(setup.labels),
        "rows": setup.rows,
        "metrics_file": context.relative(metrics_path),
        "confusion_plot": context.relative(plot_path),
    }
