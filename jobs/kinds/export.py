"""`export` (deployment): a trained model as one graph from raw signals [batch, length] to
logits (the feature transform and standardization included, the FFT as a DFT matrix
product), saved as TorchScript (`model.torchscript.pt`) and ONNX (`model.onnx`), each
reloaded (torch.jit.load, onnxruntime) and checked against the PyTorch model on real signals:
the largest logit difference, relative to the largest logit (at least 1), must stay within
`tolerance`, else the job fails. With `quantize`, a dynamic int8 TorchScript model too, with
its accuracy beside the float model's. The result gives file sizes and single-sample
latencies; `export.json` tells a deployment the input length, classes and names.

Exports are made on the CPU (portable artifacts) with the TorchScript-based ONNX exporter
(`dynamo=False`: no onnxscript needed). Those APIs are deprecated in torch 2.13 but work; their
deprecation warnings are silenced here, nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import json
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import JsonValue
from torch import nn

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError

if TYPE_CHECKING:  # imported when used: it opens a database in $HOME as it loads
    import onnxruntime
from kubetask.jobs.kinds.ml import scores
from kubetask.jobs.kinds.ml.inference import ModelData, SignalPipeline, model_on_data
from kubetask.jobs.params.catalog import ExportParams

Logits = NDArray[np.float32]
Signals = NDArray[np.float32]
INPUT, OUTPUT = "signals", "logits"
WARMUP_RUNS = 3


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        yield


def relative_difference(got: Logits, want: Logits) -> float:
    """max |got - want| / max(1, max |want|)."""
    scale = max(1.0, float(np.abs(want).max()))
    return float(np.abs(got.astype(np.float64) - want).max()) / scale


def median_latency_ms(infer: Callable[[], object], runs: int) -> float:
    for _ in range(WARMUP_RUNS):
        infer()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        infer()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 4)


def to_torchscript(pipeline: nn.Module, example: torch.Tensor, path: Path) -> nn.Module:
    """Traced, saved, and loaded back (what a deployment will run)."""
    with quiet_deprecations(), torch.no_grad():
        traced = torch.jit.trace(pipeline, example)  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(path))
        loaded: nn.Module = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    return loaded.eval()


def to_onnx(
    pipeline: nn.Module, example: torch.Tensor, path: Path, opset: int
) -> onnxruntime.InferenceSession:
    with quiet_deprecations(), torch.no_grad():
        torch.onnx.export(
            pipeline,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def quantized_int8(pipeline: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of the Linear layers (weights int8, activations at run
    time); convolutions stay float."""
    with quiet_deprecations():
        int8: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            copy.deepcopy(pipeline), {nn.Linear}, dtype=torch.qint8
        )
    return int8


def torch_logits(module: nn.Module, signals: Signals) -> Logits:
    with torch.no_grad():
        out: Logits = module(torch.from_numpy(signals)).float().numpy()
    return out


@dataclass(frozen=True)
class Exported:
    """One artifact a deployment runs, and how it did against PyTorch."""

    path: Path
    infer: Callable[[Signals], Logits]
    difference: float  # max |logit difference| / max(1, max |PyTorch logit|)
    latency_ms: float  # median, one signal


class Exporter:
    """The model's exportable graph, the signals the checks run on and PyTorch's logits."""

    def __init__(self, setup: ModelData, params: ExportParams) -> None:
        self.model = setup.model
        self.params = params
        self.length = int(setup.data.x.shape[1])
        self.sample = setup.data.x[: params.check_samples]
        self.example = torch.from_numpy(self.sample[:2])
        self.reference = self.model.logits(self.sample, batch_size=params.batch_size)
        self.pipeline: SignalPipeline = self.model.pipeline(self.length, exportable=True)

    def check(self, name: str, path: Path, infer: Callable[[Signals], Logits]) -> Exported:
        difference = relative_difference(infer(self.sample), self.reference)
        if difference > self.params.tolerance:
            raise TaskError(
                f"the {name} export differs from PyTorch by {difference:.3g} (relative to the "
                f"largest logit), above tolerance {self.params.tolerance:g}",
                suggestion="Raise `tolerance` if that difference is acceptable.",
                permanent=True,
            )
        one = self.sample[:1]
        latency = median_latency_ms(lambda: infer(one), self.params.latency_runs)
        return Exported(path, infer, difference, latency)

    def torchscript(self, path: Path, module: nn.Module | None = None) -> Exported:
        loaded = to_torchscript(module or self.pipeline, self.example, path)
        return self.check("torchscript", path, lambda x: torch_logits(loaded, x))

    def onnx(self, path: Path) -> Exported:
        session = to_onnx(self.pipeline, self.example, path, self.params.opset)

        def infer(x: Signals) -> Logits:
            return np.asarray(session.run([OUTPUT], {INPUT: x})[0], dtype=np.float32)

        return self.check("onnx", path, infer)


def accuracy_of(infer: Callable[[Signals], Logits], setup: ModelData, batch: int) -> float:
    x = setup.data.x
    logits = np.concatenate([infer(x[i : i + batch]) for i in range(0, len(x), batch)])
    return round(scores.accuracy(setup.labels, logits.argmax(axis=1)), 6)


def run(params: ExportParams, context: TaskContext) -> dict[str, JsonValue]:
    setup = model_on_data(params.model_copy(update={"device": "cpu"}), context, held_out=True)
    reporter = context.reporter
    steps = 1 + len(params.formats) + int(params.quantize)
    reporter.update(0, steps, stage="export", message="building the graph")
    exporter = Exporter(setup, params)
    pytorch = exporter.check("pytorch", Path(), lambda x: torch_logits(exporter.pipeline, x))
    done: dict[str, Exported] = {}
    for number, name in enumerate(params.formats, 1):
        reporter.update(number, steps, stage="export", message=name)
        if name == "torchscript":
            done[name] = exporter.torchscript(context.artifact("model.torchscript.pt"))
        else:
            done[name] = exporter.onnx(context.artifact("model.onnx"))
    quantized: dict[str, JsonValue] | None = None
    if params.quantize:
        reporter.update(steps - 1, steps, stage="export", message="dynamic int8 quantization")
        path = context.artifact("model-int8.torchscript.pt")
        int8 = to_torchscript(quantized_int8(exporter.pipeline), exporter.example, path)

        def int8_infer(x: Signals) -> Logits:
            return torch_logits(int8, x)

        float_accuracy = accuracy_of(pytorch.infer, setup, params.batch_size)
        int8_accuracy = accuracy_of(int8_infer, setup, params.batch_size)
        one = exporter.sample[:1]
        latency = median_latency_ms(lambda: int8_infer(one), params.latency_runs)
        done["int8"] = Exported(path, int8_infer, float("nan"), latency)
        quantized = {
            "layers": "Linear (dynamic int8); convolutions stay float",
            "accuracy_float": float_accuracy,
            "accuracy_int8": int8_accuracy,
            "accuracy_delta": round(int8_accuracy - float_accuracy, 6),
            "rows": setup.rows,
        }
    files: dict[str, JsonValue] = {k: context.relative(e.path) for k, e in done.items()}
    checks: dict[str, JsonValue] = {"pytorch": round(pytorch.difference, 9)}
    checks.update({k: round(e.difference, 9) for k, e in done.items() if k != "int8"})
    manifest: dict[str, JsonValue] = {
        "input": {"name": INPUT, "shape": ["batch", exporter.length], "dtype": "float32"},
        "output": {"name": OUTPUT, "shape": ["batch", len(setup.model.classes)]},
        "classes": list(setup.model.classes),
        "sample_rate": setup.sample_rate,
        "features": setup.model.features,
        "files": files,
        "tolerance": params.tolerance,
        "max_relative_difference": checks,
    }
    manifest_path = context.artifact("export.json")
    manifest_path.write_text(json.dumps(manifest, indent=1))
    reporter.update(steps, steps, stage="export", message="done")
    return {
        "model": params.model,
        "files": files,
        "manifest": context.relative(manifest_path),
        "bytes": {k: e.path.stat().st_size for k, e in done.items()},
        "latency_ms": {"pytorch": pytorch.latency_ms, **{k: e.latency_ms for k, e in done.items()}},
        "max_relative_difference": checks,
        "tolerance": params.tolerance,
        "checked_on": len(exporter.sample),
        "input_length": exporter.length,
        "classes": list(setup.model.classes),
        "quantized": quantized,
    }
