"""Inference with a model `train` saved (`model.pt`): loaded into an eval-mode network with
what it was trained with (spec, classes, feature transform, standardization), so that raw
signals give the same logits as in training.

Two ways in: `LoadedModel.logits(signals)` computes the features with numpy exactly as
`train` did (evaluation, testing); `LoadedModel.pipeline(length)` is one torch module from raw
signals [batch, length] to logits, differentiable through the feature transform (explanations)
and, built with `exportable=True`, with the spectrum as a DFT matrix product that TorchScript
and ONNX can carry (deployment).
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.datagen import generate
from kubetask.jobs.kinds.ml.data import (
    Array,
    Dataset,
    Labels,
    configure_torch,
    load_dataset,
    pick_device,
    to_features,
)
from kubetask.jobs.kinds.ml.models import ModelSpec, build_model
from kubetask.jobs.params.catalog import ModelOnData
from kubetask.params.paths import OutsideTheStore, store_parts

log = logging.getLogger("kubetask.task")

__all__ = [
    "Dataset",
    "LoadedModel",
    "SignalPipeline",
    "align_labels",
    "load_dataset",
    "load_model",
    "model_on_data",
    "open_dataset",
    "read_sample_rate",
]

OnBatch = Callable[[int, int], None]  # (batches done, batches in all)


def _hann(length: int) -> torch.Tensor:
    return torch.from_numpy(np.hanning(length).astype(np.float32))


def _dft_matrices(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of the real-input DFT as [length, length // 2 + 1] matrices."""
    k = np.outer(np.arange(length), np.arange(length // 2 + 1)) % length
    angle = 2 * np.pi * k / length
    return (
        torch.from_numpy(np.cos(angle).astype(np.float32)),
        torch.from_numpy(-np.sin(angle).astype(np.float32)),
    )


class SignalPipeline(nn.Module):
    """Raw signals [batch, length] -> logits: `train`'s feature transform (log(1 + |FFT|) of
    the Hann-windowed signal, or the signal itself), its standardization, then the network.
    `exportable`: the FFT as two matrix products (TorchScript/ONNX have no FFT operator)."""

    mean: torch.Tensor
    std: torch.Tensor
    window: torch.Tensor
    dft_real: torch.Tensor | None
    dft_imag: torch.Tensor | None

    def __init__(
        self,
        network: nn.Module,
        *,
        features: str,
        mean: Array,
        std: Array,
        length: int,
        exportable: bool = False,
    ) -> None:
        super().__init__()
        self.network = network
        self.spectrum = features == "spectrum"
        self.exportable = exportable
        self.length = length
        self.register_buffer("mean", torch.from_numpy(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("std", torch.from_numpy(np.asarray(std, dtype=np.float32)))
        self.register_buffer("window", _hann(length))
        real, imag = _dft_matrices(length) if self.spectrum and exportable else (None, None)
        self.register_buffer("dft_real", real)
        self.register_buffer("dft_imag", imag)

    def features(self, signals: torch.Tensor) -> torch.Tensor:
        """Standardized features, as the network saw them in training."""
        x = signals
        if self.spectrum:
            windowed = signals * self.window
            if self.dft_real is not None and self.dft_imag is not None:
                real, imag = windowed @ self.dft_real, windowed @ self.dft_imag
                x = torch.log1p(torch.sqrt(real * real + imag * imag))
            else:
                x = torch.log1p(torch.fft.rfft(windowed, dim=-1).abs())
        return (x - self.mean) / self.std

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.network(self.features(signals))
        return out


@dataclass(frozen=True)
class HeldOut:
    """The signals a model did not train on: `rows` of the dataset at `dataset` (its
    validation split, as `train` saved it), which had `n` signals."""

    dataset: str
    n: int
    rows: NDArray[np.int64]

    def of(self, path: str | None, data: Dataset) -> Dataset | None:
        """`data` cut to these rows when it is this very dataset (however either path is
        spelled: `id//file` is `id/file`); None when it is another."""
        if path is None or not _same_path(path, self.dataset) or len(data.y) != self.n:
            return None
        return replace(data, x=data.x[self.rows], y=data.y[self.rows], segments=None)


def _same_path(a: str, b: str) -> bool:
    try:
        return store_parts(a) == store_parts(b)  # (kubetask.storage's store_key: not in a task)
    except OutsideTheStore:
        return a == b


@dataclass(frozen=True)
class LoadedModel:
    """A `train` model in eval mode on `device`, with everything inference needs."""

    network: nn.Module  # standardized features -> logits
    spec: ModelSpec
    classes: list[str]
    features: str  # "spectrum" or "raw"
    mean: Array
    std: Array
    device: torch.device
    source: str  # the artifact path it was loaded from
    held_out: HeldOut | None = None  # None: a model saved before train recorded it
    sample_rate: float | None = None  # of its training signals; None: not recorded

    def signal_lengths(self) -> tuple[int, ...]:
        """The raw signal lengths it takes: its input length, or the lengths whose spectrum
        has as many bins as its input."""
        n = self.spec.input_length
        return (n,) if self.features == "raw" else (2 * (n - 1), 2 * (n - 1) + 1)

    def check_length(self, length: int, *, what: str = "the signals") -> None:
        if length not in self.signal_lengths():
            accepted = " or ".join(map(str, self.signal_lengths()))
            raise TaskError(
                f"model {self.source!r} takes signals of length {accepted}; "
                f"{what} have length {length}",
                suggestion="Use data made like the model's training data (the same `length` "
                "in datagen, or `segment_length` in mat-import).",
                permanent=True,
            )

    def check_rate(self, sample_rate: float | None, *, what: str = "the signals") -> None:
        """TaskError (permanent) when both rates are known and differ: a model scores
        signals of another rate as wrongly as signals of another length, silently."""
        if self.sample_rate is None or sample_rate is None:
            return
        if not math.isclose(self.sample_rate, sample_rate, rel_tol=1e-9):
            raise TaskError(
                f"model {self.source!r} was trained on signals sampled at "
                f"{self.sample_rate:g} Hz; {what} are sampled at {sample_rate:g} Hz",
                suggestion="Use data sampled as the model's training data (the same "
                "`sample_rate` in datagen or mat-import).",
                permanent=True,
            )

    def standardized(self, signals: Array) -> Array:
        """Features of raw signals [n, length], standardized, computed as `train` did."""
        self.check_length(signals.shape[1])
        return ((to_features(signals, self.features) - self.mean) / self.std).astype(np.float32)

    @torch.no_grad()
    def logits(
        self, signals: Array, *, batch_size: int = 256, on_batch: OnBatch | None = None
    ) -> NDArray[np.float32]:
        """Logits [n, n_classes] of raw signals [n, length], batch by batch."""
        features = self.standardized(signals)
        n_batches = max(1, -(-len(features) // batch_size))
        out = np.empty((len(features), len(self.classes)), dtype=np.float32)
        for number in range(n_batches):
            rows = slice(number * batch_size, (number + 1) * batch_size)
            batch = torch.from_numpy(features[rows]).to(self.device)
            out[rows] = self.network(batch).float().cpu().numpy()
            if on_batch is not None:
                on_batch(number + 1, n_batches)
        return out

    def pipeline(self, length: int, *, exportable: bool = False) -> SignalPipeline:
        """Raw signals of `length` -> logits, one eval-mode module on the model's device."""
        self.check_length(length)
        module = SignalPipeline(
            self.network,
            features=self.features,
            mean=self.mean,
            std=self.std,
            length=length,
            exportable=exportable,
        )
        return module.to(self.device).eval()


def load_model(path: Path, device: torch.device, *, relative: str | None = None) -> LoadedModel:
    """The `model.pt` at `path`; a missing or foreign file is the user's to fix."""
    name = relative or str(path)
    if not path.is_file():
        raise TaskError(
            f"model {name!r} not found in the artifact store",
            suggestion="Pass the `model` path from a `train` job's result, or 'job:<id>' of a "
            "succeeded train job.",
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        spec = ModelSpec(**state["spec"])  # a saved spec rebuilds itself (layers too)
        network = build_model(spec)
        network.load_state_dict(state["state_dict"])
        classes = [str(c) for c in state["classes"]]
        features = str(state["features"])
        mean = state["mean"].cpu().numpy().astype(np.float32)
        std = state["std"].cpu().numpy().astype(np.float32)
        held_out = read_held_out(state.get("held_out"))
        rate = state.get("sample_rate")
        sample_rate = float(rate) if isinstance(rate, int | float) else None
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, zipfile.BadZipFile) as exc:
        raise TaskError(
            f"model {name!r} is not a model saved by `train`: {exc}",
            suggestion="Pass the `model` path from a `train` job's result.",
            permanent=not isinstance(exc, OSError),  # a read that failed may work next time
        ) from exc
    network.to(device).eval()
    return LoadedModel(
        network=network,
        spec=spec,
        classes=classes,
        features=features,
        mean=mean,
        std=std,
        device=device,
        source=name,
        held_out=held_out,
        sample_rate=sample_rate,
    )


def read_held_out(saved: dict[str, Any] | None) -> HeldOut | None:
    if saved is None:
        return None
    rows = saved["rows"].cpu().numpy().astype(np.int64)
    return HeldOut(dataset=str(saved["dataset"]), n=int(saved["n"]), rows=rows)


def open_dataset(context: TaskContext, path: str) -> Dataset:
    """A dataset.npz (`datagen` or `mat-import`) named in params, relative to the store: no
    signals are generated in this run."""
    context.reporter.skip("generate")
    return load_dataset(context.resolve(path), path)


def read_sample_rate(path: Path) -> float | None:
    """The sample rate a dataset.npz records, if any."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return float(npz["sample_rate"]) if "sample_rate" in npz.files else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None


def align_labels(dataset: Dataset, classes: list[str]) -> Labels:
    """The dataset's labels as indices into the model's `classes` (matched by name, so a
    dataset with fewer classes or another order still lines up)."""
    unknown = sorted(set(dataset.classes) - set(classes))
    if unknown:
        raise TaskError(
            f"dataset {dataset.source!r} has classes the model does not know: {unknown}",
            suggestion=f"The model's classes are {classes}; use a dataset of those classes.",
            permanent=True,
        )
    mapping = np.array([classes.index(name) for name in dataset.classes], dtype=np.int64)
    return mapping[dataset.y]


@dataclass(frozen=True)
class ModelData:
    """A loaded model with the signals to run it on and their labels in its class order."""

    model: LoadedModel
    data: Dataset
    labels: Labels
    sample_rate: float | None
    rows: str = "all"  # or "held-out": the model's own data, but only what it did not train on


def model_on_data(
    params: ModelOnData, context: TaskContext, *, held_out: bool = False
) -> ModelData:
    """The setup of the kinds that run a model on a dataset: the device and threads, the
    model, and the dataset named in params (or generated from `params.datagen`). `held_out`
    (the kinds that score the model): on the very data the model was trained on, only the
    signals it held out from training."""
    device = pick_device(params.device)
    configure_torch(threads=params.threads, seed=0, device=device)
    context.reporter.update(0, 1, stage="load", message=f"loading {params.model}")
    model = load_model(context.resolve(params.model), device, relative=params.model)
    if params.dataset is None:
        x, y = generate(params.datagen, context)
        data = Dataset(x=x, y=y, classes=[c.value for c in params.datagen.classes], source=None)
        sample_rate: float | None = params.datagen.sample_rate
    else:
        data = open_dataset(context, params.dataset)
        sample_rate = read_sample_rate(context.resolve(params.dataset))
    what = f"dataset {params.dataset!r}" if params.dataset else "the generated signals"
    model.check_length(data.x.shape[1], what=what)
    model.check_rate(sample_rate, what=what)
    rows = "all"
    if held_out and model.held_out is not None:
        unseen = model.held_out.of(params.dataset, data)
        data, rows = (data, rows) if unseen is None else (unseen, "held-out")
    elif held_out:  # saved before models kept their held-out rows: say what it scores
        log.warning(
            "%s does not say which rows it held out from training (a model saved by an "
            "older train): scoring every row, training rows included if this is its own "
            "dataset (rows: all)",
            params.model,
        )
    return ModelData(model, data, align_labels(data, model.classes), sample_rate, rows)
