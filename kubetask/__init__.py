"""kubetask: a Kubernetes-native job runner, one container per task.

This package is the small public face: the contract models, Redis key names, the container
contract, the Python SDK (`Client`, `AsyncClient`) and the `kubetask` CLI. Server code lives
in `api/` and `controller/`, task code in `jobs/`.

The SDK is imported on first use, so task processes that only need the models stay quick
to start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kubetask.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    JobCancelled,
    JobError,
    JobFailed,
    KubetaskError,
    NotFound,
    ServerUnreachable,
    StreamLost,
    TooManyRequests,
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

if TYPE_CHECKING:
    from kubetask._sse import GapEvent, JobEvent
    from kubetask.aio import AsyncClient, AsyncJobHandle
    from kubetask.client import Client, JobHandle

_LAZY = {
    "Client": "kubetask.client",
    "JobHandle": "kubetask.client",
    "AsyncClient": "kubetask.aio",
    "AsyncJobHandle": "kubetask.aio",
    "GapEvent": "kubetask._sse",
    "JobEvent": "kubetask._sse",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kubetask' has no attribute {name!r}")


__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "Conflict",
    "ErrorInfo",
    "Event",
    "GapEvent",
    "InvalidRequest",
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
    "Outcome",
    "ProgressEvent",
    "ServerUnreachable",
    "StateEvent",
    "StreamLost",
    "TooManyRequests",
    "WaitTimeout",
    "WorkerProgress",
]
