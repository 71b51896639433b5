"""`gan-seed`: seed sensor data for one machine, `seed.csv` in the job's folder, which
`gan-train` fits its synthesizer on (`dataset`: `job:<id>`). See jobs/kinds/ml/seed_data.py
for what it holds."""

from __future__ import annotations

from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds.ml.seed_data import CATEGORICAL, NUMERIC, machine_profile, seed_frame
from kubetask.jobs.params import GanSeedParams
from kubetask.jobs.writes import write_atomically


def run(params: GanSeedParams, context: TaskContext) -> dict[str, JsonValue]:
    path = context.artifact("seed.csv")
    context.reporter.update(0, 2, stage="generate", message=f"{params.rows} readings")
    frame = seed_frame(
        params.machine_id, rows=params.rows, fault_rate=params.fault_rate, seed=params.seed
    )
    context.reporter.update(1, 2, stage="save", message=context.relative(path))
    write_atomically(path, lambda partial: frame.to_csv(partial, index=False))
    context.reporter.update(2, 2, stage="save", message="saved")
    faults = frame["fault_label"].value_counts().sort_index()
    return {
        "machine_id": params.machine_id,
        "seed": context.relative(path),
        "rows": len(frame),
        "numeric_columns": list(NUMERIC),
        "categorical_columns": list(CATEGORICAL),
        "fault_counts": {str(k): int(v) for k, v in faults.items()},
        "profile": {k: round(v, 3) for k, v in vars(machine_profile(params.machine_id)).items()},
    }
