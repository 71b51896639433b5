"""What the Kubernetes adapters (the backend in controller/backends and the Lease elector in
controller/leader.py) share about the API: raw objects as JSON dicts, and the wait an answer
asks for. Neither reaches into the other for these."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]  # a raw API object (Job, Pod, Event, Lease) as the API's JSON


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The seconds an API answer's `Retry-After` asks to wait (None: not said, or not a
    finite, non-negative number of seconds)."""
    value = (headers or {}).get("Retry-After")
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
