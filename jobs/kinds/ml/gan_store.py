"""The GAN kinds' files: each job writes its own under its folder in the artifact store
(`seed.csv` from gan-seed; `synthesizer.pkl`, `metadata.json`, `losses.csv` from gan-train;
the CSV splits from gan-generate) and reads its inputs by the paths its params name, so
nothing is replaced in place and a tenant reads only its own. Files are written atomically,
so a job reading them never sees half a file; a missing input is an error that names the
kind producing it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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


MIN_SEED_ROWS = 2  # what a synthesizer's transformers (a Gaussian mixture per column) fit


def read_seed(path: Path, relative: str) -> pd.DataFrame:
    """The seed data in `path` (`relative`: as the params name it); a permanent TaskError,
    with what to do, for a file no synthesizer can learn from or score against: not a
    table, or fewer than MIN_SEED_ROWS rows."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TaskError(
            f"seed data {relative} is not a CSV table: {exc}",
            suggestion="Pass the `seed` path of a gan-seed job's result, or a CSV with a "
            "header row and a row per reading.",
            permanent=True,
        ) from exc
    if len(frame) < MIN_SEED_ROWS:
        raise TaskError(
            f"seed data {relative} has {len(frame)} row(s): at least {MIN_SEED_ROWS} are "
            "needed to fit a synthesizer or score one against",
            suggestion="Pass more rows (a gan-seed job makes them: `rows`).",
            permanent=True,
        )
    return frame
