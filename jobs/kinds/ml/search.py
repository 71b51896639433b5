"""`hpo`'s search space over `train`'s params, and the study's shared trial budget.

The budget makes `n_trials` exact across workers: each worker takes a ticket (an atomic
Redis INCR) before each trial and stops once the tickets are gone, so N workers racing for
the last trial start exactly one. Counting the study's trials before each one would let two
workers both see n-1 and both start one."""

from __future__ import annotations

from typing import Protocol

import optuna
import redis
from optuna.trial import TrialState

from jobs.params import SearchSpace, TrainParams
from kubetask import keys

journal_prefix = keys.optuna_journal
tickets_key = keys.optuna_tickets


def expire_study(url: str, job_id: str, ttl_s: int) -> int:
    """Give every key of the job's study (journal and tickets) a time to live, as the job's
    own records have; a later worker of the same job sets it again. The number of keys."""
    with redis.Redis.from_url(url) as client:
        names = list(client.scan_iter(match=f"{journal_prefix(job_id)}:*", count=1000))
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.expire(name, ttl_s)
            pipe.execute()
    return len(names)


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


class RedisBudget:
    """Tickets counted in Redis, shared by every worker of the job (and its retries)."""

    def __init__(self, url: str, *, key: str, total: int) -> None:
        self._client = redis.Redis.from_url(url)
        self._key = key
        self._total = total

    def take(self) -> bool:
        return int(self._client.incr(self._key)) <= self._total

    def close(self) -> None:
        self._client.close()


class LocalBudget:
    """Tickets for a single worker with an in-memory study (no Redis)."""

    def __init__(self, *, total: int) -> None:
        self._left = total

    def take(self) -> bool:
        self._left -= 1
        return self._left >= 0

    def close(self) -> None:
        pass
