"""The built-in kinds' specs, each named by one entry point of the `kubetask.kinds` group
(pyproject.toml), e.g. `datagen = "kubetask.jobs.specs:DATAGEN"`. Light: params models only,
no torch or sdv (a runner is imported by name, in the task process)."""

from __future__ import annotations

from kubetask.jobs.params import (
    DatagenParams,
    GanGenerateParams,
    GanSeedParams,
    GanTrainParams,
    HpoParams,
    NoopParams,
    TrainParams,
)
from kubetask.jobs.params.catalog import (
    EvaluateParams,
    ExportParams,
    FeaturesParams,
    MatImportParams,
    RobustnessParams,
)
from kubetask.jobs.params.explain import ExplainBatchParams, ExplainParams
from kubetask.jobs.params.nas import NasParams
from kubetask.kinds import KindSpec, Merge, Pick

# What a torch optimizer imports as it is made (torch._dynamo: 1-3 s): a zygote imports it ahead
OPTIMIZER_MODULES = ("torch._dynamo",)
# What the GAN runners import when they run (SDV: 3-10 s)
SDV_MODULES = ("sdv.single_table", "sdv.metadata", "sdv.evaluation", "sdv.utils")

# The study's own figures, as the worker that ended last saw them (the most trials finished):
# summed over the workers, every worker's view of the shared study would count trials twice.
STUDY_COUNTS = Pick(
    by="trials_finished",
    keys=("trials_total", "trials_finished", "complete", "pruned", "failed", "running"),
)
STUDY_SAME = ("study", "storage", "metric", "direction")
STUDY_RAN = ("trials_run", "stale_trials_failed")  # each worker's own trials: summed

DATAGEN = KindSpec(
    name="datagen",
    description="Synthetic vibration signals for machine-fault classification.",
    params=DatagenParams,
    runner="kubetask.jobs.kinds.datagen:run",
    image="trainer",
    light=True,
    stages=(("generate", 9.0), ("save", 1.0)),
    outputs=("dataset",),
)

NOOP = KindSpec(
    name="noop",
    description="Reports progress and exits; can fail on request (retries, errors).",
    params=NoopParams,
    runner="kubetask.jobs.kinds.noop:run",
    image="trainer",
    light=True,
    splits=True,
)

TRAIN = KindSpec(
    name="train",
    description="A PyTorch machine-fault classifier (MLP or 1-D CNN); resumes from "
    "its last checkpoint when retried.",
    params=TrainParams,
    runner="kubetask.jobs.kinds.train:run",
    image="trainer",
    warm=OPTIMIZER_MODULES,
    stages=(("data", 1.0), ("generate", 4.0), ("train", 15.0)),
    outputs=("model", "last_model", "checkpoint", "dataset"),
)

HPO = KindSpec(
    name="hpo",
    description="An Optuna study over train's search space with pruning, shared in "
    "Redis by all the job's workers (parallelism/completions).",
    params=HpoParams,
    runner="kubetask.jobs.kinds.hpo:run",
    image="trainer",
    warm=OPTIMIZER_MODULES,
    stages=(("data", 1.0), ("generate", 4.0), ("trial", 15.0)),
    splits=True,
    merge=Merge(
        same=STUDY_SAME,
        picks=(
            Pick(
                by="best_value",
                direction="direction",
                keys=("best_value", "best_trial", "best_params"),
            ),
            STUDY_COUNTS,
        ),
        sums=STUDY_RAN,
        concat=("trial_numbers",),
    ),
)

EXPLAIN = KindSpec(
    name="explain",
    description="Integrated gradients and saliency of a trained model for one "
    "signal, over its time samples: arrays and a PNG overlay.",
    params=ExplainParams,
    runner="kubetask.jobs.kinds.explain:run",
    image="trainer",
    warm=("matplotlib.figure", "matplotlib.backends.backend_agg"),  # imported as it draws
    stages=(("load", 1.0), ("generate", 2.0), ("explain", 4.0), ("save", 1.0)),
    outputs=("arrays", "overlay"),
)

EXPLAIN_BATCH = KindSpec(
    name="explain-batch",
    description="explain for many signals, shared out among the job's workers "
    "(parallelism/completions), each writing its own part; aggregate progress.",
    params=ExplainBatchParams,
    runner="kubetask.jobs.kinds.explain_batch:run",
    image="trainer",
    warm=("matplotlib.figure", "matplotlib.backends.backend_agg"),  # imported as it draws
    stages=(("load", 1.0), ("generate", 2.0), ("explain", 8.0), ("save", 1.0)),
    outputs=("part", "parts"),
    splits=True,
    merge=Merge(
        same=("model", "dataset", "steps", "rule", "target", "storage", "parts", "signals_total"),
        sums=("signals_explained",),
        concat=("rows",),
        maxima=("rows_truncated", "max_relative_gap"),
        means=(
            ("accuracy", "signals_explained"),
            ("mean_relative_gap", "signals_explained"),
        ),
    ),
)

NAS = KindSpec(
    name="nas",
    description="Architecture search over 1-D CNNs (depth, channels, kernel sizes, "
    "pooling), shared like hpo by all the job's workers; the best one as train params.",
    params=NasParams,
    runner="kubetask.jobs.kinds.nas:run",
    image="trainer",
    warm=OPTIMIZER_MODULES,
    stages=(("data", 1.0), ("generate", 4.0), ("trial", 15.0)),
    splits=True,
    merge=Merge(
        same=STUDY_SAME,
        picks=(
            Pick(
                by="best_value",
                direction="direction",
                keys=(
                    "best_value",
                    "best_trial",
                    "best_architecture",
                    "best_metrics",
                    "train_params",
                ),
            ),
            STUDY_COUNTS,
        ),
        sums=STUDY_RAN,
        concat=("trial_numbers",),
    ),
)

GAN_SEED = KindSpec(
    name="gan-seed",
    description="Seed sensor data for one machine (seed.csv in the job's folder).",
    params=GanSeedParams,
    runner="kubetask.jobs.kinds.gan_seed:run",
    image="gan",
    warm=SDV_MODULES,
    stages=(("generate", 1.0), ("save", 1.0)),
    outputs=("seed",),
)

GAN_TRAIN = KindSpec(
    name="gan-train",
    description="An SDV TVAE or CTGAN synthesizer fitted on a machine's seed data "
    "(`dataset`: job:<gan-seed id>), saved in the job's folder.",
    params=GanTrainParams,
    runner="kubetask.jobs.kinds.gan_train:run",
    image="gan",
    warm=SDV_MODULES,
    stages=(("load", 1.0), ("preprocess", 1.0), ("train", 7.0), ("save", 1.0)),
    outputs=("seed", "synthesizer", "metadata", "losses"),
)

GAN_GENERATE = KindSpec(
    name="gan-generate",
    description="Train/val/test synthetic datasets from a fitted synthesizer "
    "(`model`: job:<gan-train id>), with a quality score.",
    params=GanGenerateParams,
    runner="kubetask.jobs.kinds.gan_generate:run",
    image="gan",
    warm=SDV_MODULES,
    stages=(("load", 1.0), ("sample", 7.0), ("evaluate", 2.0)),
)

MAT_IMPORT = KindSpec(
    name="mat-import",
    description="MATLAB .mat vibration recordings (v5, v7.3) cut into labelled "
    "segments: a dataset train reads.",
    params=MatImportParams,
    runner="kubetask.jobs.kinds.mat_import:run",
    image="trainer",
    stages=(("examples", 1.0), ("import", 8.0), ("save", 1.0)),
    outputs=("dataset",),
)

FEATURES = KindSpec(
    name="features",
    description="Per-signal time- and frequency-domain features (RMS, kurtosis, "
    "FFT band energies, envelope-spectrum peaks...) as a CSV table.",
    params=FeaturesParams,
    runner="kubetask.jobs.kinds.features:run",
    image="trainer",
    stages=(("load", 1.0), ("generate", 3.0), ("features", 6.0)),
    outputs=("table",),
)

EVALUATE = KindSpec(
    name="evaluate",
    description="A trained model on a dataset: accuracy, per-class precision/recall/"
    "F1, confusion matrix (JSON and PNG).",
    params=EvaluateParams,
    runner="kubetask.jobs.kinds.evaluate:run",
    image="trainer",
    stages=(("load", 1.0), ("generate", 3.0), ("evaluate", 5.0), ("save", 1.0)),
    outputs=("metrics_file", "confusion_plot"),
)

EXPORT = KindSpec(
    name="export",
    description="A trained model as TorchScript and ONNX (raw signals -> logits), "
    "checked against PyTorch, with sizes, latency and optional int8 quantization.",
    params=ExportParams,
    runner="kubetask.jobs.kinds.export:run",
    image="trainer",
    stages=(("load", 1.0), ("generate", 1.0), ("export", 8.0)),
    outputs=("manifest",),
)

TEST = KindSpec(
    name="test",
    description="Robustness of a trained model: accuracy under noise (SNRs), time "
    "shifts and amplitude scaling, as a table and a plot.",
    params=RobustnessParams,
    runner="kubetask.jobs.kinds.robustness:run",
    image="trainer",
    stages=(("load", 1.0), ("generate", 3.0), ("test", 5.0), ("save", 1.0)),
    outputs=("table_file", "plot"),
)
