"""Task failures turned into something a person can act on: type, message, the last frames
of the traceback and a suggestion. Pure functions; the runtime writes the result."""

from __future__ import annotations

import traceback
from types import TracebackType

from kubetask.outcome import ErrorInfo

TRACEBACK_FRAMES = 6


class TaskError(Exception):
    """Raised by a task for a failure it understands, with its own suggestion. `permanent`:
    a retry would fail the same (the data the params name is there but does not fit), so the
    task exits with code 2 and is not retried; else it exits 1 and `retries` apply (a file
    not there yet may be by the next try)."""

    def __init__(
        self, message: str, *, suggestion: str | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.suggestion = suggestion
        self.permanent = permanent


class InvalidParams(Exception):
    """Raised by the runtime or a task for params that can never work as given, such as an
    artifact path leading out of the store (exit code 2: never retried)."""


class TaskTerminated(BaseException):
    """Raised in the task when it receives SIGTERM (cancel, eviction, deadline)."""


DISK_FULL = (
    "The artifact store has no space left: free some (purge finished jobs, DELETE "
    "/v1/jobs/{id}?purge=true, or set KUBETASK_ARTIFACTS_RETENTION_S), or give it a larger "
    "volume; then run the job again."
)
_SUGGESTIONS: list[tuple[tuple[str, ...], str]] = [
    (
        ("MemoryError", "OutOfMemoryError", "out of memory", "CUDA out of memory"),
        "The task ran out of memory: lower batch_size (or the data size), "
        "or request more memory / a larger GPU in `resources`.",
    ),
    (("No space left on device", "Disk quota exceeded"), DISK_FULL),
    (
        ("FileNotFoundError",),
        "A file the task needs is missing: artifact paths are relative to the artifact store; "
        "check the path or run the job that produces it first.",
    ),
    (
        ("TaskTerminated",),
        "The task was stopped from outside (cancelled, evicted or past its timeout_s); "
        "raise timeout_s if it needs longer.",
    ),
    (
        ("ModuleNotFoundError", "ImportError"),
        "The task's image lacks a Python package: use the image built for this kind.",
    ),
    (
        ("ConnectionError", "TimeoutError"),
        "A service the task depends on was unreachable; set `retries` to ride out short outages.",
    ),
]


def suggest(type_name: str, message: str) -> str | None:
    """The advice for a failure, matched on the exception type name or its message."""
    for needles, advice in _SUGGESTIONS:
        if any(needle == type_name or needle in message for needle in needles):
            return advice
    return None


def summarize_traceback(tb: TracebackType | None, *, frames: int = TRACEBACK_FRAMES) -> list[str]:
    """The innermost frames as 'file:line in function', innermost last."""
    summary = traceback.extract_tb(tb)[-frames:]
    return [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in summary]


def describe_failure(exc: BaseException, *, exit_code: int) -> ErrorInfo:
    """The failure for people; a subclass of a known failure gets the same suggestion."""
    type_name = type(exc).__name__
    message = str(exc) or type_name
    advice = exc.suggestion if isinstance(exc, TaskError) else None
    for cls in type(exc).__mro__:
        advice = advice or suggest(cls.__name__, message)
    return ErrorInfo(
        type=type_name,
        message=message,
        traceback=summarize_traceback(exc.__traceback__),
        suggestion=advice,
        exit_code=exit_code,
    )
