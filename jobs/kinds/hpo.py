"""`hpo`: an Optuna study over `train`'s search space, with median pruning on each trial's
per-epoch validation metric.

The study lives in Redis (`JournalStorage` + `JournalRedisBackend`, keyed by the job id), so
every worker of an Indexed Job (or the local backend's processes) joins the same study and
they stop together once `n_trials` trials exist in total. A worker that dies loses nothing
but its running trial: when it comes back (a retry of its index) it marks that trial failed
and goes on. Its keys expire with the job's outcome (7 days after a worker's end). Without a
Redis URL (`python -m jobs hpo` by hand) the study is in memory.

Each finished trial is a progress event (`stage="trial"`: trial, state, value, best_value,
complete, pruned, failed). Each worker's result holds the study's best params and value at
its end and the trials it ran itself.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import optuna
import torch
from optuna.storages.journal import JournalRedisBackend, JournalStorage
from pydantic import JsonValue

from jobs.context import TaskContext
from jobs.kinds.ml.data import Prepared, configure_torch, obtain_dataset, pick_device, prepare
from jobs.kinds.ml.loop import (
    Tensors,
    build_trainer,
    evaluate,
    model_spec,
    to_device,
    train_epoch,
)
from jobs.kinds.ml.search import (
    LocalBudget,
    RedisBudget,
    expire_study,
    journal_prefix,
    state_counts,
    suggest,
    tickets_key,
)
from jobs.params import HpoParams
from jobs.publisher import OUTCOME_TTL_S

WORKER_ATTR = "worker"  # the completion index that runs a trial


def open_storage(
    context: TaskContext, n_trials: int
) -> tuple[optuna.storages.BaseStorage, RedisBudget | LocalBudget]:
    """The study's storage and trial budget: in Redis when the task has a URL."""
    if context.redis_url is None:
        return optuna.storages.InMemoryStorage(), LocalBudget(total=n_trials)
    with warnings.catch_warnings():  # JournalRedisBackend is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        backend = JournalRedisBackend(context.redis_url, prefix=journal_prefix(context.job_id))
    budget = RedisBudget(context.redis_url, key=tickets_key(context.job_id), total=n_trials)
    return JournalStorage(backend), budget


def fail_stale_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, worker: int
) -> int:
    """Trials this worker's earlier attempt left running (it died) are failed now."""
    study_id = storage.get_study_id_from_name(study.study_name)
    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if t.user_attrs.get(WORKER_ATTR) == worker
    ]
    for trial in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    return len(stale)


@dataclass
class Worker:
    """This worker's side of the study: trials on its copy of the data, each one reported."""

    params: HpoParams
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
        """Train the trial's params, reporting each epoch's metric to the pruner."""
        trial.set_user_attr(WORKER_ATTR, self.context.index)
        params = suggest(trial, self.params.search, self.params.train)
        trainer = build_trainer(params, model_spec(params, self.data), self.device)
        value = math.nan
        for epoch in range(1, params.epochs + 1):
            train_epoch(trainer, self.train_set)
            value = metric_value(evaluate(trainer, self.val_set), self.maximize)
            if not math.isfinite(value):
                break  # diverged: a nan objective fails the trial
            trial.report(value, epoch)
            message = f"trial {trial.number}: epoch {epoch}/{params.epochs}"
            self.context.reporter.update(
                self.finished, self.params.n_trials, stage="trial", message=message
            )
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        return value

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


def run(params: HpoParams, context: TaskContext) -> dict[str, JsonValue]:
    device = pick_device(params.train.device)
    configure_torch(threads=params.train.threads, seed=params.seed, device=device)
    context.reporter.update(0, params.n_trials, stage="data", message="preparing the dataset")
    data = prepare(obtain_dataset(params.train, context), params.train)
    worker = Worker(
        params=params,
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
    return summary(study, params, context, ran=worker.ran, stale=stale)


def metric_value(val: tuple[float, float], maximize: bool) -> float:
    """The objective from (val_loss, val_accuracy)."""
    return val[1] if maximize else val[0]


def best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no complete trial yet
        return None


def summary(
    study: optuna.Study, params: HpoParams, context: TaskContext, *, ran: list[int], stale: int
) -> dict[str, JsonValue]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    params_json: dict[str, JsonValue] = dict(best.params) if best else {}
    numbers: list[JsonValue] = list(ran[:100])
    return {
        "study": study.study_name,
        "storage": "memory" if context.redis_url is None else "redis",
        "worker": context.index,
        "metric": params.metric,
        "direction": study.direction.name.lower(),
        "best_params": params_json,
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "trials_run": len(ran),
        "trial_numbers": numbers,
        "trials_total": len(trials),
        "stale_trials_failed": stale,
        **state_counts(trials),
    }
