"""Job ids: DNS-label safe, fixed length, sortable by creation time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from kubetask.controller.ids import is_job_id, new_job_id

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "now",
    [datetime(1970, 1, 1, tzinfo=UTC), T0, datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)],
)
def test_new_job_id_is_a_16_char_dns_label(now: datetime) -> None:
    job_id = new_job_id(now)
    assert len(job_id) == 16
    assert DNS_LABEL.match(job_id)
    assert is_job_id(job_id)


@pytest.mark.parametrize(
    "later", [timedelta(milliseconds=1), timedelta(seconds=1), timedelta(days=400)]
)
def test_a_later_id_sorts_after_an_earlier_one(later: timedelta) -> None:
    for _ in range(20):  # the random tail must never reorder ids of different milliseconds
        assert new_job_id(T0) < new_job_id(T0 + later)


def test_ids_of_the_same_millisecond_differ() -> None:
    assert len({new_job_id(T0) for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "value",
    ["", "abc", "0000000000abcdeF", "0000000000abcde-", "0000000000abcdefg", "0000000000abcde"],
)
def test_is_job_id_rejects_anything_else(value: str) -> None:
    assert not is_job_id(value)
