"""hpo's search space (what a trial may choose) and its trial budget (exact in total)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kubetask import keys
from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.hpo import run
from kubetask.jobs.kinds.ml.search import (
    LocalBudget,
    fail_stale_trials,
    metric_value,
    state_counts,
    suggest,
)
from kubetask.jobs.params import DatagenParams, HpoParams, SearchSpace, TrainParams
from kubetask.jobs.reporter import ProgressReporter

SPACE = SearchSpace(
    models=["mlp"], lr=(1e-3, 1e-2), width=[8, 16], depth=(1, 2), dropout=(0.0, 0.2)
)


def test_a_trial_s_choices_become_train_params_over_the_base() -> None:
    base = TrainParams(epochs=2, seed=7)
    choices = {
        "model": "mlp",
        "lr": 0.005,
        "width": 16,
        "depth": 2,
        "dropout": 0.1,
        "batch_size": 64,
    }
    params = suggest(optuna.trial.FixedTrial(choices), SearchSpace(), base)
    assert params.model_dump(include=set(choices)) == choices
    assert (params.epochs, params.seed) == (2, 7)


def test_sampled_params_stay_in_the_space() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, SPACE, TrainParams())
        assert params.model == "mlp"
        assert 1e-3 <= params.lr <= 1e-2
        assert params.width in {8, 16}
        assert 1 <= params.depth <= 2
        assert 0.0 <= params.dropout <= 0.2
        assert params.batch_size in {16, 32, 64}
        study.tell(trial, 0.0)


def test_the_local_budget_gives_exactly_n_tickets() -> None:
    budget = LocalBudget(total=3)
    assert [budget.take() for _ in range(5)] == [True, True, True, False, False]


def test_what_a_jobs_tasks_share_is_named_by_the_job() -> None:
    shared = keys.task_shared("abc")
    assert keys.study_journal("abc") in shared
    assert keys.study_tickets("abc") in shared
    assert all(":abc:" in name for name in shared)
    assert not set(shared) & set(keys.task_shared("abcd"))


@pytest.mark.parametrize(("maximize", "value"), [(False, 0.5), (True, 0.9)])
def test_the_objective_is_the_chosen_metric(maximize: bool, value: float) -> None:
    assert metric_value((0.5, 0.9), maximize) == value


def test_counts_and_stale_trials_of_a_dead_worker() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    done = study.ask()
    study.tell(done, 1.0)
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)
    mine, theirs = study.ask(), study.ask()  # still running when their workers died
    mine.set_user_attr("worker", 1)
    theirs.set_user_attr("worker", 0)
    trials = study.get_trials()
    assert state_counts(trials) == {"complete": 1, "pruned": 1, "failed": 0, "running": 2}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fail_stale_trials(study, storage, worker=1) == 1
    states = {t.number: t.state for t in study.get_trials()}
    assert states[mine.number] == TrialState.FAIL
    assert states[theirs.number] == TrialState.RUNNING


def test_without_redis_one_worker_runs_the_study_in_memory(tmp_path: Path) -> None:
    data = DatagenParams(n_per_class=6, length=128, sample_rate=2000.0)
    params = HpoParams(n_trials=3, train=TrainParams(datagen=data, epochs=2, threads=1))
    reporter = ProgressReporter(None, job_id="by-hand")
    context = TaskContext(job_id="by-hand", index=0, artifacts_root=tmp_path, reporter=reporter)
    result = run(params, context)
    assert result["storage"] == "memory"
    assert (result["trials_run"], result["trials_total"]) == (3, 3)
    assert result["trial_numbers"] == [0, 1, 2]
    assert result["best_value"] is not None
    assert reporter.last is not None
    assert reporter.last["stage"] == "trial"
