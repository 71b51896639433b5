"""The controller's one clock: `utcnow` reads the time, `Clock` is what logic is handed
instead of reading it (so tests pass a fixed or stepping one)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
