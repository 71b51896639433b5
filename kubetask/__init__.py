"""kubetask: a Kubernetes-native job runner, one container per task.

This package is the small public face: the contract models, Redis key names, the container
contract, the Python SDK (`Client`, `AsyncClient`) and the `kubetask` CLI. Server code lives
in `api/` and `controller/`, task code in `jobs/`.

Every name below is imported on first use (module `__getattr__`), so importing a submodule
(a task process importing `kubetask.jobs`) builds neither the SDK nor the models it does
not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubetask._sse import GapEvent, JobEvent
    from kubetask.aio import AsyncClient, AsyncJobHandle
    from kubetask.client import Client, JobHandle
    from kubetask.errors import (
        ApiError,
        ClientClosed,
        Conflict,
        FileChanged,
        InvalidRequest,
        InvalidServerUrl,
        InvalidToken,
        JobCancelled,
        JobError,
        JobFailed,
        KubetaskError,
        NotFound,
        NotKubetaskApi,
        RequestTooLarge,
        ServerUnreachable,
        ServiceUnavailable,
        StreamLost,
        TooManyRequests,
        Unauthorized,
        WaitTimeout,
    )
    from kubetask.models import (
        ErrorInfo,
        Event,
        JobPage,
        JobRequest,
        JobState,
        JobView,
        KindInfo,
        Outcome,
        ProgressEvent,
        StateEvent,
        WorkerProgress,
    )

_ERRORS = (
    "ApiError",
    "ClientClosed",
    "Conflict",
    "FileChanged",
    "InvalidRequest",
    "InvalidServerUrl",
    "InvalidToken",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "KubetaskError",
    "NotFound",
    "NotKubetaskApi",
    "RequestTooLarge",
    "ServerUnreachable",
    "ServiceUnavailable",
    "StreamLost",
    "TooManyRequests",
    "Unauthorized",
    "WaitTimeout",
)
_MODELS = (
    "ErrorInfo",
    "Event",
    "JobPage",
    "JobRequest",
    "JobState",
    "JobView",
    "KindInfo",
    "Outcome",
    "ProgressEvent",
    "StateEvent",
    "WorkerProgress",
)
_LAZY = {
    **dict.fromkeys(_ERRORS, "kubetask.errors"),
    **dict.fromkeys(_MODELS, "kubetask.models"),
    "Client": "kubetask.client",
    "JobHandle": "kubetask.client",
    "AsyncClient": "kubetask.aio",
    "AsyncJobHandle": "kubetask.aio",
    "GapEvent": "kubetask._sse",
    "JobEvent": "kubetask._sse",
}


if not TYPE_CHECKING:  # for a type checker the names are the imports above: a typo is an error

    def __getattr__(name: str) -> object:
        if name in _LAZY:
            value = getattr(importlib.import_module(_LAZY[name]), name)
            globals()[name] = value  # later look-ups skip this function
            return value
        raise AttributeError(f"module 'kubetask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "ClientClosed",
    "Conflict",
    "ErrorInfo",
    "Event",
    "FileChanged",
    "GapEvent",
    "InvalidRequest",
    "InvalidServerUrl",
    "InvalidToken",
    "JobCancelled",
    "JobError",
    "JobEvent",
    "JobFailed",
    "JobHandle",
    "JobPage",
    "JobRequest",
    "JobState",
    "JobView",
    "KindInfo",
    "KubetaskError",
    "NotFound",
    "NotKubetaskApi",
    "Outcome",
    "ProgressEvent",
    "RequestTooLarge",
    "ServerUnreachable",
    "ServiceUnavailable",
    "StateEvent",
    "StreamLost",
    "TooManyRequests",
    "Unauthorized",
    "WaitTimeout",
    "WorkerProgress",
]
