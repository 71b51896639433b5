"""The parallel-trial machinery of `hpo` and `nas`: an Optuna study shared by every worker
of a job, its trial budget, the worker that trains each trial's `train` params with median
pruning, and `hpo`'s search space over those params (`nas` brings its own).

The study lives in Redis (`JournalStorage` over study.py's `RedisJournal`, keyed by the job
id), so every worker of an Indexed Job (or the local backend's processes) joins the same
study, and a worker waits for Redis while it is away (restarting). A worker that dies loses
nothing but its running trial: when it comes back (a retry of its index) it marks that
trial failed and goes on. Without a Redis URL the study is in memory.

The budget makes `n_trials` exact across workers: each worker takes a ticket (an atomic
Redis INCR) before each trial and stops once the tickets are gone, so N workers racing for
the last trial start exactly one. Counting the study's trials before each one would let two
workers both see n-1 and both start one."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import optuna
import torch
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.ml.best_epoch import improves
from kubetask.jobs.kinds.ml.data import (
    Prepared,
    configure_torch,
    obtain_dataset,
    pick_device,
    prepare,
)
from kubetask.jobs.kinds.ml.loop import (
    Tensors,
    build_trainer,
    evaluate,
    model_spec,
    to_device,
    train_epoch,
)
from kubetask.jobs.kinds.ml.models import count_parameters
from kubetask.jobs.kinds.ml.study import RedisBudget, expire_study, journal_for, writer_id
from kubetask.jobs.params import SearchSpace, StudyParams, TrainParams
from kubetask.jobs.patient_redis import patient_client
from kubetask.jobs.publisher import OUTCOME_TTL_S

WORKER_ATTR = "worker"  # the completion index that runs a trial
METRICS_ATTR = "metrics"  # a complete trial's kept epoch, its validation metrics, size

log = logging.getLogger("kubetask.task")


def suggest(trial: optuna.trial.BaseTrial, space: SearchSpace, base: TrainParams) -> TrainParams:
    """The trial's choices over `base`, validated as `train` params."""
    choices = {
        "model": trial.suggest_categorical("model", list(space.models)),
        "lr": trial.suggest_float("lr", space.lr[0], space.lr[1], log=True),
        "width": trial.suggest_categorical("width", list(space.width)),
        "depth": trial.suggest_int("depth", space.depth[0], space.depth[1]),
        "dropout": trial.suggest_float("dropout", space.dropout[0], space.dropout[1]),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_size)),
    }
    return TrainParams.model_validate({**base.model_dump(), **choices})


def state_counts(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """How many trials are complete, pruned, failed and running."""
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
    }
    for trial in trials:
        if trial.state in names:
            counts[names[trial.state]] += 1
    return counts


class TrialBudget(Protocol):
    def take(self) -> bool:
        """Claim one trial; False once `n_trials` have been claimed in total."""
        ...


class LocalBudget:
    """Tickets for a single worker with an in-memory study (no Redis)."""

    def __init__(self, *, total: int) -> None:
        self._left = total

    def take(self) -> bool:
        self._left -= 1
        return self._left >= 0

    def close(self) -> None:
        pass


# -- the study and its workers ----------------------------------------------------------------

Suggest = Callable[[optuna.Trial], TrainParams]  # a trial's choices as `train` params


def open_storage(
    context: TaskContext, n_trials: int
) -> tuple[optuna.storages.BaseStorage, RedisBudget | LocalBudget]:
    """The study's storage and trial budget: in Redis when the task has a URL."""
    if context.redis_url is None:
        return optuna.storages.InMemoryStorage(), LocalBudget(total=n_trials)
    writer = writer_id(context.index)
    client = patient_client(context.redis_url)
    journal = journal_for(client, job_id=context.job_id, writer=writer)
    budget = RedisBudget(context.redis_url, job_id=context.job_id, writer=writer, total=n_trials)
    return JournalStorage(journal), budget


def fail_stale_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, worker: int
) -> int:
    """Trials this worker's earlier attempt left running (it died) are failed now."""
    study_id = storage.get_study_id_from_name(study.study_name)
    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get(WORKER_ATTR) == worker
    ]
    for trial in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return len(stale)


def metric_value(val: tuple[float, float], maximize: bool) -> float:
    """The objective from (val_loss, val_accuracy)."""
    return val[1] if maximize else val[0]


def best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no complete trial yet
        return None


@dataclass
class Worker:
    """This worker's side of the study: trials on its copy of the data, each one reported."""

    params: StudyParams
    suggest: Suggest
    context: TaskContext
    data: Prepared
    train_set: Tensors
    val_set: Tensors
    device: torch.device
    ran: list[int] = field(default_factory=list)  # the trials this worker ran
    finished: int = 0  # trials finished in the whole study, as last seen

    @property
    def maximize(self) -> bool:
        return self.params.metric == "val_accuracy"

    def objective(self, trial: optuna.Trial) -> float:
        """Train the trial's params, reporting each epoch's metric to the pruner; the trial's
        value and metrics are those of the epoch `train` keeps as its `model.pt`."""
        trial.set_user_attr(WORKER_ATTR, self.context.index)
        params = self.suggest(trial)
        try:
            trainer = build_trainer(params, model_spec(params, self.data), self.device)
        except TaskError as exc:  # a choice that can never train: that trial fails, not all
            if not exc.permanent:
                raise
            log.warning("trial %d cannot train: %s", trial.number, exc)
            return math.nan
        kept: tuple[int, tuple[float, float]] | None = None  # the epoch `train` would keep
        for epoch in range(1, params.epochs + 1):
            train_epoch(trainer, self.train_set)
            val = evaluate(trainer, self.val_set)
            value = metric_value(val, self.maximize)
            if not math.isfinite(value):
                return math.nan  # diverged: a nan objective fails the trial
            if improves(val[1], kept[1][1] if kept else None):
                kept = (epoch, val)
            trial.report(value, epoch)
            message = f"trial {trial.number}: epoch {epoch}/{params.epochs}"
            self.context.reporter.update(
                self.finished, self.params.n_trials, stage="trial", message=message
            )
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        if kept is None:
            return math.nan
        best_epoch, val = kept
        metrics: dict[str, JsonValue] = {
            "epoch": best_epoch,
            "val_loss": round(val[0], 6),
            "val_accuracy": round(val[1], 6),
            "parameters": count_parameters(trainer.model),
        }
        trial.set_user_attr(METRICS_ATTR, metrics)
        return metric_value(val, self.maximize)

    def on_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """One progress event per finished trial, with the study's counts so far."""
        self.ran.append(trial.number)
        trials = study.get_trials(deepcopy=False)
        counts = state_counts(trials)
        self.finished = len(trials) - counts["running"]
        self.context.reporter.update(
            self.finished,
            self.params.n_trials,
            stage="trial",
            message=f"trial {trial.number} {trial.state.name.lower()}",
            trial=trial.number,
            state=trial.state.name.lower(),
            value=trial.value,
            best_value=best_value(study),
            **counts,
        )


@dataclass(frozen=True)
class StudyRun:
    """A worker's view of the study once the budget is spent."""

    study: optuna.Study
    ran: list[int]  # the trials this worker ran
    stale: int  # trials of this worker's earlier attempt, failed now


def run_study(params: StudyParams, context: TaskContext, *, suggest: Suggest) -> StudyRun:
    """Join the job's study and run trials until its budget is spent; then the study's keys
    expire with the job's outcome (7 days after a worker's end)."""
    device = pick_device(params.train.device)
    configure_torch(threads=params.train.threads, seed=params.seed, device=device)
    context.reporter.update(0, params.n_trials, stage="data", message="preparing the dataset")
    data = prepare(obtain_dataset(params.train, context), params.train)
    worker = Worker(
        params=params,
        suggest=suggest,
        context=context,
        data=data,
        train_set=to_device(data.x_train, data.y_train, device),
        val_set=to_device(data.x_val, data.y_val, device),
        device=device,
    )
    storage, budget = open_storage(context, params.n_trials)
    study = optuna.create_study(
        study_name=f"kubetask-{context.job_id}",
        storage=storage,
        load_if_exists=True,
        direction="maximize" if worker.maximize else "minimize",
        sampler=optuna.samplers.TPESampler(seed=params.seed + context.index),
        pruner=optuna.pruners.MedianPruner(
            # steps are epochs from 1; the earliest prune is at step == n_warmup_steps
            n_startup_trials=params.startup_trials,
            n_warmup_steps=params.warmup_epochs + 1,
        ),
    )
    stale = fail_stale_trials(study, storage, context.index)
    try:
        while budget.take():
            study.optimize(worker.objective, n_trials=1, callbacks=[worker.on_trial])
    finally:
        budget.close()
    if context.redis_url is not None:
        expire_study(context.redis_url, context.job_id, OUTCOME_TTL_S)
    require_a_result(study)
    return StudyRun(study=study, ran=worker.ran, stale=stale)


def require_a_result(study: optuna.Study) -> None:
    """A study whose trials have all ended and none completed has no best to give: that
    worker fails (permanently: its retry would find the budget spent), rather than succeed
    with nothing for a chained job to use. While another worker's trial runs, it may yet."""
    counts = state_counts(study.get_trials(deepcopy=False))
    if counts["complete"] or counts["running"]:
        return
    ended = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    raise TaskError(
        f"no trial of the study completed ({ended or 'none ran'})",
        suggestion="the trials' progress events and the task's log say why each one ended",
        permanent=True,
    )


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if complete else None


def study_summary(run: StudyRun, params: StudyParams, context: TaskContext) -> dict[str, JsonValue]:
    """What every worker's result says of the study (the kind adds its best choices)."""
    study = run.study
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    numbers: list[JsonValue] = list(run.ran[:100])
    return {
        "study": study.study_name,
        "storage": "memory" if context.redis_url is None else "redis",
        "worker": context.index,
        "metric": params.metric,
        "direction": study.direction.name.lower(),
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "trials_run": len(run.ran),
        "trial_numbers": numbers,
        "trials_total": len(trials),
        # grows as the study goes on: the part with the most saw the study last
        "trials_finished": sum(t.state.is_finished() for t in trials),
        "stale_trials_failed": run.stale,
        **state_counts(trials),
    }
