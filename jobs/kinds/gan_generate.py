"""`gan-generate`: train/val/test synthetic datasets from a fitted synthesizer (`model`: a
`gan-train` job's `synthesizer.pkl`), written as `train.csv`, `val.csv` and `test.csv` in the
job's artifacts, with a quality score: sdmetrics' QualityReport (column shapes and column-pair
trends) of the train split against the seed data (`dataset`; by default the one the
synthesizer was fitted on). SDV is
imported once the inputs are known to be there (see gan_train)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import InvalidParams, TaskError
from kubetask.jobs.kinds.gan_train import prepare_torch, quiet_library_logs
from kubetask.jobs.kinds.ml.gan_store import TABLE, read_seed, require
from kubetask.jobs.params import GanGenerateParams
from kubetask.jobs.writes import write_atomically
from kubetask.params.paths import UPLOADS, store_parts


def one_table(sampled: Any) -> pd.DataFrame:
    """SDV 2 samples a {table: frame} dict; older versions a frame."""
    if isinstance(sampled, dict):
        (frame,) = sampled.values()
        return frame
    assert isinstance(sampled, pd.DataFrame)
    return sampled


def csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        frame.to_csv(path, index=False)

    return write


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Any) -> dict[str, JsonValue]:
    from sdv.evaluation import evaluate_quality

    report = evaluate_quality({TABLE: real}, {TABLE: synthetic}, metadata, verbose=False)
    properties = report.get_properties()
    return {
        "quality_score": round(float(report.get_score()), 4),
        "quality_properties": {
            str(row.Property): round(float(row.Score), 4) for row in properties.itertuples()
        },
    }


def comparable(seed_path: Path, params: GanGenerateParams, synthesizer: Any) -> pd.DataFrame:
    """The real data the quality is scored against, checked before any row is sampled: a
    table of rows with the columns the synthesizer was fitted on (else a permanent
    TaskError: found after sampling, millions of rows were drawn for nothing)."""
    real = read_seed(seed_path, str(params.dataset))
    fitted = list(synthesizer.get_metadata().tables[TABLE].columns)
    if set(real.columns) != set(fitted):
        raise TaskError(
            f"dataset {params.dataset} has the columns {', '.join(map(str, real.columns))}; "
            f"the synthesizer was fitted on {', '.join(fitted)}",
            suggestion="Pass the seed data the gan-train job was fitted on (leave `dataset` "
            "out: it is filled in from `model`), or set quality=false.",
            permanent=True,
        )
    return real


def run(params: GanGenerateParams, context: TaskContext) -> dict[str, JsonValue]:
    quiet_library_logs()
    if store_parts(params.model)[0] == UPLOADS:  # the API refuses it at submit: a second line
        raise InvalidParams(
            "model: an upload is never unpickled (that would run its code): pass "
            "'job:<gan-train id>'"
        )
    model_path = require(context, params.model, what="fitted synthesizer", producer="gan-train")
    seed_path: Path | None = None
    if params.quality:
        if params.dataset is None:
            raise TaskError(
                "quality=true needs the real data to compare with, and `dataset` is not given",
                suggestion="Pass `model` as 'job:<gan-train id>' (its seed data is then used), "
                "or `dataset`, or set quality=false.",
                permanent=True,
            )
        seed_path = require(context, params.dataset, what="seed data", producer="gan-seed")
    splits = [
        (name, rows)
        for name, rows in (
            ("train", params.train_rows),
            ("val", params.val_rows),
            ("test", params.test_rows),
        )
        if rows > 0
    ]
    reporter = context.reporter  # each stage counts its own steps: the splits, one report
    reporter.update(0, 1, stage="load", message=params.model)
    from sdv.utils import load_synthesizer

    synthesizer = load_synthesizer(str(model_path))
    prepare_torch(params.seed)
    # its own generators: unseeded, SDV's `sample` seeds a loaded synthesizer with one fixed
    # value, so every job would draw the same rows whatever its seed
    synthesizer._set_random_state(params.seed)
    real = None if seed_path is None else comparable(seed_path, params, synthesizer)

    written: dict[str, JsonValue] = {}
    counts: dict[str, JsonValue] = {}
    frames: dict[str, pd.DataFrame] = {}
    reporter.update(1, 1, stage="load", message="synthesizer loaded")
    for step, (name, rows) in enumerate(splits, start=1):
        reporter.update(step - 1, len(splits), stage="sample", message=f"{name}: {rows} rows")
        frame = one_table(synthesizer.sample(rows))
        path = context.artifact(f"{name}.csv")
        write_atomically(path, csv_writer(frame))
        frames[name] = frame
        written[name] = context.relative(path)
        counts[name] = len(frame)
        written_rows = f"{name}: {len(frame)} rows written"
        reporter.update(step, len(splits), stage="sample", message=written_rows)

    result: dict[str, JsonValue] = {
        "machine_id": params.machine_id,
        "synthesizer": params.model,
        "dataset": params.dataset,
        "files": written,
        "rows": counts,
    }
    if real is not None:
        reporter.update(0, 1, stage="evaluate", message="quality report")
        result |= quality(real, frames["train"], synthesizer.get_metadata())
        reporter.update(1, 1, stage="evaluate", quality_score=result["quality_score"])
    return result
