"""The GAN kinds' files: each job writes its own under its folder in the artifact store
(`seed.csv` from gan-seed; `synthesizer.pkl`, `metadata.json`, `losses.csv` from gan-train;
the CSV splits from gan-generate) and reads its inputs by the paths its params name, so
nothing is replaced in place and a tenant reads only its own. Files are written atomically,
so a job reading them never sees half a file; a missing input is an error that names the
kind producing it."""

from __future__ import annotations

from pathlib import Path

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError

TABLE = "readings"  # the table name in the SDV metadata


def require(context: TaskContext, path: str, *, what: str, producer: str) -> Path:
    """The file `path` (relative to the store) names; a TaskError naming the kind that makes
    it when it is missing."""
    real = context.resolve(path)
    if real.is_file():
        return real
    raise TaskError(
        f"no {what}: {path} is missing from the artifact store",
        suggestion=f"Run a `{producer}` job first and pass 'job:<id>' of it.",
    )
