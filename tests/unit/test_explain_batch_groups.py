"""`explain-batch` claims its signals a group at a time (`my_share`): a group is claimed in
one call when the worker is ready to explain it, and filled past what other workers hold."""

from __future__ import annotations

from collections.abc import Sequence

from kubetask.jobs.kinds.ml.shares import LocalShares, my_share


class Recorded:
    """Shares whose other workers hold `theirs`; every claim call is recorded."""

    def __init__(self, theirs: set[int]) -> None:
        self.theirs = theirs
        self.calls: list[list[int]] = []

    def claim(self, positions: Sequence[int]) -> list[int]:
        self.calls.append(list(positions))
        return [p for p in positions if p not in self.theirs]

    def finish(self, positions: Sequence[int]) -> int:
        return 0

    def done(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_positions_come_in_groups_each_claimed_in_one_call_when_asked_for() -> None:
    shares = Recorded(theirs=set())
    grouped = my_share(shares, 7, 3)
    assert next(grouped) == [0, 1, 2]
    assert shares.calls == [[0, 1, 2]]  # nothing claimed ahead of the work
    assert list(grouped) == [[3, 4, 5], [6]]
    assert shares.calls == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(my_share(shares, 0, 3)) == []


def test_a_group_is_filled_past_the_positions_other_workers_hold() -> None:
    shares = Recorded(theirs={1, 2, 5, 6, 7, 8})
    assert list(my_share(shares, 10, 3)) == [[0, 3, 4], [9]]
    # each call asks for as many positions as the group still lacks
    assert shares.calls == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]
    assert list(my_share(Recorded(theirs=set(range(4))), 4, 2)) == []


def test_a_lone_worker_takes_everything_and_counts_what_it_finished() -> None:
    shares = LocalShares()
    groups = list(my_share(shares, 5, 2))
    assert groups == [[0, 1], [2, 3], [4]]
    assert shares.finish([0, 1]) == 2
    assert shares.finish([1, 4]) == shares.done() == 3
