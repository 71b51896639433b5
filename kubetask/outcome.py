"""What a task leaves behind when it exits: its result or its error. A module of its own,
so that the task runtime, which needs these two models only, does not import (and build)
every contract in `kubetask.models`, which re-exports them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class StrictModel(BaseModel):
    """The contracts' base: unknown fields refused, instances frozen. Validators are built on
    first use (`defer_build`): a process that imports the models (a task, the CLI) pays only
    for the few it uses."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ErrorInfo(StrictModel):
    """Why a task failed, in a form a person can act on."""

    type: str
    message: str
    traceback: list[str] = Field(default_factory=list, description="Last frames, innermost last.")
    suggestion: str | None = None
    exit_code: int | None = None


class Outcome(StrictModel):
    """What a task leaves behind when it exits: its result or its error (< 4 KiB as JSON)."""

    ok: bool
    result: dict[str, JsonValue] | None = None
    error: ErrorInfo | None = None
