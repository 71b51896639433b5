"""The data a classifier trains on: a `datagen` dataset (read from the artifact store or
generated on the fly), turned into features, split into train and validation sets and
standardized with the training set's statistics. Also where the task runs: the device and
the CPU threads its container may use."""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.datagen import generate
from kubetask.jobs.params import TrainParams

Array = NDArray[np.float32]
Labels = NDArray[np.int64]


@dataclass(frozen=True)
class Segments:
    """Where each signal was cut from, when it is a window of a longer recording
    (`mat-import`): the recording's number and the window's first sample in it."""

    recording: NDArray[np.int64]
    start: NDArray[np.int64]


@dataclass(frozen=True)
class Dataset:
    """Signals [n, length], labels [n], class names, as `datagen` writes them."""

    x: Array
    y: Labels
    classes: list[str]
    source: str | None  # the artifact path it came from; None when generated
    segments: Segments | None = None  # None: independent signals (datagen)


@dataclass(frozen=True)
class Prepared:
    """Features split and standardized; `mean`/`std` go with the model for inference."""

    x_train: Array
    y_train: Labels
    x_val: Array
    y_val: Labels
    val_rows: NDArray[np.int64]  # the validation signals' rows in the dataset
    n: int  # the dataset's signals
    mean: Array
    std: Array
    classes: list[str]
    source: str | None


def load_dataset(path: Path, relative: str) -> Dataset:
    """A `dataset.npz` from the store; a missing or unreadable file is the user's to fix."""
    if not path.is_file():
        raise TaskError(
            f"dataset {relative!r} not found in the artifact store",
            suggestion="Run a `datagen` job first and pass its result's `dataset` path "
            "(e.g. '<job id>/dataset.npz'), or leave `dataset` out to generate one.",
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            x = np.asarray(npz["X"], dtype=np.float32)
            y = np.asarray(npz["y"], dtype=np.int64)
            classes = [str(c) for c in npz["classes"]]
            segments = read_segments(npz, len(y))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise TaskError(
            f"dataset {relative!r} is not a datagen dataset: {exc}",
            suggestion="Pass the `dataset` path from a `datagen` job's result.",
            permanent=not isinstance(exc, OSError),  # a read that failed may work next time
        ) from exc
    if x.ndim != 2 or len(x) != len(y):
        raise TaskError(
            f"dataset {relative!r} has X {x.shape} and y {y.shape}: need [n, length]",
            permanent=True,
        )
    if len(x) < 2:
        raise TaskError(
            f"dataset {relative!r} holds {len(x)} signal(s): at least 2 are needed",
            suggestion="Import more recordings, or shorter segments (mat-import's "
            "`segment_length`, `overlap`), or generate more with datagen's `n_per_class`.",
            permanent=True,
        )
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise TaskError(
            f"dataset {relative!r} has labels y from {y.min()} to {y.max()}, but "
            f"{len(classes)} classes: each label is an index into `classes`",
            permanent=True,
        )
    if not np.isfinite(x).all():
        raise TaskError(
            f"dataset {relative!r} has {int((~np.isfinite(x)).sum())} values in X that are "
            "NaN or infinite: nothing can be learnt from them",
            permanent=True,
        )
    return Dataset(x=x, y=y, classes=classes, source=relative, segments=segments)


def read_segments(npz: Any, n: int) -> Segments | None:
    """The `recording` and `start` arrays `mat-import` writes (None without them)."""
    if "recording" not in npz or "start" not in npz:
        return None
    segments = Segments(
        recording=np.asarray(npz["recording"], dtype=np.int64),
        start=np.asarray(npz["start"], dtype=np.int64),
    )
    if segments.recording.shape != (n,) or segments.start.shape != (n,):
        raise ValueError(f"'recording' and 'start' need one entry per signal ({n})")
    return segments


def require_classes(dataset: Dataset) -> None:
    """TaskError (permanent) unless the dataset's signals are of two classes or more: with
    one, a classifier learns nothing and scores a perfect 1.0."""
    present = sorted({dataset.classes[label] for label in np.unique(dataset.y)})
    if len(present) < 2:
        raise TaskError(
            f"dataset {dataset.source or '(generated)'!r} holds signals of one class only "
            f"({', '.join(present) or 'none'}): a classifier needs two or more",
            suggestion="Import recordings of two or more classes (mat-import labels them by "
            "folder, file name or a variable), or generate them with datagen's `classes`.",
            permanent=True,
        )


def obtain_dataset(params: TrainParams, context: TaskContext | None) -> Dataset:
    """The dataset named by `params.dataset`, or one generated from `params.datagen`."""
    if params.dataset is None:
        x, y = generate(params.datagen, context)
        return Dataset(x=x, y=y, classes=[c.value for c in params.datagen.classes], source=None)
    if context is None:
        raise ValueError("a dataset path needs a task context to resolve it")
    context.reporter.skip("generate")  # none in this run
    return load_dataset(context.resolve(params.dataset), params.dataset)


def to_features(x: Array, kind: str) -> Array:
    """'spectrum': log(1 + |FFT|) of the Hann-windowed signal; 'raw': the signal itself."""
    if kind == "raw":
        return x
    window = np.hanning(x.shape[1]).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(x * window, axis=1))
    return np.log1p(spectrum).astype(np.float32)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[NDArray[np.int64], ...]:
    """A seeded shuffle cut into (train, val), each with at least one sample."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, math.floor(n * val_fraction)), n - 1)
    return order[n_val:], order[:n_val]


def split_by_recording(
    segments: Segments, length: int, val_fraction: float
) -> tuple[NDArray[np.int64], ...]:
    """(train, val) with no sample in both: in each recording, its last `val_fraction` of
    windows in time are held out (rounded; a recording too short to spare one trains
    whole), and the training windows are those that end before the first held-out one
    starts (windows that overlap it are left out). A shuffled split of overlapping windows
    would score the model on samples it trained on."""
    train: list[int] = []
    val: list[int] = []
    for recording in np.unique(segments.recording):
        rows = np.flatnonzero(segments.recording == recording)
        rows = rows[np.argsort(segments.start[rows], kind="stable")]
        n_val = min(math.floor(len(rows) * val_fraction + 0.5), len(rows) - 1)
        if n_val == 0:
            train += rows.tolist()
            continue
        held = rows[-n_val:]
        first = segments.start[held[0]]
        val += held.tolist()
        train += [int(r) for r in rows[:-n_val] if segments.start[r] + length <= first]
    if not train or not val:
        raise TaskError(
            f"the recordings are too short to hold out {val_fraction:g} of their windows "
            "for validation with no sample in both sets",
            suggestion="Import longer recordings or more of them, with less `overlap`, or "
            "change `val_fraction`.",
            permanent=True,
        )
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def split_rows(dataset: Dataset, params: TrainParams) -> tuple[NDArray[np.int64], ...]:
    """Windows of recordings split by time (`split_by_recording`), independent signals by
    a seeded shuffle (`split_indices`)."""
    if dataset.segments is None:
        return split_indices(len(dataset.y), params.val_fraction, params.seed)
    return split_by_recording(dataset.segments, dataset.x.shape[1], params.val_fraction)


def prepare(dataset: Dataset, params: TrainParams) -> Prepared:
    """Features, the split, and standardization by the training set alone."""
    features = to_features(dataset.x, params.features)
    train, val = split_rows(dataset, params)
    mean = features[train].mean(axis=0)
    std = features[train].std(axis=0) + np.float32(1e-6)
    return Prepared(
        x_train=(features[train] - mean) / std,
        y_train=dataset.y[train],
        x_val=(features[val] - mean) / std,
        y_val=dataset.y[val],
        val_rows=np.asarray(val, dtype=np.int64),
        n=len(dataset.y),
        mean=mean,
        std=std,
        classes=dataset.classes,
        source=dataset.source,
    )


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TaskError(
                "device='cuda' but no GPU is visible to this task",
                suggestion="Request a GPU in `resources` (gpu: 1) or use device='auto'.",
            )
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_quota(cpu_max: str | None, available: int) -> int:
    """CPUs the container may use: its cgroup v2 `cpu.max` quota ('max 100000' or
    '200000 100000'), capped by the CPUs it is allowed to run on."""
    if cpu_max:
        quota, _, period = cpu_max.strip().partition(" ")
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            return max(1, min(available, math.ceil(int(quota) / int(period))))
    return max(1, available)


def default_threads() -> int:
    """The container's CPU quota, or fewer where `OMP_NUM_THREADS` says so (the local
    backend sets it to each worker's share of the machine)."""
    try:
        cpu_max: str | None = Path("/sys/fs/cgroup/cpu.max").read_text()
    except OSError:
        cpu_max = None
    quota = cpu_quota(cpu_max, len(os.sched_getaffinity(0)))
    asked = os.environ.get("OMP_NUM_THREADS", "")
    return min(quota, int(asked)) if asked.isdigit() and int(asked) > 0 else quota


def configure_torch(*, threads: int, seed: int, device: torch.device) -> None:
    """Threads within the container's quota, seeded RNGs, reproducible cuDNN kernels."""
    torch.set_num_threads(threads or default_threads())
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
