"""Scores (confusion matrix, precision/recall/F1) against hand counts, the robustness
perturbations, and the params of the workflow kinds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from kubetask.jobs.kinds.ml import scores
from kubetask.jobs.kinds.robustness import conditions, scaled, shifted, with_noise
from kubetask.jobs.params import Params
from kubetask.jobs.params.catalog import (
    EvaluateParams,
    ExportParams,
    FeaturesParams,
    MatImportParams,
    RobustnessParams,
)
from kubetask.kinds import load_kinds

KINDS = load_kinds()  # the installed kinds (entry points)


def test_report_matches_hand_counts() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2], dtype=np.int64)
    predicted = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 2], dtype=np.int64)
    report = scores.report(truth, predicted, ["a", "b", "c"])
    assert report["confusion"] == [[2, 1, 1], [1, 2, 0], [0, 0, 3]]
    assert report["accuracy"] == 0.7
    # a: precision 2/3, recall 2/4 -> F1 4/7; b: 2/3, 2/3; c: 3/4, 3/3 -> 6/7
    assert report["per_class"] == {
        "a": {"precision": 0.666667, "recall": 0.5, "f1": 0.571429, "support": 4},
        "b": {"precision": 0.666667, "recall": 0.666667, "f1": 0.666667, "support": 3},
        "c": {"precision": 0.75, "recall": 1.0, "f1": 0.857143, "support": 3},
    }
    assert report["macro_f1"] == pytest.approx((4 / 7 + 2 / 3 + 6 / 7) / 3, abs=1e-6)
    assert report["weighted_f1"] == pytest.approx(
        (4 * 4 / 7 + 3 * 2 / 3 + 3 * 6 / 7) / 10, abs=1e-6
    )


def test_a_class_never_predicted_or_absent_scores_zero_without_dividing_by_zero() -> None:
    truth = np.array([0, 0, 1], dtype=np.int64)
    predicted = np.array([0, 0, 0], dtype=np.int64)
    per_class = scores.report(truth, predicted, ["a", "b", "absent"])["per_class"]
    assert isinstance(per_class, dict)
    assert per_class["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per_class["absent"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    report = scores.report(truth, predicted, ["a", "b", "absent"])
    assert report["macro_f1"] == pytest.approx(0.8 / 2)  # over the classes present


def test_cross_entropy_is_the_mean_negative_log_likelihood() -> None:
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], dtype=np.float32))
    truth = np.array([0, 1], dtype=np.int64)
    assert scores.cross_entropy(logits, truth) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)


def test_noise_is_added_at_the_asked_signal_to_noise_ratio() -> None:
    t = np.arange(20_000) / 1000
    x = np.stack([np.sin(2 * np.pi * 5 * t), 3 * np.sin(2 * np.pi * 7 * t)]).astype(np.float32)
    noisy = with_noise(x, 10.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(x**2, axis=1) / np.mean((noisy - x) ** 2, axis=1))
    assert snr == pytest.approx([10.0, 10.0], abs=0.1)


def test_shift_is_circular_and_scale_multiplies() -> None:
    x = np.arange(8, dtype=np.float32)[None, :]
    assert shifted(x, 0.25).tolist() == [[6, 7, 0, 1, 2, 3, 4, 5]]
    assert shifted(x, 1.0).tolist() == x.tolist()
    assert scaled(x, 0.5).tolist() == [[0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]]


def test_conditions_run_in_order_noise_shift_scale() -> None:
    params = RobustnessParams(model="m.pt", snr_db=[20], shifts=[], scales=[2.0])
    assert conditions(params) == [("noise", 20.0), ("scale", 2.0)]


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("mat-import", MatImportParams),
        ("features", FeaturesParams),
        ("evaluate", EvaluateParams),
        ("export", ExportParams),
        ("test", RobustnessParams),
    ],
)
def test_each_workflow_kind_is_registered_and_its_model_is_the_only_required_field(
    kind: str, model: type[Params]
) -> None:
    spec = KINDS[kind]
    assert spec.params is model
    assert spec.image == "trainer"
    required = model.model_json_schema().get("required", [])
    assert required == (["model"] if "model" in model.model_fields else [])


@pytest.mark.parametrize(
    ("model", "fields", "where"),
    [
        (MatImportParams, {"files": "../etc/*.mat"}, "files"),
        (MatImportParams, {"files": "/etc/passwd"}, "files"),
        (MatImportParams, {"variable": "DE_("}, "variable"),
        (MatImportParams, {"segment_length": 8}, "segment_length"),
        (MatImportParams, {"on_error": "ignore"}, "on_error"),
        (FeaturesParams, {"envelope_band": [500, 100]}, ""),
        (FeaturesParams, {"bands": 0}, "bands"),
        (EvaluateParams, {}, "model"),
        (EvaluateParams, {"model": "m.pt", "batch_size": 0}, "batch_size"),
        (ExportParams, {"model": "m.pt", "formats": []}, "formats"),
        (ExportParams, {"model": "m.pt", "formats": ["onnx", "onnx"]}, "formats"),
        (ExportParams, {"model": "m.pt", "formats": ["tflite"]}, "formats.0"),
        (RobustnessParams, {"model": "m.pt", "shifts": [2.0]}, ""),
        (RobustnessParams, {"model": "m.pt", "snr_db": [], "shifts": [], "scales": []}, ""),
    ],
)
def test_invalid_params_name_their_field(
    model: type[Params], fields: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(fields)
    assert where in [".".join(map(str, e["loc"])) for e in info.value.errors()]


def test_model_and_dataset_fields_declare_what_they_reference() -> None:
    schema = EvaluateParams.model_json_schema()["properties"]
    assert schema["model"]["x-kubetask-ref"] == {"output": "model", "kinds": ["train"]}
    assert schema["dataset"]["x-kubetask-ref"] == {
        "output": "dataset",
        "kinds": ["datagen", "mat-import"],
        "default_from": "model",  # left out: the model's own training data
    }
