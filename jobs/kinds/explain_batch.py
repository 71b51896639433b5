"""`explain-batch`: `explain` for many signals, shared out among the job's workers.

With `parallelism`/`completions` > 1 (an Indexed Job, or the local backend's processes),
each worker claims the next unexplained signal in Redis until none is left
(`kubetask.jobs.kinds.ml.shares`), so the workers split the list whatever their number, and a
retried worker redoes its own claims. A worker claims as many signals at a time as fill one
forward/backward pass (`batch_size` rows of `steps + 1` each), in one round trip to Redis,
and explains them together.
Each worker writes its own part,
`explanations-<index>.npz` (the `explain` arrays, one row per signal it explained) and
`explanations-<index>.png` (overlays of its first `plots` signals); its result says where
they are and which rows they hold; the job's one result merges the parts' figures over
every signal (jobs/specs.py). Progress is aggregate: `current` counts the signals
explained by all the workers together, `total` is how many there are.
"""

from __future__ import annotations

from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.explain import (
    check_rows,
    explain_rows,
    load_subject,
    overlay_row,
    save_arrays,
    signal_summary,
)
from kubetask.jobs.kinds.ml.attribution import Attribution
from kubetask.jobs.kinds.ml.attribution_plot import render_overlay
from kubetask.jobs.kinds.ml.shares import LocalShares, RedisShares, my_share
from kubetask.jobs.params.explain import ExplainBatchParams
from kubetask.jobs.publisher import OUTCOME_TTL_S

ROWS_LISTED = 50  # rows a result lists (the part holds them all)


def run(params: ExplainBatchParams, context: TaskContext) -> dict[str, JsonValue]:
    reporter = context.reporter
    reporter.update(0, None, stage="load", message="loading the model and the signals")
    subject = load_subject(params, context)
    rows = params.indices if params.indices is not None else list(range(len(subject.signals)))
    check_rows(rows, subject, "indices")

    shares = (
        LocalShares()
        if context.redis_url is None
        else RedisShares(context.redis_url, job_id=context.job_id, worker=context.index)
    )
    mine: list[int] = []
    attributions: list[Attribution] = []
    try:
        per_pass = max(1, params.batch_size // (params.steps + 1))
        for positions in my_share(shares, len(rows), per_pass):
            group = [rows[position] for position in positions]
            explained = explain_rows(subject, group, params)
            mine += group
            attributions += explained
            done = shares.finish(positions)
            target = subject.classes[explained[-1].target]
            message = f"signal {group[-1]}: {target} ({len(mine)} by worker {context.index})"
            reporter.update(done, len(rows), stage="explain", message=message)
        done = shares.done()
        if isinstance(shares, RedisShares):
            shares.expire(OUTCOME_TTL_S)
    finally:
        shares.close()

    message = f"writing the part of worker {context.index} ({len(mine)} signals)"
    reporter.update(done, len(rows), stage="save", message=message)
    part = context.artifact(f"explanations-{context.index}.npz")
    save_arrays(part, subject, mine, attributions)
    overlay: str | None = None
    drawn = [overlay_row(subject, r, a) for r, a in zip(mine, attributions, strict=True)]
    if drawn[: params.plots]:
        path = context.artifact(f"explanations-{context.index}.png")
        render_overlay(path, drawn[: params.plots], sample_rate=subject.sample_rate)
        overlay = context.relative(path)

    summaries = [signal_summary(subject, r, a) for r, a in zip(mine, attributions, strict=True)]
    gaps = [a.relative_gap for a in attributions]
    agree = [s["predicted"] == s["label"] for s in summaries]
    listed: list[JsonValue] = list(mine[:ROWS_LISTED])
    return {
        "model": params.model,
        "dataset": subject.dataset,
        "steps": params.steps,
        "rule": params.rule.value,
        "target": params.target,
        "worker": context.index,
        "storage": "memory" if context.redis_url is None else "redis",
        "part": context.relative(part),
        "overlay": overlay,
        "parts": context.relative(context.output_dir) + "/explanations-*.npz",
        "signals_total": len(rows),
        "signals_explained": len(mine),
        "rows": listed,
        "rows_truncated": len(listed) < len(mine),
        "accuracy": round(sum(agree) / len(agree), 6) if agree else None,
        "mean_relative_gap": round(sum(gaps) / len(gaps), 6) if gaps else None,
        "max_relative_gap": round(max(gaps), 6) if gaps else None,
    }
