"""The suite-wide check of the progress model: every progress event a test reads (the SSE
reader in tests/servers.py, the SDK's event cursor, patched in tests/conftest.py) is recorded
here, and a job's fraction must never decrease within an attempt, in `seq` order, across all
the streams that read it (a resumed or repeated stream is checked against the others)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ProgressWentBack(AssertionError):
    """A job's fraction decreased within an attempt (or its attempt number did)."""


@dataclass
class ProgressLedger:
    """Each job's (seq, attempt, fraction) seen so far, kept in seq order."""

    jobs: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)

    def see(self, event: Mapping[str, Any]) -> None:
        """Record a progress event (other events, and those without a job fraction, pass)."""
        fraction = event.get("fraction")
        if event.get("type") != "progress" or not isinstance(fraction, int | float):
            return
        job_id, seq, attempt = str(event["job_id"]), int(event["seq"]), int(event["attempt"])
        seen = self.jobs.setdefault(job_id, [])
        entry = (seq, attempt, float(fraction))
        at = bisect.bisect_left(seen, (seq,))
        if at < len(seen) and seen[at][0] == seq:
            if seen[at] != entry:
                raise ProgressWentBack(f"job {job_id}: event {seq} read as {seen[at]}, now {entry}")
            return
        if at > 0:
            _in_order(job_id, seen[at - 1], entry)
        if at < len(seen):
            _in_order(job_id, entry, seen[at])
        seen.insert(at, entry)


def _in_order(job_id: str, before: tuple[int, int, float], after: tuple[int, int, float]) -> None:
    (seq_a, attempt_a, fraction_a), (seq_b, attempt_b, fraction_b) = before, after
    if attempt_b < attempt_a or (attempt_b == attempt_a and fraction_b < fraction_a):
        raise ProgressWentBack(
            f"job {job_id}: progress went back from event {seq_a} (attempt {attempt_a}, "
            f"{fraction_a}) to event {seq_b} (attempt {attempt_b}, {fraction_b})"
        )


LEDGER = ProgressLedger()
