"""The controller's one clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubetask.controller.clock import utcnow


def test_utcnow_is_aware_utc_and_current() -> None:
    now = utcnow()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
