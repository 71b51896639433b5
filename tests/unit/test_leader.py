"""The leader election's decisions: pure functions of the Lease seen, the time and who asks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from kubetask.api.settings import Settings
from kubetask.controller.leader import (
    Action,
    LeaseRecord,
    Sighting,
    decide,
    lease_spec,
    micro_time,
    released_spec,
    sighted,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def lease(holder: str = "a", *, rv: str = "7", transitions: int = 2) -> LeaseRecord:
    return LeaseRecord(
        holder=holder,
        duration_s=15,
        transitions=transitions,
        acquired="2026-01-01T11:00:00.000000Z",
        renewed="2026-01-01T11:59:59.000000Z",
        resource_version=rv,
    )


def test_no_lease_is_created() -> None:
    assert decide(None, T0, "a") is Action.CREATE


def test_our_lease_is_renewed_even_long_after_we_last_saw_it() -> None:
    assert decide(Sighting(lease("a"), T0), T0 + timedelta(hours=1), "a") is Action.RENEW


def test_another_holder_is_followed_until_its_lease_ran_out_by_our_clock() -> None:
    seen = Sighting(lease("a"), T0)
    assert decide(seen, T0, "b") is Action.FOLLOW
    assert decide(seen, T0 + timedelta(seconds=14.9), "b") is Action.FOLLOW
    assert decide(seen, T0 + timedelta(seconds=15), "b") is Action.TAKE_OVER


def test_a_released_lease_is_taken_at_once() -> None:
    assert decide(Sighting(lease(""), T0), T0, "b") is Action.TAKE_OVER


def test_the_time_seen_moves_only_when_the_lease_changed() -> None:
    first = sighted(None, lease(rv="7"), T0)
    assert first == Sighting(lease(rv="7"), T0)
    later = T0 + timedelta(seconds=10)
    assert sighted(first, lease(rv="7"), later) is first  # unchanged: not renewed since T0
    assert sighted(first, lease(rv="8"), later) == Sighting(lease(rv="8"), later)
    assert sighted(first, None, later) is None


def test_a_lease_renewed_every_period_is_never_taken() -> None:
    seen: Sighting | None = None
    for second in range(0, 60, 2):  # the holder renews every 2 s: each read shows a change
        now = T0 + timedelta(seconds=second)
        seen = sighted(seen, lease(rv=str(second)), now)
        assert decide(seen, now + timedelta(seconds=1.9), "b") is Action.FOLLOW


def test_what_is_written_for_each_action() -> None:
    now = T0
    stamp = micro_time(now)
    assert stamp == "2026-01-01T12:00:00.000000Z"
    created = lease_spec(Action.CREATE, None, me="a", now=now, duration_s=15)
    assert created == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": 0,
    }
    seen = Sighting(lease("a", transitions=2), T0)
    renewed = lease_spec(Action.RENEW, seen, me="a", now=now, duration_s=15)
    assert renewed["acquireTime"] == "2026-01-01T11:00:00.000000Z"  # kept
    assert renewed["renewTime"] == stamp
    assert renewed["leaseTransitions"] == 2
    taken = lease_spec(Action.TAKE_OVER, seen, me="b", now=now, duration_s=15)
    assert (taken["holderIdentity"], taken["acquireTime"]) == ("b", stamp)
    assert taken["leaseTransitions"] == 3
    released = released_spec(lease("a", transitions=2), now=now)
    assert released["holderIdentity"] == ""
    assert released["leaseTransitions"] == 2
    assert decide(Sighting(lease(""), now), now, "c") is Action.TAKE_OVER


def test_election_is_set_up_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "kubetask-7d9f-abcde")
    election = Settings(leader_election=True, backend="kubernetes", instance="ml").election()
    assert election is not None
    assert (election.name, election.namespace, election.identity) == (
        "ml-leader",
        "default",
        "kubetask-7d9f-abcde",
    )
    assert Settings(leader_election=True, backend="local").election() is None  # one process
    assert Settings(backend="kubernetes").election() is None
    with pytest.raises(ValidationError, match="retry_period_s < renew_deadline_s"):
        Settings(leader_election=True, backend="kubernetes", renew_deadline_s=20)
