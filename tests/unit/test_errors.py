"""Task failures described so that a person can act on them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubetask.jobs.errors import (
    TRACEBACK_FRAMES,
    TaskError,
    TaskTerminated,
    describe_failure,
    suggest,
)


@pytest.mark.parametrize(
    ("type_name", "message", "needle"),
    [
        ("MemoryError", "", "batch_size"),
        ("OutOfMemoryError", "CUDA out of memory. Tried to allocate 2 GiB", "batch_size"),
        ("RuntimeError", "CUDA out of memory. Tried to allocate 2 GiB", "batch_size"),
        ("FileNotFoundError", "[Errno 2] No such file or directory: 'x.npz'", "missing"),
        ("OSError", "[Errno 28] No space left on device", "artifact store"),
        ("RuntimeError", "PytorchStreamWriter failed: No space left on device", "free some"),
        ("TaskTerminated", "received SIGTERM", "timeout_s"),
        ("ModuleNotFoundError", "No module named 'torch'", "image"),
        ("ImportError", "cannot import name 'x'", "image"),
        ("ConnectionError", "Error 111 connecting to redis:6379", "retries"),
        ("TimeoutError", "timed out", "retries"),
    ],
)
def test_known_failures_get_a_suggestion(type_name: str, message: str, needle: str) -> None:
    advice = suggest(type_name, message)
    assert advice is not None
    assert needle in advice


@pytest.mark.parametrize(
    ("type_name", "message"),
    [("ValueError", "bad value"), ("KeyError", "'x'"), ("ZeroDivisionError", "division by zero")],
)
def test_unknown_failures_get_no_suggestion(type_name: str, message: str) -> None:
    assert suggest(type_name, message) is None


def raise_in_inner() -> None:
    raise ValueError("deep down")


def call_middle() -> None:
    raise_in_inner()


def recurse(depth: int) -> None:
    if depth == 0:
        raise_in_inner()
    recurse(depth - 1)


def caught(function: Callable[..., None], *args: int) -> Exception:
    try:
        function(*args)
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_describe_failure_names_type_message_and_exit_code() -> None:
    info = describe_failure(caught(call_middle), exit_code=1)
    assert info.type == "ValueError"
    assert info.message == "deep down"
    assert info.exit_code == 1
    assert info.suggestion is None


def test_traceback_summary_is_innermost_last() -> None:
    info = describe_failure(caught(call_middle), exit_code=1)
    assert info.traceback[-1].endswith("in raise_in_inner")
    assert info.traceback[-2].endswith("in call_middle")
    assert all(":" in frame for frame in info.traceback)
    assert __file__ in info.traceback[-1]


def test_traceback_summary_is_bounded() -> None:
    info = describe_failure(caught(recurse, 40), exit_code=1)
    assert len(info.traceback) == TRACEBACK_FRAMES
    assert info.traceback[-1].endswith("in raise_in_inner")


def test_a_task_errors_own_suggestion_wins() -> None:
    exc = TaskError("out of memory while loading", suggestion="use the small dataset")
    assert describe_failure(exc, exit_code=1).suggestion == "use the small dataset"


def test_a_task_error_without_its_own_suggestion_falls_back_to_the_matching_one() -> None:
    info = describe_failure(TaskError("CUDA out of memory"), exit_code=1)
    assert info.type == "TaskError"
    assert info.suggestion is not None
    assert "batch_size" in info.suggestion


def test_an_exception_without_a_message_uses_its_type_name() -> None:
    info = describe_failure(MemoryError(), exit_code=1)
    assert info.message == "MemoryError"
    assert info.suggestion is not None
    assert "memory" in info.suggestion


def test_terminated_is_described_with_its_suggestion() -> None:
    info = describe_failure(TaskTerminated("received SIGTERM"), exit_code=143)
    assert info.type == "TaskTerminated"
    assert info.exit_code == 143
    assert info.suggestion is not None


def test_an_exception_never_raised_has_an_empty_traceback() -> None:
    assert describe_failure(RuntimeError("x"), exit_code=1).traceback == []


@pytest.mark.parametrize(
    "exc",
    [ConnectionRefusedError(111, "Connection refused"), ConnectionResetError(104, "reset")],
)
def test_subclasses_of_known_failures_get_the_same_suggestion(exc: Exception) -> None:
    info = describe_failure(exc, exit_code=1)
    assert info.suggestion is not None
    assert "retries" in info.suggestion
