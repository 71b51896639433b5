"""The kind contract (kubetask/kinds.py): kinds found through entry points, checked against
each other and the installation's images, and each runner checked against its spec."""

from __future__ import annotations

import dataclasses
import importlib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import Field, JsonValue

from kubetask.api.runtime import installed_kinds
from kubetask.api.settings import Settings
from kubetask.jobs.context import TaskContext
from kubetask.jobs.params import NoopParams
from kubetask.jobs.runtime import TaskEnv, run_task
from kubetask.kinds import (
    GROUP,
    KindError,
    KindSpec,
    check_kinds,
    check_runner,
    kinds_from,
    load_kinds,
    load_runner,
)
from kubetask.params import Params
from kubetask.params.refs import output_ref

HERE = __name__


class MakeParams(Params):
    size: int = Field(1, ge=1)


class UseParams(Params):
    """Names another kind's output in a nested model too."""

    made: str | None = output_ref(output="thing", kinds=("make",), default=None, description="")


class NestedUseParams(Params):
    inner: UseParams = Field(default_factory=UseParams)


def run_make(params: MakeParams, context: TaskContext) -> dict[str, JsonValue]:
    path = context.artifact("thing.txt")
    path.write_text("x" * params.size)
    return {"thing": context.relative(path)}


def run_make_forgetting(params: MakeParams, context: TaskContext) -> dict[str, JsonValue]:
    return {"size": params.size}


def run_noop_params(params: NoopParams, context: TaskContext) -> dict[str, JsonValue]:
    return {}


def run_any_params(params: Params, context: TaskContext) -> dict[str, JsonValue]:
    return {}


MAKE = KindSpec(
    name="make",
    description="makes a thing",
    params=MakeParams,
    runner=f"{HERE}:run_make",
    image="trainer",
    outputs=("thing",),
)
USE = KindSpec(name="use", description="", params=NestedUseParams, runner="x:y", image="gpu")
NOT_A_SPEC = {"name": "make"}


def point(name: str, attribute: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{HERE}:{attribute}", group=GROUP)


# -- finding kinds ----------------------------------------------------------------------------
def test_kinds_are_found_by_their_entry_point_names() -> None:
    kinds = kinds_from([point("make", "MAKE"), point("use", "USE")])
    assert kinds == {"make": MAKE, "use": USE}


def test_the_built_in_kinds_are_installed_as_entry_points() -> None:
    kinds = load_kinds()
    assert {"datagen", "noop", "train", "hpo", "gan-seed", "gan-train", "test"} <= set(kinds)
    assert all(name == spec.name for name, spec in kinds.items())


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([point("other", "MAKE")], "'other'.*KindSpec called 'make': the names must match"),
        ([point("make", "NOT_A_SPEC")], "'make'.*is a dict, not a KindSpec"),
        ([point("make", "MISSING")], "'make'.*does not load: AttributeError"),
        (
            [EntryPoint(name="gone", value="no_such_module_here:SPEC", group=GROUP)],
            "'gone'.*does not load: ModuleNotFoundError",
        ),
        ([point("make", "MAKE"), point("make", "MAKE")], "kind 'make' is installed twice"),
    ],
)
def test_an_entry_point_that_is_not_a_kind_is_refused(
    points: list[EntryPoint], expected: str
) -> None:
    with pytest.raises(KindError, match=expected):
        kinds_from(points)


# -- kinds checked against each other -------------------------------------------------------
def test_an_output_ref_to_a_kind_that_is_not_installed_is_refused() -> None:
    with pytest.raises(KindError) as caught:
        check_kinds({"use": USE})
    assert (
        "kind 'use': params field 'inner.made' takes 'make''s 'thing' output, but no kind "
        "'make' is installed" in str(caught.value)
    )


def test_an_output_the_producer_does_not_declare_is_refused() -> None:
    silent = dataclasses.replace(MAKE, outputs=("other",))
    with pytest.raises(KindError) as caught:
        check_kinds({"make": silent, "use": USE})
    assert (
        "kind 'use': params field 'inner.made' takes 'make''s 'thing' output, but 'make' "
        "does not declare it (its outputs: other)" in str(caught.value)
    )


def test_a_declared_output_satisfies_the_ref() -> None:
    check_kinds({"make": MAKE, "use": USE})


def test_a_kind_whose_image_role_has_no_image_is_refused() -> None:
    with pytest.raises(KindError, match="kind 'use' runs on image role 'gpu', which has no"):
        check_kinds({"make": MAKE, "use": USE}, images={"trainer": "t"})
    check_kinds({"make": MAKE, "use": USE}, images={"trainer": "t", "gpu": "g"})


def test_the_built_in_kinds_fit_together_with_the_default_images() -> None:
    check_kinds(load_kinds(), images=Settings().task_images)


def test_the_server_refuses_kinds_whose_role_has_no_image() -> None:
    with pytest.raises(KindError, match="kind 'gan-train' runs on image role 'gan'"):
        installed_kinds(Settings(task_images={"trainer": "kubetask/trainer:1"}))


def test_task_images_are_read_as_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETASK_TASK_IMAGES", '{"trainer": "t:1", "gan": "g:1", "audio": "a:1"}')
    assert Settings().task_images == {"trainer": "t:1", "gan": "g:1", "audio": "a:1"}


# -- runners checked against their specs ------------------------------------------------------
@pytest.mark.parametrize("name", sorted(load_kinds()))
def test_every_built_in_runner_takes_its_kinds_params(name: str) -> None:
    spec = load_kinds()[name]
    load_runner(spec)  # imports the kind (torch, sdv...) and checks it
    for module in spec.warm:  # what a zygote imports ahead of its tasks exists
        importlib.import_module(module)


def test_a_runner_taking_other_params_is_refused() -> None:
    with pytest.raises(KindError) as caught:
        check_runner(MAKE, run_noop_params)
    assert str(caught.value) == (
        f"kind 'make': its runner {HERE}:run_make takes params: NoopParams, but the kind's "
        "params are MakeParams"
    )


def test_a_runner_taking_a_base_of_the_params_takes_them() -> None:
    check_runner(MAKE, run_any_params)


def test_a_runner_without_params_is_refused() -> None:
    def bare() -> dict[str, JsonValue]:
        return {}

    with pytest.raises(KindError, match="takes no params"):
        check_runner(MAKE, bare)


def task_env(tmp_path: Path, kind: str) -> TaskEnv:
    return TaskEnv.from_environ(
        {"KUBETASK_ARTIFACTS": str(tmp_path), "KUBETASK_TERMINATION_LOG": str(tmp_path / "t")},
        kind,
    )


def test_the_task_runs_a_kind_it_is_given(tmp_path: Path) -> None:
    code, outcome = run_task("make", task_env(tmp_path, "make"), None, {"make": MAKE})
    assert code == 0
    assert outcome.result == {"thing": "local/thing.txt"}


@pytest.mark.parametrize(
    ("spec", "message", "exit_code"),
    [
        (
            dataclasses.replace(MAKE, runner=f"{HERE}:run_make_forgetting"),
            "the make runner's result lacks the output(s) its kind declares: thing "
            "(result keys: size)",
            2,  # the runner would forget it again: not retried
        ),
        (
            dataclasses.replace(MAKE, runner=f"{HERE}:run_noop_params"),
            f"kind 'make': its runner {HERE}:run_noop_params takes params: NoopParams",
            1,
        ),
    ],
)
def test_the_task_fails_visibly_when_the_runner_breaks_its_kinds_contract(
    tmp_path: Path, spec: KindSpec, message: str, exit_code: int
) -> None:
    code, outcome = run_task("make", task_env(tmp_path, "make"), None, {"make": spec})
    assert code == exit_code
    assert outcome.error is not None
    assert outcome.error.message.startswith(message)


def test_an_unknown_kind_is_named_with_the_installed_ones(tmp_path: Path) -> None:
    code, outcome = run_task("nope", task_env(tmp_path, "nope"), None, {"make": MAKE})
    assert code == 2
    assert outcome.error is not None
    assert outcome.error.message == "unknown kind 'nope'; known: make"
