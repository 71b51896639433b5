"""`gan-train`: an SDV synthesizer (TVAE or CTGAN) fitted on one machine's seed data.

Reads the seed data its `dataset` names (a `gan-seed` job's `seed.csv`; none: it makes its
own, as gan-seed does, into its folder), detects the table's metadata, fits, and reports
every epoch's loss as it finishes (`stage="train"`; see ml/sdv_progress.py for how, since SDV
has no callback). Writes `synthesizer.pkl` (its model on the CPU, so any node can sample from
it), `metadata.json` and `losses.csv` in its own folder; the result names them and the seed
data (`seed`), which `gan-generate` (`model`: `job:<id>`) scores its samples against.

SDV (and torch) take seconds to import: they are imported once the inputs are known to be
there, so that a missing seed file fails at once.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.ml.gan_store import TABLE, read_seed, require
from kubetask.jobs.kinds.ml.sdv_progress import EpochLoss, LossWatcher, move_model_to_cpu
from kubetask.jobs.kinds.ml.seed_data import seed_frame
from kubetask.jobs.params import GanSeedParams, GanTrainParams
from kubetask.jobs.writes import write_atomically


def prepare_torch(seed: int) -> None:
    """Seeded random streams, and CPU threads within the container's quota (torch would
    otherwise start one per host core)."""
    import torch

    from kubetask.jobs.kinds.ml.data import default_threads

    torch.set_num_threads(default_threads())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def quiet_library_logs() -> None:
    """SDV logs every fit, save and sample as a dict, rdt a line per column: keep warnings."""
    for name in ("SingleTableSynthesizer", "sdv", "rdt"):
        logging.getLogger(name).setLevel(logging.WARNING)


def use_gpu(params: GanTrainParams) -> bool:
    import torch

    return params.cuda and torch.cuda.is_available()


def build_synthesizer(params: GanTrainParams, metadata: Any) -> Any:
    from sdv.single_table import CTGANSynthesizer, TVAESynthesizer

    hidden = (params.hidden,) * params.layers
    common = {
        "epochs": params.epochs,
        "batch_size": params.batch_size,
        "embedding_dim": params.embedding_dim,
        "enable_gpu": use_gpu(params),
    }
    if params.synthesizer == "tvae":
        return TVAESynthesizer(metadata, compress_dims=hidden, decompress_dims=hidden, **common)
    return CTGANSynthesizer(metadata, generator_dim=hidden, discriminator_dim=hidden, **common)


def seed_data(params: GanTrainParams, context: TaskContext) -> Path:
    """The seed data `params.dataset` names, or seed data made for `params.machine_id` with
    gan-seed's defaults and written as this job's `seed.csv`."""
    if params.dataset is not None:
        return require(context, params.dataset, what="seed data", producer="gan-seed")
    defaults = GanSeedParams(machine_id=params.machine_id)
    frame = seed_frame(
        params.machine_id, rows=defaults.rows, fault_rate=defaults.fault_rate, seed=defaults.seed
    )
    path = context.artifact("seed.csv")
    write_atomically(path, lambda partial: frame.to_csv(partial, index=False))
    return path


def run(params: GanTrainParams, context: TaskContext) -> dict[str, JsonValue]:
    quiet_library_logs()
    seed_path = seed_data(params, context)
    from sdv.metadata import Metadata

    reporter = context.reporter
    reporter.update(0, params.epochs, stage="load", message=context.relative(seed_path))
    data = read_seed(seed_path, context.relative(seed_path))
    metadata = Metadata.detect_from_dataframes({TABLE: data})
    metadata_path = context.artifact("metadata.json")
    write_atomically(metadata_path, lambda path: metadata.save_to_json(str(path)))

    prepare_torch(params.seed)
    synthesizer = build_synthesizer(params, metadata)
    reporter.update(0, params.epochs, stage="preprocess", message="fitting the transformers")

    def on_epoch(loss: EpochLoss) -> None:
        message = f"epoch {loss.epoch}/{params.epochs}"
        reporter.update(loss.epoch, params.epochs, stage="train", message=message, **loss.metrics())

    started = time.perf_counter()
    with LossWatcher(synthesizer, on_epoch) as watcher:
        try:
            synthesizer.fit({TABLE: data})
        except ValueError as exc:  # the data: the same again on a retry
            raise TaskError(
                f"the synthesizer cannot learn from {context.relative(seed_path)}: {exc}",
                suggestion="Check the seed data: one type of value per column, finite "
                "numbers of a sensible size, more than one row.",
                permanent=True,
            ) from exc
    fit_s = time.perf_counter() - started

    reporter.update(params.epochs, params.epochs, stage="save", message="saving the synthesizer")
    move_model_to_cpu(synthesizer)
    model_path, losses_path = context.artifact("synthesizer.pkl"), context.artifact("losses.csv")
    write_atomically(model_path, lambda path: synthesizer.save(str(path)))
    losses = pd.DataFrame([vars(loss) for loss in watcher.losses])
    write_atomically(losses_path, lambda path: losses.to_csv(path, index=False))
    final = watcher.losses[-1] if watcher.losses else None
    return {
        "machine_id": params.machine_id,
        "seed": context.relative(seed_path),
        "synthesizer": context.relative(model_path),
        "metadata": context.relative(metadata_path),
        "losses": context.relative(losses_path),
        "kind": params.synthesizer,
        "device": "cuda" if use_gpu(params) else "cpu",
        "rows": len(data),
        "columns": len(data.columns),
        "epochs": params.epochs,
        "epochs_reported": len(watcher.losses),
        "final": final.metrics() if final else None,
        "losses_unavailable": watcher.broken,
        "fit_s": round(fit_s, 3),
    }
