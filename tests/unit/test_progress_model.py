"""The progress model (kubetask/progress.py): stages and weights, workers, attempts, ETA."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetask.progress import (
    DEFAULT_STAGES,
    JobTally,
    WorkerFraction,
    eta_s,
    job_fraction,
    overall_fraction,
    stage_fraction,
    trainer_status,
)

HPO = (("data", 1.0), ("trial", 9.0))
THREE = (("load", 1.0), ("work", 6.0), ("save", 3.0))


def test_a_stage_fraction_is_clamped_and_unknown_without_a_total() -> None:
    assert stage_fraction(3, 4) == 0.75
    assert stage_fraction(7, 4) == 1.0
    assert stage_fraction(1, None) is None
    assert stage_fraction(1, 0) is None


def test_completed_stages_count_by_weight_and_the_current_one_by_its_own_fraction() -> None:
    assert overall_fraction(HPO, "data", 1, 1) == pytest.approx(0.1)
    assert overall_fraction(HPO, "trial", 0, 10) == pytest.approx(0.1)  # not back to 0
    assert overall_fraction(HPO, "trial", 5, 10) == pytest.approx(0.55)
    assert overall_fraction(THREE, "save", 0, 2) == pytest.approx(0.7)
    assert overall_fraction(THREE, "save", 2, 2) == pytest.approx(1.0)


def test_an_undeclared_stage_is_unknown_but_one_declared_stage_takes_any_name() -> None:
    assert overall_fraction(THREE, "elsewhere", 1, 2) is None
    assert overall_fraction(DEFAULT_STAGES, "steps", 1, 4) == 0.25


def test_a_worker_fraction_keeps_its_highest_value_and_finishes_at_one() -> None:
    worker = WorkerFraction(THREE)
    assert worker.update("work", 6, 6) == pytest.approx(0.7)
    assert worker.update("work", 3, 6) == pytest.approx(0.7)  # a count going back
    assert worker.update("other", 0, 1) == pytest.approx(0.7)  # an undeclared stage
    assert worker.update("save", 9, 2) == 0.99  # past its last count, yet not done
    assert worker.finish() == 1.0


def test_a_stage_the_run_skips_takes_no_share_of_the_whole() -> None:
    """explain-batch on a dataset read, not generated: loaded, then a tenth explained."""
    stages = (("load", 1.0), ("generate", 2.0), ("explain", 8.0), ("save", 1.0))
    kept = WorkerFraction(stages)
    kept.update("load", 1, 1)
    assert kept.update("explain", 1, 10) == pytest.approx((3 + 0.8) / 12)  # a leap to 32%
    skipped = WorkerFraction(stages)
    skipped.update("load", 1, 1)
    skipped.skip("generate")
    assert skipped.update("explain", 1, 10) == pytest.approx((1 + 0.8) / 10)
    skipped.skip("nothing declared")
    assert skipped.update("save", 1, 1) == 0.99


updates = st.lists(
    st.tuples(
        st.integers(0, len(THREE) - 1),
        st.floats(0, 50, allow_nan=False),
        st.one_of(st.none(), st.floats(0, 50, allow_nan=False)),
    ),
    max_size=40,
)


@given(updates)
def test_a_worker_fraction_never_decreases_for_stage_updates_in_declared_order(
    steps: list[tuple[int, float, float | None]],
) -> None:
    worker = WorkerFraction(THREE)
    previous = 0.0
    for position, current, total in sorted(steps, key=lambda step: step[0]):
        value = worker.update(THREE[position][0], current, total)
        assert previous <= value <= 1.0
        previous = value


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["a", "b"]), st.floats(0, 1)), max_size=40
    )
)
def test_the_job_fraction_never_decreases_within_an_attempt(
    reports: list[tuple[int, str, float]],
) -> None:
    tally, last = JobTally(), (1, 0.0)
    highest: dict[tuple[int, str], float] = {}
    for index, run, fraction in reports:
        # a worker's own figure never goes back within its run
        own = highest[(index, run)] = max(fraction, highest.get((index, run), 0.0))
        tally, figure = tally.record(
            index=index, run=run, worker_fraction=own, started=0.0, completions=3, now=10.0
        )
        assert figure.attempt >= last[0]
        if figure.attempt == last[0]:
            assert figure.fraction >= last[1]
        last = (figure.attempt, figure.fraction)


def test_workers_are_averaged_counting_the_unheard_as_zero_and_the_finished_as_one() -> None:
    assert job_fraction({0: 1.0, 1: 0.5}, 4) == pytest.approx(0.375)
    assert job_fraction({}, 1) == 0.0


def test_a_second_run_of_an_index_is_a_new_attempt_that_may_start_lower() -> None:
    tally, first = JobTally().record(
        index=0, run="a", worker_fraction=0.8, started=100.0, completions=1, now=110.0
    )
    assert (first.attempt, first.fraction) == (1, 0.8)
    tally, again = tally.record(
        index=0, run="b", worker_fraction=0.1, started=200.0, completions=1, now=200.5
    )
    assert (again.attempt, again.fraction) == (2, 0.1)
    assert tally.since == 200.0


def test_the_eta_is_the_rate_since_the_attempt_began_and_none_until_meaningful() -> None:
    assert eta_s(fraction=0.25, base=0.0, elapsed_s=10.0) == 30.0
    assert eta_s(fraction=0.6, base=0.2, elapsed_s=10.0) == 10.0
    assert eta_s(fraction=0.5, base=0.0, elapsed_s=0.5) is None
    assert eta_s(fraction=0.001, base=0.0, elapsed_s=100.0) is None
    assert eta_s(fraction=1.0, base=0.0, elapsed_s=0.0) == 0.0


def test_the_figures_map_onto_kubeflow_trainers_progress_status() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = trainer_status(fraction=0.375, eta_s=12.5, metrics={"loss": 0.25}, timestamp=when)
    assert status == {
        "progressPercentage": 37.5,
        "estimatedRemainingSeconds": 12.5,
        "metrics": [{"name": "loss", "value": 0.25}],
        "lastUpdatedTime": "2026-01-02T03:04:05+00:00",
    }
