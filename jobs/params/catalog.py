"""Params of the workflow kinds around a trained model: `mat-import`, `features`, `evaluate`,
`export` and `test`. Inputs made by other jobs are `output_ref` fields, so they take an
artifact path or `job:<id>` (resolved at submit time)."""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from kubetask.jobs.params import MAX_SEED, DatagenParams, Params
from kubetask.params.refs import artifact_path, output_ref

DATASET_KINDS = ("datagen", "mat-import")
Device = Literal["auto", "cpu", "cuda"]


def _held_out() -> DatagenParams:
    """`datagen`'s (and `train`'s) default signals, fewer of them, with another seed."""
    return DatagenParams(n_per_class=16, seed=1)


def _dataset_ref() -> Any:
    return output_ref(
        output="dataset",
        kinds=DATASET_KINDS,
        default=None,
        description="The signals (dataset.npz). None: generate them from `datagen`.",
    )


def _model_data_ref() -> Any:
    return output_ref(
        output="dataset",
        kinds=DATASET_KINDS,
        default=None,
        default_from="model",
        description="The signals (dataset.npz). Left out (and `datagen` too) with `model` a "
        "train job's ('job:<id>' or its model path): the dataset that model was trained on, "
        "filled in at submit. Otherwise None: generate them from `datagen`. A dataset whose "
        "signal length, sample rate or classes the model cannot take is refused at submit when "
        "both are known.",
    )


def _model_ref() -> Any:
    return output_ref(output="model", kinds=("train",), description="The trained model (model.pt).")


class ModelOnData(Params):
    """What the kinds that run a trained model on a dataset share."""

    model: str = _model_ref()
    dataset: str | None = _model_data_ref()
    datagen: DatagenParams = Field(
        default_factory=_held_out,
        description="The signals generated when `dataset` is not given and not filled in "
        "from the model's job (by default shaped like datagen's and train's defaults, with "
        "another seed).",
    )
    batch_size: int = Field(256, ge=1, le=65_536)
    device: Device = Field("auto", description="auto: CUDA when a GPU is present, else the CPU.")
    threads: int = Field(
        0, ge=0, le=1024, description="CPU threads for torch; 0: the container's CPU quota."
    )


class MatImportParams(Params):
    """MATLAB .mat files (v5 and older via scipy, v7.3 via h5py) of vibration signals, cut
    into fixed-length segments and labelled, as a dataset `train` reads."""

    files: str | None = artifact_path(
        default=None,
        glob=True,
        description="A file, a folder (every .mat file below it) or a glob ('**' for any "
        "depth), relative to the artifact store: under your tenant's uploads or one of its "
        "jobs' folders, e.g. 'uploads/<tenant>/cwru/**/*.mat' (no wildcards in those first "
        "segments). None: write a few example files (v5 and v7.3, from datagen) into this "
        "job's folder and import those.",
    )
    variable: str | None = Field(
        None,
        max_length=200,
        description="The variable holding the signal: a name, or a regular expression the "
        "name must match in full (e.g. '.*DE_time'). None: the largest numeric array.",
    )
    label_from: Literal["folder", "filename", "variable"] = Field(
        "folder",
        description="Where each file's class comes from: its folder's name, its file name "
        "(see label_pattern) or a text variable in the file (label_variable).",
    )
    label_pattern: str | None = Field(
        None,
        max_length=200,
        description="For label_from='filename': a regular expression searched in the file "
        "name (without .mat) whose first group is the class. None: the whole name.",
    )
    label_variable: str = Field("label", max_length=200)
    segment_length: int = Field(1024, ge=16, le=1_048_576, description="Samples per signal.")
    overlap: float = Field(0.0, ge=0.0, lt=1.0, description="Overlap of consecutive segments.")
    max_segments_per_file: int | None = Field(None, ge=1, le=1_000_000)
    recordings_in: Literal["auto", "rows", "columns"] = Field(
        "auto",
        description="How a matrix signal holds its recordings: one per row, one per column, "
        "or auto: time along the longer axis (a file with more recordings than samples in "
        "each needs 'rows' or 'columns'). A vector is one recording.",
    )
    sample_rate: float | None = Field(
        None,
        gt=0,
        le=10_000_000,
        description="Hz. None: read from a scalar variable 'fs', 'Fs', 'sample_rate' or "
        "'sampling_rate' in the files.",
    )
    on_error: Literal["skip", "fail"] = Field(
        "skip",
        description="A malformed file: skipped (and listed in the result), or the job fails.",
    )
    max_files: int = Field(10_000, ge=1, le=1_000_000)

    @field_validator("variable", "label_pattern")
    @classmethod
    def _a_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            except (OverflowError, RecursionError) as exc:  # a repeat or nesting past re's
                raise ValueError(f"not a regular expression Python can compile: {exc}") from None
        return value


class FeaturesParams(Params):
    """Per-signal features of a dataset into a table: time domain (RMS, kurtosis, skewness,
    crest factor, peak-to-peak) and frequency domain (FFT band energies, envelope-spectrum
    peaks)."""

    dataset: str | None = _dataset_ref()
    datagen: DatagenParams = Field(
        default_factory=lambda: DatagenParams(n_per_class=8, length=1024),
        description="The signals generated when `dataset` is not given.",
    )
    bands: int = Field(8, ge=1, le=512, description="Equal-width FFT bands from 0 to Nyquist.")
    envelope_peaks: int = Field(
        3, ge=0, le=32, description="Largest peaks of the envelope spectrum to report."
    )
    envelope_band: tuple[float, float] | None = Field(
        None,
        description="Band-pass (Hz) before demodulation, e.g. around a bearing resonance. "
        "None: the whole band.",
    )
    envelope_max_hz: float | None = Field(
        None, gt=0, description="Highest envelope-spectrum frequency searched for peaks."
    )

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.envelope_band is not None:
            low, high = self.envelope_band
            if not 0 <= low < high:
                raise ValueError("envelope_band must be (low, high) with 0 <= low < high")
        return self


class EvaluateParams(ModelOnData):
    """A trained model on a dataset: accuracy, per-class precision/recall/F1 and the
    confusion matrix (JSON and a PNG plot)."""


def _both_formats() -> list[Literal["torchscript", "onnx"]]:
    return ["torchscript", "onnx"]


class ExportParams(ModelOnData):
    """A trained model for deployment: raw signals -> logits as TorchScript and ONNX, each
    checked against PyTorch; optional dynamic int8 quantization with its accuracy delta."""

    formats: list[Literal["torchscript", "onnx"]] = Field(
        default_factory=_both_formats, min_length=1
    )
    tolerance: float = Field(
        1e-4,
        gt=0,
        le=1.0,
        description="Largest difference allowed between an export's logits and PyTorch's, "
        "relative to the largest PyTorch logit (at least 1).",
    )
    check_samples: int = Field(64, ge=1, le=100_000, description="Signals the checks run on.")
    quantize: bool = Field(False, description="Also a dynamic int8 TorchScript model.")
    latency_runs: int = Field(50, ge=1, le=100_000, description="Single-sample timings.")
    opset: int = Field(17, ge=13, le=20, description="ONNX opset.")

    @field_validator("formats")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("formats must not repeat")
        return value


class RobustnessParams(ModelOnData):
    """Robustness of a trained model: accuracy under noise at several SNRs, time shifts and
    amplitude scaling, as a degradation table and a plot."""

    snr_db: list[float] = Field(
        default_factory=lambda: [30.0, 20.0, 10.0, 5.0, 0.0],
        max_length=64,
        description="White noise added at these signal-to-noise ratios (dB).",
    )
    shifts: list[float] = Field(
        default_factory=lambda: [0.1, 0.25, 0.5],
        max_length=64,
        description="Circular time shifts, as fractions of the signal length.",
    )
    scales: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 1.25, 2.0],
        max_length=64,
        description="Amplitude scale factors.",
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seeds the noise.")

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if any(not -60 <= s <= 120 for s in self.snr_db):
            raise ValueError("snr_db values must lie in [-60, 120]")
        if any(not 0 <= s <= 1 for s in self.shifts):
            raise ValueError("shifts must lie in [0, 1]")
        if any(not 0 < s <= 1000 for s in self.scales):
            raise ValueError("scales must lie in (0, 1000]")
        if not (self.snr_db or self.shifts or self.scales):
            raise ValueError("give at least one of snr_db, shifts, scales")
        return self
