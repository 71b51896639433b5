"""The suite-wide progress check itself (tests/progress_check.py) fails when it should."""

from __future__ import annotations

from typing import Any

import pytest

from tests.progress_check import ProgressLedger, ProgressWentBack


def progress(seq: int, fraction: float | None, attempt: int = 1, job: str = "j") -> dict[str, Any]:
    return {"type": "progress", "job_id": job, "seq": seq, "fraction": fraction, "attempt": attempt}


def test_a_fraction_that_goes_back_within_an_attempt_fails() -> None:
    ledger = ProgressLedger()
    ledger.see(progress(1, 0.5))
    with pytest.raises(ProgressWentBack, match="went back"):
        ledger.see(progress(2, 0.4))


def test_a_new_attempt_may_start_lower_but_the_attempt_never_goes_back() -> None:
    ledger = ProgressLedger()
    ledger.see(progress(1, 0.5))
    ledger.see(progress(2, 0.1, attempt=2))
    with pytest.raises(ProgressWentBack):
        ledger.see(progress(3, 0.9, attempt=1))


def test_streams_read_out_of_order_are_checked_in_seq_order() -> None:
    ledger = ProgressLedger()
    ledger.see(progress(5, 0.5))
    ledger.see(progress(2, 0.2))  # a second stream, read from the start
    ledger.see(progress(5, 0.5))  # the same event again
    with pytest.raises(ProgressWentBack):
        ledger.see(progress(3, 0.7))  # after 2 but above 5
    ledger.see({"type": "state", "job_id": "j", "seq": 4})
    ledger.see(progress(4, None))  # an older server's event: no job fraction
    ledger.see(progress(1, 0.9, job="other"))
