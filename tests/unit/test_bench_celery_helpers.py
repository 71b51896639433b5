"""The celery bench figure's pure helpers: a quantity over rounds, and how its range reads."""

from __future__ import annotations

from bench.celery_side import OverRounds, per_round, range_note, spread


def test_over_rounds_gives_the_median_and_the_range() -> None:
    value = OverRounds((5.0, 1.0, 3.0, 10.0))
    assert (value.mid, value.low, value.high) == (4.0, 1.0, 10.0)


def test_per_round_takes_the_percentile_of_each_round() -> None:
    rounds = [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0, 50.0]]
    assert per_round(rounds, 50).values == (2.0, 30.0)
    assert per_round(rounds, 100).values == (3.0, 50.0)


def test_spread_uses_the_precision_of_the_table() -> None:
    assert spread(OverRounds((3.456, 1.234))) == "1.23-3.46"
    assert spread(OverRounds((12.34, 15.67))) == "12.3-15.7"
    assert spread(OverRounds((661.4, 1679.6))) == "661-1,680"


def test_range_note_names_both_sides_and_the_rounds() -> None:
    note = range_note("p50", OverRounds((300.0, 350.0, 330.0)), OverRounds((3.0, 4.0, 3.5)))
    assert note == "p50, min-max over 3 rounds: kubetask 300-350, Celery 3.00-4.00"
