"""kubetask: a Kubernetes-native job runner, one container per task.

This package is the small public face: the contract models, Redis key names and the
container contract. Server code lives in `api/` and `controller/`, task code in `jobs/`.
"""

from kubetask.models import (
    ErrorInfo,
    Event,
    JobRequest,
    JobState,
    JobView,
    Outcome,
    ProgressEvent,
    StateEvent,
)

__all__ = [
    "ErrorInfo",
    "Event",
    "JobRequest",
    "JobState",
    "JobView",
    "Outcome",
    "ProgressEvent",
    "StateEvent",
]
