"""The task kinds kubetask can run: an explicit mapping, no registration by import."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import JsonValue

from jobs.params import DatagenParams, NoopParams, Params

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
    )
}


def load_runner(spec: KindSpec) -> Runner:
    module_name, _, function = spec.runner.partition(":")
    runner: Runner = getattr(importlib.import_module(module_name), function)
    return runner
