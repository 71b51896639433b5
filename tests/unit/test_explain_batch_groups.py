"""`explain-batch` claims its signals a group at a time: a group is taken from the claims
iterator only when the worker is ready to explain it."""

from __future__ import annotations

from collections.abc import Iterator

from kubetask.jobs.kinds.explain_batch import groups


def test_positions_come_in_groups_each_claimed_when_asked_for() -> None:
    claimed: list[int] = []

    def claims() -> Iterator[int]:
        for position in range(7):
            claimed.append(position)
            yield position

    grouped = groups(claims(), 3)
    assert next(grouped) == [0, 1, 2]
    assert claimed == [0, 1, 2]  # nothing claimed ahead of the work
    assert list(grouped) == [[3, 4, 5], [6]]
    assert list(groups(iter([]), 3)) == []
