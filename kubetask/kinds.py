"""The kind contract: what a task kind declares (`KindSpec`), how the installed kinds are
found (the `kubetask.kinds` entry-point group: `load_kinds`; a task loads its own only,
`load_kind`), checked against each other and the installation's images (`check_kinds`), and
a runner checked against its spec (`check_runner`, `load_runner`).

A kind is one module (params model, runner) plus one entry point naming its `KindSpec`, e.g.
`datagen = "kubetask.jobs.specs:DATAGEN"`. The spec's module must stay light (pydantic only):
the API imports it; the runner, named as "module:function", is imported only in the task
process. The controller sees kinds only as the mapping the composition root hands it.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import JsonValue

from kubetask.params import Params
from kubetask.params.refs import Loc, ref_fields
from kubetask.progress import DEFAULT_STAGES, Stage

GROUP = "kubetask.kinds"

# (params, TaskContext) -> result; the context type lives with the task runtime (jobs/)
Runner = Callable[[Any, Any], dict[str, JsonValue]]


@dataclass(frozen=True)
class Pick:
    """Result keys taken together from the one part that ranks first by `by` (parts without a
    number there are passed over): the highest, the lowest with `maximize=False`, or as the
    parts' own `direction` key says ("maximize" or "minimize")."""

    by: str
    keys: tuple[str, ...]
    maximize: bool = True
    direction: str | None = None


@dataclass(frozen=True)
class Merge:
    """How the controller makes one result of the parts a splitting kind's workers leave
    (one per completion index; the parts stay as detail under `workers`). Declarative, so
    the controller merges without importing the kind; keys that no rule names stay in the
    parts only."""

    same: tuple[str, ...] = ()  # alike in every part: the first part's value
    picks: tuple[Pick, ...] = ()
    sums: tuple[str, ...] = ()
    concat: tuple[str, ...] = ()  # lists, joined in worker order
    maxima: tuple[str, ...] = ()  # numbers, or booleans (true when any part's is)
    # (key, count key): the parts' values averaged, each weighted by its count
    means: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class KindSpec:
    """One task kind, as the API, the controller and the task runtime know it."""

    name: str
    description: str
    params: type[Params]
    runner: str  # "module:function", imported only inside the task process
    image: str  # the image role it runs on; the installation maps roles to images
    # The result keys that hold artifact paths of what the kind writes, which other kinds'
    # `output_ref` fields may name (`job:<id>` resolves to `result[output]`).
    outputs: tuple[str, ...] = ()
    # Whether the kind shares its work among a job's workers (parallelism/completions > 1);
    # a kind that cannot would have every worker do the whole of it, into the same files.
    splits: bool = False
    # The stages a run goes through, in order, with their weights (see kubetask/progress.py):
    # the job's overall fraction combines them. One stage by default.
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    # How the workers' parts of a split job make one result (None: the parts as they are).
    merge: Merge | None = None
    # Modules a warm process (the local backend's zygote) imports ahead of this kind's
    # tasks besides the runner's own: libraries the runner imports late. They must be safe
    # to fork from (no Python thread, no file left open at import).
    warm: tuple[str, ...] = ()
    # Whether the kind's tasks import no large library (no torch, no SDV): the local backend
    # forks them from a zygote of their own that imported only the task runtime and the
    # light kinds' runners (a fork and an exit of a torch-sized process cost ~10 ms more).
    light: bool = False


class KindError(Exception):
    """The installed kinds cannot be used as they are: the server refuses to start, a task
    refuses to run. The message names the kind and what is wrong."""


def kinds_from(points: Iterable[EntryPoint]) -> dict[str, KindSpec]:
    """The kinds the entry points name, by name; `KindError` for one that does not load, is
    not a `KindSpec`, is named otherwise than its entry point, or is there twice."""
    kinds: dict[str, KindSpec] = {}
    for point in points:
        where = f"entry point {point.name!r} ({point.value}) of {GROUP!r}"
        try:
            spec = point.load()
        except Exception as exc:
            raise KindError(f"{where} does not load: {type(exc).__name__}: {exc}") from exc
        if not isinstance(spec, KindSpec):
            raise KindError(f"{where} is a {type(spec).__name__}, not a KindSpec")
        if spec.name != point.name:
            raise KindError(f"{where} names a KindSpec called {spec.name!r}: the names must match")
        if spec.name in kinds:
            raise KindError(f"kind {spec.name!r} is installed twice ({where})")
        kinds[spec.name] = spec
    return kinds


@cache
def load_kinds() -> Mapping[str, KindSpec]:
    """The installed kinds (entry-point group `kubetask.kinds`), loaded once per process."""
    return kinds_from(entry_points(group=GROUP))


def load_kind(name: str) -> KindSpec | None:
    """The installed kind called `name`, None if there is none: only its own entry point is
    loaded (a task process imports no other kind's modules), unless `load_kinds` already
    loaded them all in this process (a warm process that forks tasks). `KindError` as
    `kinds_from` says, for this kind only."""
    if load_kinds.cache_info().currsize:
        return load_kinds().get(name)
    return kinds_from(entry_points(group=GROUP, name=name)).get(name)


def installed_kind_names() -> list[str]:
    """The names of the installed kinds, sorted, without loading any."""
    return sorted(set(entry_points(group=GROUP).names))


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def kind_problems(
    kinds: Mapping[str, KindSpec], *, images: Collection[str] | None = None
) -> list[str]:
    """What is wrong with the kinds together: an `output_ref` field naming a producing kind
    that is not installed or does not declare that output; with `images` (the image roles
    the installation has images for), a kind whose role has none."""
    problems: list[str] = []
    for name, spec in sorted(kinds.items()):
        for loc, output, producers in ref_fields(spec.params):
            for producer in producers:
                where = f"kind {name!r}: params field {_dotted(loc)!r} takes {producer!r}'s"
                made = kinds.get(producer)
                if made is None:
                    problems.append(
                        f"{where} {output!r} output, but no kind {producer!r} is installed"
                    )
                elif output not in made.outputs:
                    declared = ", ".join(made.outputs) or "none"
                    problems.append(
                        f"{where} {output!r} output, but {producer!r} does not declare it "
                        f"(its outputs: {declared})"
                    )
        if images is not None and spec.image not in images:
            problems.append(
                f"kind {name!r} runs on image role {spec.image!r}, which has no image "
                f"(roles with one: {', '.join(sorted(images)) or 'none'})"
            )
    return problems


def check_kinds(kinds: Mapping[str, KindSpec], *, images: Collection[str] | None = None) -> None:
    """`KindError` listing every problem `kind_problems` finds."""
    problems = kind_problems(kinds, images=images)
    if problems:
        raise KindError("the installed kinds do not fit together:\n  " + "\n  ".join(problems))


def missing_outputs(spec: KindSpec, result: Mapping[str, JsonValue]) -> list[str]:
    """The outputs `spec` declares that `result` lacks (no key, or not a path string)."""
    return [output for output in spec.outputs if not isinstance(result.get(output), str)]


def check_runner(spec: KindSpec, runner: Callable[..., object]) -> None:
    """`KindError` unless the runner's first parameter is annotated with the kind's params
    model (or a base of it, which takes the model too)."""
    parameters = list(inspect.signature(runner).parameters)
    if not parameters:
        raise KindError(f"kind {spec.name!r}: its runner {spec.runner} takes no params")
    try:
        hints = typing.get_type_hints(runner)
    except Exception as exc:
        raise KindError(
            f"kind {spec.name!r}: the annotations of its runner {spec.runner} do not "
            f"resolve: {type(exc).__name__}: {exc}"
        ) from exc
    taken = hints.get(parameters[0])
    if not (isinstance(taken, type) and issubclass(spec.params, taken)):
        shown = getattr(taken, "__name__", repr(taken))
        raise KindError(
            f"kind {spec.name!r}: its runner {spec.runner} takes {parameters[0]}: {shown}, "
            f"but the kind's params are {spec.params.__name__}"
        )


def load_runner(spec: KindSpec) -> Runner:
    """The kind's runner, imported (with the kind's libraries) and checked against the spec."""
    module_name, _, function = spec.runner.partition(":")
    runner: Runner = getattr(importlib.import_module(module_name), function)
    check_runner(spec, runner)
    return runner
