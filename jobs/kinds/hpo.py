"""`hpo`: an Optuna study over `train`'s search space, with median pruning on each trial's
per-epoch validation metric.

The study lives in Redis (`JournalStorage` over one list, keyed by the job id: ml/study.py),
so every worker of an Indexed Job (or the local backend's processes) joins the same study
and they stop together once `n_trials` trials exist in total; a worker waits for Redis while
it is away (restarting). A worker that dies loses nothing but its running trial: when it
comes back (a retry of its index) it marks that trial failed and goes on. Its keys expire
with the job's outcome (7 days after a worker's end), and go with the job's record (expiry,
purge) if that comes first, a stopped worker's too. Without a Redis URL (`python -m
kubetask.jobs hpo` by hand) the study is in memory. The machinery, shared with `nas`, is in
`kubetask.jobs.kinds.ml.search`.

Each finished trial is a progress event (`stage="trial"`: trial, state, value, best_value,
complete, pruned, failed). Each worker's result holds the study's best params and value at
its end and the trials it ran itself; the job's one result merges them (jobs/specs.py: the
best over every worker, the study's counts as the worker that ended last saw them).
"""

from __future__ import annotations

from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.ml.search import best_trial, run_study, study_summary, suggest
from kubetask.jobs.params import HpoParams


def run(params: HpoParams, context: TaskContext) -> dict[str, JsonValue]:
    study_run = run_study(
        params, context, suggest=lambda trial: suggest(trial, params.search, params.train)
    )
    best = best_trial(study_run.study)
    best_params: dict[str, JsonValue] = dict(best.params) if best else {}
    return {**study_summary(study_run, params, context), "best_params": best_params}
