"""The task kinds kubetask can run: an explicit mapping, no registration by import."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import JsonValue

from jobs.params import (
    DatagenParams,
    GanGenerateParams,
    GanSeedParams,
    GanTrainParams,
    HpoParams,
    NoopParams,
    Params,
    TrainParams,
)

if TYPE_CHECKING:
    from jobs.context import TaskContext

Runner = Callable[[Params, "TaskContext"], dict[str, JsonValue]]
Image = Literal["trainer", "gan"]


@dataclass(frozen=True)
class KindSpec:
    name: str
    description: str
    params: type[Params]
    runner: str  # "module:function", imported only inside the task process
    image: Image


KINDS: Mapping[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            name="datagen",
            description="Synthetic vibration signals for machine-fault classification.",
            params=DatagenParams,
            runner="jobs.kinds.datagen:run",
            image="trainer",
        ),
        KindSpec(
            name="noop",
            description="Reports progress and exits; can fail on request (retries, errors).",
            params=NoopParams,
            runner="jobs.kinds.noop:run",
            image="trainer",
        ),
        KindSpec(
            name="train",
            description="A PyTorch machine-fault classifier (MLP or 1-D CNN); resumes from "
            "its last checkpoint when retried.",
            params=TrainParams,
            runner="jobs.kinds.train:run",
            image="trainer",
        ),
        KindSpec(
            name="hpo",
            description="An Optuna study over train's search space with pruning, shared in "
            "Redis by all the job's workers (parallelism/completions).",
            params=HpoParams,
            runner="jobs.kinds.hpo:run",
            image="trainer",
        ),
        KindSpec(
            name="gan-seed",
            description="Seed sensor data for one machine (gan/<machine_id>/seed.csv).",
            params=GanSeedParams,
            runner="jobs.kinds.gan_seed:run",
            image="gan",
        ),
        KindSpec(
            name="gan-train",
            description="An SDV TVAE or CTGAN synthesizer fitted on a machine's seed data.",
            params=GanTrainParams,
            runner="jobs.kinds.gan_train:run",
            image="gan",
        ),
        KindSpec(
            name="gan-generate",
            description="Train/val/test synthetic datasets from a machine's synthesizer, "
            "with a quality score.",
            params=GanGenerateParams,
            runner="jobs.kinds.gan_generate:run",
            image="gan",
        ),
    )
}


def load_runner(spec: KindSpec) -> Runner:
    module_name, _, function = spec.runner.partition(":")
    runner: Runner = getattr(importlib.import_module(module_name), function)
    return runner
