"""`gan-seed`: seed sensor data for one machine, `gan/<machine_id>/seed.csv`, which
`gan-train` fits its synthesizer on. See jobs/kinds/ml/seed_data.py for what it holds."""

from __future__ import annotations

from pydantic import JsonValue

from jobs.context import TaskContext
from jobs.kinds.ml.gan_store import MachineFiles, write_atomically
from jobs.kinds.ml.seed_data import CATEGORICAL, NUMERIC, machine_profile, seed_frame
from jobs.params import GanSeedParams


def run(params: GanSeedParams, context: TaskContext) -> dict[str, JsonValue]:
    files = MachineFiles(context.artifacts_root, params.machine_id)
    context.reporter.update(0, 2, stage="generate", message=f"{params.rows} readings")
    frame = seed_frame(
        params.machine_id, rows=params.rows, fault_rate=params.fault_rate, seed=params.seed
    )
    context.reporter.update(1, 2, stage="save", message=files.relative(files.seed))
    write_atomically(files.seed, lambda path: frame.to_csv(path, index=False))
    context.reporter.update(2, 2, stage="save", message="saved")
    faults = frame["fault_label"].value_counts().sort_index()
    return {
        "machine_id": params.machine_id,
        "seed": files.relative(files.seed),
        "rows": len(frame),
        "numeric_columns": list(NUMERIC),
        "categorical_columns": list(CATEGORICAL),
        "fault_counts": {str(k): int(v) for k, v in faults.items()},
        "profile": {k: round(v, 3) for k, v in vars(machine_profile(params.machine_id)).items()},
    }
