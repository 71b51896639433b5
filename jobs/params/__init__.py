"""Each task kind's params model. Light (pydantic only), so the API can validate requests
and publish JSON schemas without importing torch or sdv."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from kubetask.params import Params as Params  # the base lives in the core (kubetask/params)
from kubetask.params.refs import output_ref


class FaultClass(StrEnum):
    NORMAL = "normal"
    IMBALANCE = "imbalance"
    MISALIGNMENT = "misalignment"
    LOOSENESS = "looseness"
    BEARING_OUTER = "bearing_outer"
    BEARING_INNER = "bearing_inner"


# numpy and Optuna take seeds below 2**32, and a study's worker i uses seed + i: below 2**31
MAX_SEED = 2**31 - 1


class DatagenParams(Params):
    """Synthetic vibration signals of a rotating machine, labelled by fault class."""

    n_per_class: int = Field(40, ge=1, le=100_000, description="Signals per fault class.")
    length: int = Field(1024, ge=64, le=1_048_576, description="Samples per signal.")
    sample_rate: float = Field(12_000.0, gt=0, le=1_000_000, description="Hz.")
    rotation_hz: float = Field(29.5, gt=0, le=1_000, description="Shaft speed in Hz.")
    noise: float = Field(0.3, ge=0, le=10, description="Noise std relative to a unit tone.")
    classes: list[FaultClass] = Field(default_factory=lambda: list(FaultClass), min_length=2)
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _below_nyquist(self) -> Self:
        # The highest component modelled is the bearing resonance at sample_rate / 4 and the
        # 10th shaft harmonic; both must sit below the Nyquist frequency.
        if 10 * self.rotation_hz >= self.sample_rate / 2:
            raise ValueError("rotation_hz is too high for sample_rate (need 20 x rotation_hz)")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self


class NoopParams(Params):
    """Reports progress and nothing else; can be told to fail, to try retries and errors."""

    steps: int = Field(0, ge=0, le=1_000_000)
    step_s: float = Field(0.0, ge=0, le=3600)
    fail: Literal["exception", "memory", "missing-file", "exit"] | None = None
    fail_message: str = Field("failure requested by params", max_length=1000)
    fail_attempts: int | None = Field(
        None, ge=1, description="Fail only the first N attempts (default: every attempt)."
    )
    exit_code: int = Field(3, ge=1, le=255, description="Exit code when fail='exit'.")
    payload: str = Field(
        "", max_length=1_000_000, description="Carried and counted (large params)."
    )


# -- ML kinds ---------------------------------------------------------------------------------

MACHINE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # a label, kept short and plain
ModelKind = Literal["mlp", "cnn1d"]
Pooling = Literal["max", "avg", "none"]


def _fewer_signals() -> DatagenParams:
    """`datagen`'s default signals (length, sample rate, classes), fewer of them."""
    return DatagenParams(n_per_class=24)


class ConvLayer(Params):
    """One block of a `cnn1d`: Conv1d ('same' padding), BatchNorm, ReLU, then pooling by 2."""

    channels: int = Field(ge=1, le=4096)
    kernel_size: int = Field(ge=1, le=255, description="Odd, so the padding keeps the length.")
    pooling: Pooling = Field("max", description="Halve the length by max or average, or not.")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd")
        return value


class TrainParams(Params):
    """A machine-fault classifier (MLP or 1-D CNN) trained on a `datagen` dataset."""

    dataset: str | None = output_ref(
        output="dataset",
        kinds=("datagen", "mat-import"),
        default=None,
        description="dataset.npz relative to the artifact store (e.g. '<job id>/dataset.npz'). "
        "None: generate one from `datagen` first.",
    )
    datagen: DatagenParams = Field(
        default_factory=_fewer_signals,
        description="The dataset generated on the fly when `dataset` is not given (shaped as "
        "`datagen`'s defaults: length, sample rate, classes), saved as this job's "
        "`dataset.npz`.",
    )
    model: ModelKind = "cnn1d"
    features: Literal["spectrum", "raw"] = Field(
        "spectrum", description="Log-magnitude spectrum of each signal, or the raw signal."
    )
    width: int = Field(32, ge=2, le=4096, description="Hidden units (mlp) or channels (cnn1d).")
    depth: int = Field(3, ge=1, le=12, description="Hidden layers (mlp) or conv blocks (cnn1d).")
    architecture: list[ConvLayer] | None = Field(
        None,
        min_length=1,
        max_length=12,
        description="cnn1d only: one entry per conv block (e.g. a `nas` job's best), in place "
        "of `width` x `depth` blocks with kernel 7 and max pooling.",
        exclude_if=lambda value: value is None,  # so params without one dump as they always did
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lr: float = Field(3e-3, gt=0.0, le=1.0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0)
    batch_size: int = Field(32, ge=1, le=65_536)
    epochs: int = Field(8, ge=1, le=10_000)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when a GPU is present, else the CPU."
    )
    amp: bool = Field(True, description="Mixed precision (float16 autocast) on CUDA.")
    threads: int = Field(
        0, ge=0, le=1024, description="CPU threads for torch; 0: the container's CPU quota."
    )

    @model_validator(mode="after")
    def _architecture_is_a_cnn(self) -> Self:
        if self.architecture is not None and self.model != "cnn1d":
            raise ValueError("architecture describes a cnn1d: set model='cnn1d' or leave it out")
        return self


def _all_models() -> list[ModelKind]:
    return ["mlp", "cnn1d"]


class SearchSpace(Params):
    """What `hpo` samples for each trial; the rest of the trial's params come from `train`."""

    models: list[ModelKind] = Field(default_factory=_all_models, min_length=1)
    lr: tuple[float, float] = Field((1e-4, 3e-2), description="Log-uniform range.")
    width: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    depth: tuple[int, int] = (1, 3)
    dropout: tuple[float, float] = (0.0, 0.5)
    batch_size: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        low, high = self.lr
        if not 0 < low <= high <= 1:
            raise ValueError("lr must be (low, high) with 0 < low <= high <= 1")
        if not 1 <= self.depth[0] <= self.depth[1] <= 12:
            raise ValueError("depth must be (low, high) with 1 <= low <= high <= 12")
        if not 0 <= self.dropout[0] <= self.dropout[1] < 1:
            raise ValueError("dropout must be (low, high) with 0 <= low <= high < 1")
        if any(not 2 <= w <= 4096 for w in self.width):
            raise ValueError("width choices must lie in [2, 4096]")
        if any(not 1 <= b <= 65_536 for b in self.batch_size):
            raise ValueError("batch_size choices must lie in [1, 65536]")
        return self


def _short_trials() -> TrainParams:
    return TrainParams(epochs=3)


class StudyParams(Params):
    """What every Optuna study kind (`hpo`, `nas`) takes: trials, objective, pruning, seed."""

    n_trials: int = Field(8, ge=1, le=10_000, description="Trials in total, over all workers.")
    metric: Literal["val_loss", "val_accuracy"] = Field(
        "val_loss",
        description="Minimized (val_loss) or maximized (val_accuracy). A trial's value is "
        "this metric at the epoch `train` keeps as its model (the best val_accuracy, the "
        "earlier on a tie), so `best_params` trained again give that very figure, with "
        "as many `threads` (a different count sums floats in another order: a close "
        "figure; 0 takes the CPUs the task is given, which differ between a study's "
        "workers and a lone `train`).",
    )
    startup_trials: int = Field(
        2, ge=0, le=1000, description="Trials finished before the median pruner prunes."
    )
    warmup_epochs: int = Field(1, ge=0, le=1000, description="Epochs a trial runs unpruned.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Sampler seed (worker i uses seed + i).")
    train: TrainParams = Field(
        default_factory=_short_trials, description="Each trial's `train` params."
    )


class HpoParams(StudyParams):
    """An Optuna study over `train`'s search space, shared by every worker of the job."""

    train: TrainParams = Field(
        default_factory=_short_trials,
        description="Each trial's params before the search space's choices (data, epochs...).",
    )
    search: SearchSpace = Field(default_factory=SearchSpace)

    @model_validator(mode="after")
    def _no_fixed_architecture(self) -> Self:
        if self.train.architecture is not None:
            raise ValueError("hpo searches width and depth: leave train.architecture out")
        return self


class GanSeedParams(Params):
    """Realistic seed sensor data for one machine, to fit its synthesizer on."""

    machine_id: str = Field("machine-1", pattern=MACHINE_ID)
    rows: int = Field(400, ge=20, le=10_000_000)
    fault_rate: float = Field(0.15, ge=0.0, le=1.0, description="Share of rows with a fault.")
    seed: int = Field(0, ge=0, le=MAX_SEED)


def _seed_ref(*, default_from: str | None = None, description: str) -> Any:
    return output_ref(
        output="seed",
        kinds=("gan-seed",),
        default=None,
        default_from=default_from,
        description=description,
    )


class GanTrainParams(Params):
    """An SDV synthesizer (TVAE or CTGAN) fitted on one machine's seed data."""

    dataset: str | None = _seed_ref(
        description="The seed data (seed.csv) fitted on. None: this job makes its own as "
        "`gan-seed` does with its defaults (for `machine_id`), saved as its `seed.csv`."
    )
    machine_id: str = Field(
        "machine-1",
        pattern=MACHINE_ID,
        description="A label reported in the result; the machine whose data is generated when "
        "`dataset` is not given.",
    )
    synthesizer: Literal["tvae", "ctgan"] = "tvae"
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(100, ge=10, le=100_000, description="A multiple of 10 (CTGAN's pac).")
    hidden: int = Field(64, ge=8, le=4096, description="Units per hidden layer.")
    layers: int = Field(2, ge=1, le=8, description="Hidden layers (encoder/decoder or G/D).")
    embedding_dim: int = Field(32, ge=2, le=1024)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    cuda: bool = Field(True, description="Use a GPU when one is present.")

    @field_validator("batch_size")
    @classmethod
    def _pac(cls, value: int) -> int:
        if value % 10:
            raise ValueError("must be a multiple of 10 (CTGAN's pac)")
        return value


class GanGenerateParams(Params):
    """Train/val/test synthetic datasets sampled from one machine's fitted synthesizer."""

    model: str = output_ref(
        output="synthesizer",
        kinds=("gan-train",),
        description="The fitted synthesizer (synthesizer.pkl).",
        outputs_only=True,
    )
    dataset: str | None = _seed_ref(
        default_from="model",
        description="The real data the quality score compares the train split with. Left out "
        "with `model` a gan-train job's: the seed data it was fitted on, filled in at submit.",
    )
    machine_id: str = Field("machine-1", pattern=MACHINE_ID, description="A label.")
    train_rows: int = Field(300, ge=1, le=10_000_000)
    val_rows: int = Field(100, ge=0, le=10_000_000)
    test_rows: int = Field(100, ge=0, le=10_000_000)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    quality: bool = Field(
        True, description="Score the train split against the seed data (`dataset`)."
    )
