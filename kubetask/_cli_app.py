"""The CLI's command classes and its shell completion scripts: help that shows a flag as a
flag (`--wait`, not `--wait <bool>`), and `kubetask completion SHELL`'s script (typer's own,
no network: the shell calls `kubetask` back with `_KUBETASK_COMPLETE` set)."""

from __future__ import annotations

from enum import StrEnum

from typer._click import Context, Parameter
from typer._completion_shared import get_completion_script
from typer.core import TyperCommand, TyperGroup, TyperOption

PROG_NAME = "kubetask"
COMPLETE_VAR = "_KUBETASK_COMPLETE"


class Shell(StrEnum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


def completion_script(shell: Shell) -> str:
    return get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell)


class FlagOption(TyperOption):
    """An on/off option: no `<bool>` after it in help, it takes no value."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None


def _flags_as_flags(params: list[Parameter]) -> list[Parameter]:
    for param in params:
        if type(param) is TyperOption and param.is_flag:
            param.__class__ = FlagOption  # same object, only its help changes
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _flags_as_flags(super().get_params(ctx))


class Group(TyperGroup):
    """The app: typer's group (it already says "Did you mean 'list'?" for a mistyped
    command) with flags shown as flags."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _flags_as_flags(super().get_params(ctx))
