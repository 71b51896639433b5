"""The Kubernetes adapters' shared reading of an API answer's Retry-After, and the informer's
wait built on it."""

from __future__ import annotations

import pytest

from kubetask.controller.backends.informer import MAX_BACKOFF_S, pause_s
from kubetask.controller.k8s_api import retry_after_s


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # a date: not read
        ("-3", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_retry_after_reads_seconds_only(header: str, seconds: float | None) -> None:
    assert retry_after_s({"Retry-After": header}) == seconds


def test_retry_after_not_said() -> None:
    assert retry_after_s(None) is None
    assert retry_after_s({}) is None


def test_informer_waits_as_long_as_the_answer_asks() -> None:
    assert pause_s({"Retry-After": "2.5"}, failures=1) == 2.5
    assert pause_s({"Retry-After": "45"}, failures=1) == 45.0


def test_informer_backs_off_exponentially_when_not_told() -> None:
    waits = [pause_s(None, failures=n) for n in range(1, 12)]
    assert waits[:3] == pytest.approx([0.4, 0.8, 1.6])
    assert waits == sorted(waits)
    assert waits[-1] == MAX_BACKOFF_S
    assert pause_s({"Retry-After": "soon"}, failures=2) == pytest.approx(0.8)
