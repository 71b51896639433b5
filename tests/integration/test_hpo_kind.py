"""`hpo` for real: two workers (an Indexed Job's completions, processes of the local backend)
share one Optuna study in Redis, run unique trials and stop at `n_trials` in total; a worker
that comes back after dying fails its stale trial and the study goes on."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
import redis

from kubetask import keys
from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.hpo import run
from kubetask.jobs.kinds.ml.search import open_storage
from kubetask.jobs.kinds.ml.study import RedisBudget, RedisJournal, writer_id
from kubetask.jobs.params import HpoParams
from kubetask.jobs.patient_redis import patient_client
from kubetask.jobs.publisher import OUTCOME_TTL_S
from kubetask.jobs.reporter import ProgressReporter
from tests.servers import ApiServer

DATA = {"n_per_class": 12, "length": 512, "sample_rate": 2000.0}
CHOICES = {"model", "lr", "width", "depth", "dropout", "batch_size"}
# trials long enough (3 epochs) that neither worker can run them all before the other starts
SMALL = {"train": {"datagen": DATA, "epochs": 3, "threads": 1}, "startup_trials": 2}


def test_two_workers_share_one_study_and_stop_at_n_trials(api: ApiServer) -> None:
    params = {**SMALL, "n_trials": 10}
    job_id = api.submit("hpo", params, parallelism=2, completions=2)
    events = api.events(job_id, timeout_s=120)
    job = api.job(job_id)
    assert job["state"] == "succeeded", job
    result = job["result"]
    workers = result["workers"]
    assert [w["worker"] for w in workers] == [0, 1]
    assert result["workers_missing"] == []

    numbers = [n for w in workers for n in w["trial_numbers"]]
    assert sorted(numbers) == list(range(10)), "each trial number once, 10 in total"
    assert all(w["trials_run"] >= 1 for w in workers), "both workers ran trials"
    assert sum(w["trials_run"] for w in workers) == 10
    for worker in workers:
        assert worker["storage"] == "redis"
        assert worker["trials_total"] == 10
        assert worker["complete"] + worker["pruned"] + worker["running"] == 10
        assert set(worker["best_params"]) == CHOICES
        assert worker["best_value"] is not None

    trials = [
        e for e in events if e["type"] == "progress" and e["metrics"].get("trial") is not None
    ]
    assert sorted(e["metrics"]["trial"] for e in trials) == list(range(10))
    assert {e["index"] for e in trials} == {0, 1}
    for event in trials:
        assert {"value", "best_value", "pruned", "complete", "state"} <= set(event["metrics"])
        assert event["total"] == 10

    # one merged result: the best over both workers' trials, every trial counted once
    values = [e["metrics"]["value"] for e in trials if e["metrics"]["state"] == "complete"]
    best = max(values) if result["direction"] == "maximize" else min(values)
    assert result["best_value"] == best
    best_event = next(e for e in trials if e["metrics"]["trial"] == result["best_trial"])
    assert best_event["metrics"]["value"] == best
    assert set(result["best_params"]) == CHOICES
    assert result["best_params"] in [w["best_params"] for w in workers if w["best_value"] == best]
    assert (result["trials_total"], result["trials_run"], result["trials_finished"]) == (10, 10, 10)
    assert result["complete"] + result["pruned"] + result["failed"] == 10
    assert result["complete"] == len(values)
    assert result["running"] == 0
    assert sorted(result["trial_numbers"]) == list(range(10))


def worker_context(job_id: str, artifacts: Path, redis_url: str) -> TaskContext:
    """Worker 0's context, as the runtime makes it, for a kind run in this process."""
    return TaskContext(
        job_id=job_id,
        index=0,
        artifacts_root=artifacts,
        reporter=ProgressReporter(None, job_id=job_id),
        redis_url=redis_url,
    )


def test_a_worker_that_comes_back_fails_its_stale_trial(redis_url: str, tmp_path: Path) -> None:
    job_id = "hpo-stale-0001"
    journal = RedisJournal(patient_client(redis_url), job_id=job_id, writer=writer_id(0))
    study = optuna.create_study(
        study_name=f"kubetask-{job_id}", storage=optuna.storages.journal.JournalStorage(journal)
    )
    # worker 0 took a ticket and started a trial, then its pod died
    RedisBudget(redis_url, job_id=job_id, writer=writer_id(0), total=3).take()
    study.ask().set_user_attr("worker", 0)

    context = worker_context(job_id, tmp_path, redis_url)
    result = run(HpoParams.model_validate({**SMALL, "n_trials": 3}), context)
    assert result["stale_trials_failed"] == 1
    assert (result["trials_run"], result["trials_total"]) == (2, 3)
    assert result["failed"] == 1
    assert result["trial_numbers"] == [1, 2]
    with redis.Redis.from_url(redis_url) as client:
        names = list(client.scan_iter(match=f"{keys.PREFIX}:optuna:{job_id}:*"))
        assert len(names) == 3  # the journal, its writers, the tickets
        assert all(0 < client.ttl(name) <= OUTCOME_TTL_S for name in names)


def test_racing_workers_take_exactly_n_tickets(redis_url: str) -> None:
    budgets = [
        RedisBudget(redis_url, job_id="race-0001", writer=writer_id(0), total=20) for _ in range(8)
    ]
    taken: list[bool] = []
    lock = threading.Lock()

    def worker(budget: RedisBudget) -> None:
        for _ in range(10):
            got = budget.take()
            with lock:
                taken.append(got)

    threads = [threading.Thread(target=worker, args=(b,)) for b in budgets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 20
    assert len(taken) == 80
    for budget in budgets:
        budget.close()
    with redis.Redis.from_url(redis_url) as client:
        names: Any = sorted(client.keys(f"{keys.PREFIX}:optuna:race-0001*"))
        assert names == sorted(
            name.encode()
            for name in (keys.study_tickets("race-0001"), keys.study_writers("race-0001"))
        )


def test_a_study_whose_trials_all_fail_fails_its_worker(redis_url: str, tmp_path: Path) -> None:
    """batch_size 1 through a cnn1d that narrows its signals to 1 value: each trial fails
    alone (as a diverged one does) and the study goes on to its budget (it failed the whole
    job, exit 1); with no trial complete, the worker fails for good (nothing for a chained
    job to use; its retry would find the budget spent)."""
    context = worker_context("hpo-cannot-0001", tmp_path, redis_url)
    space = {"models": ["cnn1d"], "width": [2], "depth": [11, 11], "batch_size": [1, 1]}
    params = HpoParams.model_validate({**SMALL, "n_trials": 2, "search": space})
    with pytest.raises(TaskError, match=r"no trial of the study completed \(2 failed\)") as e:
        run(params, context)
    assert e.value.permanent
    trials = optuna.load_study(
        study_name="kubetask-hpo-cannot-0001", storage=open_storage(context, 2)[0]
    ).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
