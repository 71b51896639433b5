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
class Dataset:
    """Signals [n, length], labels [n], class names, as `datagen` writes them."""

    x: Array
    y: Labels
    classes: list[str]
    source: str | None  # the artifact path it came from; None when generated


@dataclass(frozen=True)
class Prepared:
    """Features split and standardized; `mean`/`std` go with the model for inference."""

    x_train: Array
    y_train: Labels
    x_val: Array
    y_val: Labels
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
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise TaskError(
            f"dataset {relative!r} is not a datagen dataset: {exc}",
            suggestion="Pass the `dataset` path from a `datagen` job's result.",
            permanent=not isinstance(exc, OSError),  # a read that failed may work next time
        ) from exc
    if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise TaskError(
            f"dataset {relative!r} has X {x.shape} and y {y.shape}: need [n, length]",
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
    return Dataset(x=x, y=y, classes=classes, source=relative)


def obtain_dataset(params: TrainParams, context: TaskContext | None) -> Dataset:
    """The dataset named by `params.dataset`, or one generated from `params.datagen`."""
    if params.dataset is None:
        x, y = generate(params.datagen, context)
        return Dataset(x=x, y=y, classes=[c.value for c in params.datagen.classes], source=None)
    if context is None:
        raise ValueError("a dataset path needs a task context to resolve it")
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


def prepare(dataset: Dataset, params: TrainParams) -> Prepared:
    """Features, the seeded split, and standardization by the training set alone."""
    features = to_features(dataset.x, params.features)
    train, val = split_indices(len(features), params.val_fraction, params.seed)
    mean = features[train].mean(axis=0)
    std = features[train].std(axis=0) + np.float32(1e-6)
    return Prepared(
        x_train=(features[train] - mean) / std,
        y_train=dataset.y[train],
        x_val=(features[val] - mean) / std,
        y_val=dataset.y[val],
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
