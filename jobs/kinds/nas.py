"""`nas`: a neural architecture search over 1-D CNNs (blocks, and per block its channels,
kernel size and pooling), run by the same parallel-trial machinery as `hpo`: one Optuna
study in Redis shared by every worker of an Indexed Job, an exact trial budget, median
pruning on each trial's per-epoch validation metric (`kubetask.jobs.kinds.ml.search`).

Each trial trains `train` with the sampled `architecture`. Each worker's result holds the
study's best architecture at its end, its validation metrics and size, and `train_params`:
params that a `train` job accepts as they are, to train that architecture for good; the
job's one result takes them from the worker with the best value (jobs/specs.py).
"""

from __future__ import annotations

from typing import Any

import optuna
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.ml.search import METRICS_ATTR, best_trial, run_study, study_summary
from kubetask.jobs.params import ConvLayer, TrainParams
from kubetask.jobs.params.nas import ArchitectureSpace, NasParams


def suggest_architecture(
    trial: optuna.trial.BaseTrial, space: ArchitectureSpace
) -> list[ConvLayer]:
    """The trial's conv blocks: a depth, then channels, kernel size and pooling per block."""
    depth = trial.suggest_int("depth", space.depth[0], space.depth[1])
    return [
        ConvLayer(
            channels=trial.suggest_categorical(f"channels_{i}", list(space.channels)),
            kernel_size=trial.suggest_categorical(f"kernel_size_{i}", list(space.kernel_sizes)),
            pooling=trial.suggest_categorical(f"pooling_{i}", list(space.pooling)),
        )
        for i in range(depth)
    ]


def with_architecture(base: TrainParams, architecture: list[ConvLayer]) -> TrainParams:
    """`base` training that architecture, validated as `train` params."""
    layers = [layer.model_dump() for layer in architecture]
    return TrainParams.model_validate(
        {**base.model_dump(), "model": "cnn1d", "architecture": layers}
    )


def architecture_of(choices: dict[str, Any], space: ArchitectureSpace) -> list[ConvLayer]:
    """A finished trial's architecture, from its params."""
    return suggest_architecture(optuna.trial.FixedTrial(choices), space)


def run(params: NasParams, context: TaskContext) -> dict[str, JsonValue]:
    def suggest(trial: optuna.Trial) -> TrainParams:
        return with_architecture(params.train, suggest_architecture(trial, params.space))

    study_run = run_study(params, context, suggest=suggest)
    summary = study_summary(study_run, params, context)
    best = best_trial(study_run.study)
    if best is None:
        return {**summary, "best_architecture": None, "best_metrics": None, "train_params": None}
    architecture = architecture_of(best.params, params.space)
    metrics: JsonValue = best.user_attrs.get(METRICS_ATTR)
    layers: list[JsonValue] = [layer.model_dump(mode="json") for layer in architecture]
    train_params = with_architecture(params.train, architecture).model_dump(mode="json")
    return {
        **summary,
        "best_architecture": layers,
        "best_metrics": metrics,
        "train_params": train_params,
    }
