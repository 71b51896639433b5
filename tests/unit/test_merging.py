"""One result from a split job's parts: the declarative `Merge` rules (controller/merging.py),
the built-in kinds' merges (jobs/specs.py) and `summarize` using them."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest
from pydantic import JsonValue

from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.bus import EventBus
from kubetask.controller.merging import merge_parts, merged_figures, picked
from kubetask.controller.outcomes import summarize
from kubetask.controller.reconciler import Reconciler
from kubetask.controller.records import JobRecord
from kubetask.controller.states import Derived
from kubetask.jobs.specs import EXPLAIN_BATCH, HPO, NAS
from kubetask.kinds import Merge, Pick
from kubetask.models import ErrorInfo, JobRequest, JobState, Outcome
from tests.unit.test_reconciler_sync import COMPLETE, JOB, T0, FakeBackend, FakeBus, FakeStore

SUCCEEDED = Derived(JobState.SUCCEEDED, "Completed", "all tasks succeeded")


def study_part(
    worker: int, *, best: float | None, finished: int, ran: list[int], direction: str = "maximize"
) -> dict[str, JsonValue]:
    """What an hpo worker reports: the shared study as it saw it at its end, its own trials."""
    numbers: list[JsonValue] = list(ran)
    return {
        "study": "kubetask-j1",
        "storage": "redis",
        "worker": worker,
        "metric": "val_accuracy" if direction == "maximize" else "val_loss",
        "direction": direction,
        "best_value": best,
        "best_trial": None if best is None else worker * 100,
        "best_params": {"lr": 0.1 * (worker + 1)} if best is not None else {},
        "trials_run": len(ran),
        "trial_numbers": numbers,
        "trials_total": 10,
        "trials_finished": finished,
        "stale_trials_failed": 0,
        "complete": finished - 1,
        "pruned": 1,
        "failed": 0,
        "running": 10 - finished,
    }


def hpo_result(parts: list[dict[str, JsonValue] | None]) -> dict[str, Any]:
    assert HPO.merge is not None
    return merge_parts(HPO.merge, parts)


# --- hpo / nas ------------------------------------------------------------------------------


def test_hpo_best_is_the_best_over_every_worker_not_the_first() -> None:
    parts = [
        study_part(0, best=0.7, finished=8, ran=[0, 2, 4, 6]),
        study_part(1, best=0.9, finished=10, ran=[1, 3, 5, 7, 8, 9]),
    ]
    result = hpo_result(list(parts))
    assert (result["best_value"], result["best_trial"]) == (0.9, 100)
    assert result["best_params"] == {"lr": 0.2}
    assert result["workers"] == parts
    assert result["workers_missing"] == []


def test_hpo_counts_every_trial_once() -> None:
    parts = [
        study_part(0, best=0.7, finished=8, ran=[0, 2, 4, 6]),
        study_part(1, best=0.9, finished=10, ran=[1, 3, 5, 7, 8, 9]),
    ]
    result = hpo_result(list(parts))
    # the study's counts as the last worker saw them, not summed over two views of it
    assert (result["trials_total"], result["trials_finished"]) == (10, 10)
    assert (result["complete"], result["pruned"], result["running"]) == (9, 1, 0)
    # each worker's own trials, summed
    assert result["trials_run"] == 10
    assert sorted(result["trial_numbers"]) == list(range(10))
    assert result["study"] == "kubetask-j1"


def test_a_minimized_metric_picks_the_lowest_best_value() -> None:
    parts = [
        study_part(0, best=0.2, finished=10, ran=[0], direction="minimize"),
        study_part(1, best=0.5, finished=9, ran=[1], direction="minimize"),
    ]
    result = hpo_result(list(parts))
    assert (result["best_value"], result["best_trial"], result["direction"]) == (
        0.2,
        0,
        "minimize",
    )


def test_a_worker_without_a_complete_trial_is_passed_over_for_the_best() -> None:
    parts = [
        study_part(0, best=None, finished=3, ran=[0]),
        study_part(1, best=0.6, finished=4, ran=[1]),
    ]
    assert hpo_result(list(parts))["best_value"] == 0.6


def test_no_complete_trial_anywhere_keeps_the_parts_none() -> None:
    result = hpo_result([study_part(0, best=None, finished=2, ran=[0])])
    assert (result["best_value"], result["best_trial"], result["best_params"]) == (None, None, {})


def test_a_missing_part_is_named_and_the_rest_still_merge() -> None:
    result = hpo_result([None, study_part(1, best=0.8, finished=10, ran=[1, 2])])
    assert result["workers_missing"] == [0]
    assert result["workers"][0] is None
    assert (result["best_value"], result["trials_run"], result["trials_total"]) == (0.8, 2, 10)


def test_nas_takes_the_best_architecture_from_the_best_worker() -> None:
    assert NAS.merge is not None
    parts: list[dict[str, JsonValue] | None] = [
        {**study_part(0, best=0.9, finished=10, ran=[0]), "best_architecture": ["a"]},
        {**study_part(1, best=0.5, finished=9, ran=[1]), "best_architecture": ["b"]},
    ]
    merged = merge_parts(NAS.merge, parts)
    assert (merged["best_value"], merged["best_architecture"]) == (0.9, ["a"])


# --- explain-batch --------------------------------------------------------------------------


def batch_part(
    worker: int, rows: list[int], accuracy: float | None, gap: float | None
) -> dict[str, JsonValue]:
    listed: list[JsonValue] = list(rows)
    return {
        "model": "m.pt",
        "worker": worker,
        "signals_total": 6,
        "signals_explained": len(rows),
        "rows": listed,
        "rows_truncated": False,
        "accuracy": accuracy,
        "mean_relative_gap": gap,
        "max_relative_gap": gap,
    }


def test_explain_batch_figures_are_over_every_signal() -> None:
    assert EXPLAIN_BATCH.merge is not None
    parts = [batch_part(0, [0, 2, 3, 5], 0.5, 0.01), batch_part(1, [1, 4], 1.0, 0.04)]
    merged: dict[str, Any] = merge_parts(EXPLAIN_BATCH.merge, list(parts))
    assert (merged["signals_explained"], merged["signals_total"]) == (6, 6)
    assert sorted(merged["rows"]) == list(range(6))
    # 2 of 4 right and 2 of 2 right: 4 of 6, not the mean of 0.5 and 1.0
    assert merged["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert merged["mean_relative_gap"] == pytest.approx(0.02, abs=1e-6)
    assert merged["max_relative_gap"] == 0.04
    assert merged["rows_truncated"] is False
    assert "worker" not in merged


def test_a_worker_that_explained_nothing_weighs_nothing() -> None:
    assert EXPLAIN_BATCH.merge is not None
    parts = [batch_part(0, [0, 1, 2, 3, 4, 5], 0.5, 0.01), batch_part(1, [], None, None)]
    merged = merge_parts(EXPLAIN_BATCH.merge, list(parts))
    assert (merged["accuracy"], merged["max_relative_gap"]) == (0.5, 0.01)


# --- the rules ------------------------------------------------------------------------------


def test_rules_leave_out_keys_no_part_has() -> None:
    rules = Merge(same=("a",), sums=("b",), concat=("c",), maxima=("d",), means=(("e", "b"),))
    assert merged_figures(rules, [{"x": 1}]) == {}


def test_sums_keep_integers_and_maxima_say_any_for_flags() -> None:
    rules = Merge(sums=("n", "f"), maxima=("t",))
    parts: list[dict[str, JsonValue]] = [{"n": 2, "f": 0.5, "t": False}, {"n": 3, "t": True}]
    assert merged_figures(rules, parts) == {"n": 5, "f": 0.5, "t": True}


def test_pick_without_a_number_anywhere_is_none() -> None:
    assert picked(Pick(by="v", keys=("v",)), [{"v": None}, {"v": "high"}, {"v": True}]) is None
    assert picked(Pick(by="v", keys=(), maximize=False), [{"v": 3}, {"v": 1}]) == {"v": 1}


# --- summarize ------------------------------------------------------------------------------


def test_summarize_merges_with_the_kinds_rules_and_drops_failed_parts() -> None:
    parts = {
        0: Outcome(ok=True, result=study_part(0, best=0.7, finished=10, ran=[0, 1])),
        1: Outcome(ok=False, error=ErrorInfo(type="OSError", message="gone")),
    }
    result, error = summarize(SUCCEEDED, parts, completions=2, merge=HPO.merge)
    assert error is None
    assert result is not None
    assert result["best_value"] == 0.7
    assert result["workers_missing"] == [1]
    assert result["workers"] == [parts[0].result, None]


def test_summarize_without_rules_lists_the_parts() -> None:
    result, _ = summarize(SUCCEEDED, {0: Outcome(ok=True, result={"a": 1})}, completions=2)
    assert result == {"completions": [{"a": 1}, None]}


# --- the reconciler hands each kind's rules to summarize ------------------------------------


def test_a_finished_split_job_is_saved_with_its_kinds_merged_result() -> None:
    assert HPO.merge is not None
    job = JobRecord(
        id=JOB,
        request=JobRequest(kind="hpo", parallelism=2, completions=2),
        created_at=T0,
        submitted=True,
    )
    store, bus, backend = FakeStore(job), FakeBus(), FakeBackend()
    backend.jobs[JOB] = replace(COMPLETE, succeeded=2)
    parts = [
        study_part(0, best=0.9, finished=9, ran=[0, 2]),
        study_part(1, best=0.6, finished=10, ran=[1, 3]),
    ]
    bus.left[JOB] = {i: Outcome(ok=True, result=part) for i, part in enumerate(parts)}
    reconciler = Reconciler(
        store=store,
        bus=cast(EventBus, bus),
        backend=backend,
        spec_for=lambda r: TaskSpec(
            job_id=r.id, kind="hpo", image="", command=(), env={}, retries=0, timeout_s=None
        ),
        clock=lambda: T0,
        merges={"hpo": HPO.merge},
    )
    asyncio.run(reconciler.sync(JOB))
    result = store.records[JOB].status.result
    assert result is not None
    assert (result["best_value"], result["trials_run"], result["trials_finished"]) == (0.9, 4, 10)
    assert result["workers"] == parts
