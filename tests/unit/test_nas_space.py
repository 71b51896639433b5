"""nas: the architectures a trial may sample, their way into `train` params and back, the
CNN they build, and the params users can get wrong (each error names its field)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import optuna
import pytest
import torch
from pydantic import ValidationError

from kubetask.jobs.kinds.ml.checkpoint import fingerprint
from kubetask.jobs.kinds.ml.models import ConvBlock, ModelSpec, build_model, count_parameters
from kubetask.jobs.kinds.nas import architecture_of, suggest_architecture, with_architecture
from kubetask.jobs.params import ConvLayer, HpoParams, TrainParams
from kubetask.jobs.params.explain import ExplainBatchParams, ExplainParams
from kubetask.jobs.params.nas import ArchitectureSpace, NasParams
from kubetask.kinds import load_kinds

KINDS = load_kinds()  # the installed kinds (entry points)

SPACE = ArchitectureSpace(depth=(2, 5), channels=[4, 12], kernel_sizes=[3, 7], pooling=["avg"])


def test_sampled_architectures_stay_in_the_space_and_come_back_from_the_trial() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    depths = set()
    for _ in range(30):
        trial = study.ask()
        architecture = suggest_architecture(trial, SPACE)
        depths.add(len(architecture))
        assert 2 <= len(architecture) <= 5
        assert {layer.channels for layer in architecture} <= {4, 12}
        assert {layer.kernel_size for layer in architecture} <= {3, 7}
        assert {layer.pooling for layer in architecture} == {"avg"}
        study.tell(trial, 0.0)
        assert architecture_of(study.trials[-1].params, SPACE) == architecture
    assert depths == {2, 3, 4, 5}


def test_an_architecture_round_trips_through_train_params_json() -> None:
    architecture = [
        ConvLayer(channels=8, kernel_size=5, pooling="none"),
        ConvLayer(channels=16, kernel_size=3, pooling="avg"),
    ]
    params = with_architecture(TrainParams(epochs=2, seed=4), architecture)
    as_json = json.loads(params.model_dump_json())
    again = TrainParams.model_validate(as_json)  # what POST /v1/jobs {"kind": "train"} does
    assert again == params
    assert again.architecture == architecture
    assert (again.epochs, again.seed, again.model) == (2, 4, "cnn1d")


def test_params_without_an_architecture_dump_and_fingerprint_as_before() -> None:
    params = TrainParams()
    assert "architecture" not in params.model_dump(mode="json")
    assert '"architecture"' not in fingerprint(params)  # earlier checkpoints still resume
    assert fingerprint(params) != fingerprint(
        with_architecture(params, [ConvLayer(channels=8, kernel_size=3)])
    )


def test_the_cnn_follows_the_architecture_block_by_block() -> None:
    blocks = (ConvBlock(6, 5, "max"), ConvBlock(10, 3, "none"), ConvBlock(4, 1, "avg"))
    spec = ModelSpec(
        kind="cnn1d", input_length=33, n_classes=5, width=99, depth=9, dropout=0.0, layers=blocks
    )
    model = build_model(spec).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [(6, 5), (10, 3), (4, 1)]
    pools = [type(m).__name__ for m in model.modules() if "Pool1d" in type(m).__name__]
    assert pools == ["MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d"]
    assert model(torch.randn(2, 33)).shape == (2, 5)
    # a saved spec (JSON) rebuilds the same network
    again = ModelSpec(**json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert count_parameters(build_model(again)) == count_parameters(model)


def test_the_default_cnn_keeps_its_layout_so_saved_models_load() -> None:
    spec = ModelSpec(kind="cnn1d", input_length=65, n_classes=6, width=8, depth=2, dropout=0.1)
    assert "layers" not in spec.to_json()
    names = list(build_model(spec).state_dict())
    assert names[0] == "features.0.weight"
    assert "features.4.weight" in names  # the second block's conv, after conv/bn/relu/pool
    assert names[-1] == "head.3.bias"
    same = dataclasses.replace(spec, layers=(ConvBlock(8, 7, "max"),) * 2)
    assert list(build_model(same).state_dict()) == names


def test_nas_defaults_are_small_and_searched_kinds_are_registered() -> None:
    params = NasParams()
    assert params.train.model == "cnn1d"
    assert params.train.epochs <= 3
    assert params.n_trials <= 10
    for kind, model in (
        ("nas", NasParams),
        ("explain", ExplainParams),
        ("explain-batch", ExplainBatchParams),
    ):
        assert KINDS[kind].params is model
        assert KINDS[kind].image == "trainer"


@pytest.mark.parametrize(
    ("model", "fields", "where"),
    [
        (
            TrainParams,
            {"model": "mlp", "architecture": [{"channels": 8, "kernel_size": 3}]},
            "cnn1d",
        ),
        (TrainParams, {"architecture": []}, "architecture"),
        (TrainParams, {"architecture": [{"channels": 8, "kernel_size": 4}]}, "kernel_size"),
        (
            TrainParams,
            {"architecture": [{"channels": 8, "kernel_size": 3, "pool": "max"}]},
            "0.pool",
        ),
        (NasParams, {"train": {"model": "mlp"}}, "train.model must be"),
        (NasParams, {"train": {"architecture": [{"channels": 8, "kernel_size": 3}]}}, "leave it"),
        (NasParams, {"space": {"kernel_sizes": [3, 4]}}, "space"),
        (HpoParams, {"train": {"architecture": [{"channels": 8, "kernel_size": 3}]}}, "hpo"),
        (NasParams, {"space": {"depth": [0, 3]}}, "space"),
        (NasParams, {"space": {"pooling": ["max", "max"]}}, "space"),
        (NasParams, {"space": {"pooling": ["min"]}}, "space.pooling.0"),
        (ExplainParams, {"model": "m.pt", "steps": 0}, "steps"),
        (ExplainParams, {"model": "m.pt", "index": -1}, "index"),
        (ExplainParams, {}, "model"),
        (ExplainBatchParams, {"model": "m.pt", "indices": [1, 1]}, "indices"),
        (ExplainBatchParams, {"model": "m.pt", "indices": [-2]}, "indices"),
        (ExplainBatchParams, {"model": "m.pt", "indices": []}, "indices"),
    ],
)
def test_invalid_params_name_the_field(
    model: type[TrainParams | HpoParams | NasParams | ExplainParams],
    fields: dict[str, Any],
    where: str,
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(fields)
    found = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in caught.value.errors()]
    assert any(where in error for error in found), found


def test_a_space_accepts_json_lists_for_ranges() -> None:
    space = NasParams.model_validate({"space": {"depth": [2, 2]}}).space
    assert space.depth == (2, 2)
