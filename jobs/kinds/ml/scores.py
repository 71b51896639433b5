"""Classification scores from true and predicted labels: the confusion matrix, accuracy and
per-class precision, recall and F1 (a class never predicted has precision 0, one absent from
the data recall 0). Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import JsonValue

Labels = NDArray[np.int64]


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int  # signals of this class in the data


def confusion_matrix(truth: Labels, predicted: Labels, n_classes: int) -> NDArray[np.int64]:
    """Counts [true class, predicted class]."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    return counts


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def class_scores(confusion: NDArray[np.int64]) -> list[ClassScores]:
    scores = []
    for k in range(len(confusion)):
        hits = float(confusion[k, k])
        precision = _ratio(hits, float(confusion[:, k].sum()))
        recall = _ratio(hits, float(confusion[k, :].sum()))
        f1 = _ratio(2 * precision * recall, precision + recall)
        scores.append(ClassScores(precision, recall, f1, int(confusion[k, :].sum())))
    return scores


def accuracy(truth: Labels, predicted: Labels) -> float:
    return float(np.mean(truth == predicted)) if len(truth) else 0.0


def cross_entropy(logits: NDArray[np.float32], truth: Labels) -> float:
    """Mean negative log-likelihood of the true classes."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(truth)), truth].mean()) if len(truth) else 0.0


def report(truth: Labels, predicted: Labels, classes: list[str]) -> dict[str, JsonValue]:
    """Accuracy, macro and support-weighted F1, per-class scores and the confusion matrix."""
    confusion = confusion_matrix(truth, predicted, len(classes))
    scores = class_scores(confusion)
    present = [s for s in scores if s.support]
    total = sum(s.support for s in scores)
    per_class: dict[str, JsonValue] = {
        name: {
            "precision": round(s.precision, 6),
            "recall": round(s.recall, 6),
            "f1": round(s.f1, 6),
            "support": s.support,
        }
        for name, s in zip(classes, scores, strict=True)
    }
    return {
        "accuracy": round(accuracy(truth, predicted), 6),
        "macro_f1": round(_ratio(sum(s.f1 for s in present), len(present)), 6),
        "weighted_f1": round(_ratio(sum(s.f1 * s.support for s in scores), total), 6),
        "per_class": per_class,
        "classes": list(classes),
        "confusion": confusion.tolist(),
    }
