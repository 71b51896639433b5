"""The ML kinds' params: small defaults that run on a laptop, and the errors users can fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubetask.jobs.params import (
    DatagenParams,
    GanGenerateParams,
    GanSeedParams,
    GanTrainParams,
    HpoParams,
    Params,
    SearchSpace,
    TrainParams,
)
from kubetask.kinds import load_kinds

KINDS = load_kinds()  # the installed kinds (entry points)


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("train", TrainParams),
        ("hpo", HpoParams),
        ("gan-seed", GanSeedParams),
        ("gan-train", GanTrainParams),
        ("gan-generate", GanGenerateParams),
    ],
)
def test_each_ml_kind_is_registered_with_its_params(kind: str, model: type[Params]) -> None:
    spec = KINDS[kind]
    assert spec.params is model
    assert spec.image == ("gan" if kind.startswith("gan") else "trainer")
    needed = {"model": "uploads/default/synthesizer.pkl"} if kind == "gan-generate" else {}
    model.model_validate(needed)  # every other field has a default
    model.model_json_schema()


def test_train_defaults_are_small() -> None:
    params = TrainParams()
    assert params.dataset is None
    assert params.datagen.n_per_class * len(params.datagen.classes) <= 200
    assert params.epochs <= 10
    assert HpoParams().train.epochs <= params.epochs


@pytest.mark.parametrize(
    ("model", "fields", "where"),
    [
        (TrainParams, {"model": "transformer"}, "model"),
        (TrainParams, {"lr": 0}, "lr"),
        (TrainParams, {"val_fraction": 1.0}, "val_fraction"),
        (TrainParams, {"datagen": {"length": 8}}, "datagen.length"),
        (TrainParams, {"optimizer": "sgd"}, "optimizer"),
        (HpoParams, {"n_trials": 0}, "n_trials"),
        (HpoParams, {"search": {"lr": [0.1, 0.01]}}, "search"),
        (HpoParams, {"search": {"depth": [0, 2]}}, "search"),
        (HpoParams, {"search": {"width": [1]}}, "search"),
        (HpoParams, {"search": {"models": []}}, "search.models"),
        (HpoParams, {"train": {"epochs": 0}}, "train.epochs"),
        (GanSeedParams, {"machine_id": "../etc"}, "machine_id"),
        (GanSeedParams, {"machine_id": "a/b"}, "machine_id"),
        (GanTrainParams, {"batch_size": 25}, "batch_size"),
        (GanTrainParams, {"synthesizer": "gaussian"}, "synthesizer"),
        (GanGenerateParams, {"train_rows": 0}, "train_rows"),
    ],
)
def test_invalid_params_name_the_field(
    model: type[Params], fields: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(fields)
    locations = [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]
    assert any(loc.startswith(where) for loc in locations), locations


def test_a_search_space_accepts_json_lists_for_ranges() -> None:
    space = SearchSpace.model_validate({"lr": [0.001, 0.01], "depth": [2, 2], "width": [8]})
    assert space.lr == (0.001, 0.01)
    assert space.depth == (2, 2)


def test_machine_ids_are_one_path_segment() -> None:
    assert GanSeedParams(machine_id="pump-7.line_2").machine_id == "pump-7.line_2"


@pytest.mark.parametrize("field", ["epochs", "lr", "seed"])
def test_true_or_false_is_no_number(field: str) -> None:
    """Lax validation would read `"epochs": true` as 1 epoch; a kind's number takes numbers
    (a float field an int too), and a flag still takes true and false."""
    with pytest.raises(ValidationError, match="a number, not true or false"):
        TrainParams.model_validate({field: True})
    assert TrainParams.model_validate({"lr": 1}).lr == 1.0
    assert TrainParams.model_validate({"amp": False}).amp is False


@pytest.mark.parametrize("model", [TrainParams, HpoParams, GanTrainParams, DatagenParams])
def test_a_seed_past_what_the_libraries_take_is_refused_at_submit(model: type[Params]) -> None:
    """numpy and Optuna take seeds below 2**32 (torch below 2**64), and worker i of a study
    uses seed + i: past 2**31 - 1 the task failed at run time (exit 1, retried)."""
    required = {"dataset": "0abcdefgh1234567/seed.csv"} if model is GanTrainParams else {}
    assert model.model_validate({**required, "seed": 2**31 - 1}).seed == 2**31 - 1  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="less than or equal to 2147483647"):
        model.model_validate({**required, "seed": 2**31})
