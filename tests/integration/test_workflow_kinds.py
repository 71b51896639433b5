"""The workflow kinds for real through the API and the local backend, chained by `job:<id>`:
datagen -> train -> evaluate, export and test; mat-import of real v5 and v7.3 .mat files
(and a malformed one) -> features. Each job runs as a real task process."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnxruntime
import pytest
import scipy.io
import torch

from tests.servers import ApiServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA = {"n_per_class": 16, "length": 256, "sample_rate": 2000.0}


def progress(events: list[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "progress" and e["stage"] == stage]


def succeeded(api: ApiServer, job_id: str, timeout_s: float = 90) -> dict[str, Any]:
    job = api.wait(job_id, timeout_s=timeout_s)
    assert job["state"] == "succeeded", (job, api.client.get(f"/v1/jobs/{job_id}/logs").text)
    return job


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_chain_datagen_train_then_evaluate_export_and_test(api: ApiServer) -> None:
    started = time.monotonic()
    datagen = api.submit("datagen", DATA)
    dataset = succeeded(api, datagen)["result"]["dataset"]
    train = api.submit("train", {"dataset": f"job:{datagen}", "epochs": 8, "threads": 1})
    trained = succeeded(api, train)
    assert trained["request"]["params"]["dataset"] == dataset  # resolved at submit
    held_out = {"datagen": {**DATA, "seed": 7}, "threads": 1}
    evaluate = api.submit("evaluate", {"model": f"job:{train}", **held_out})
    export = api.submit("export", {"model": f"job:{train}", "quantize": True, **held_out})
    robustness = api.submit(
        "test",
        {"model": f"job:{train}", "dataset": f"job:{datagen}", "snr_db": [20, 0], "threads": 1},
    )
    artifacts = api.data_dir / "artifacts"

    # evaluate: real scores of a model that learned something, a plot, per-batch progress
    job = succeeded(api, evaluate)
    assert job["request"]["params"]["model"] == trained["result"]["model"]
    result = job["result"]
    assert result["accuracy"] > 0.35  # six classes: chance is 0.17
    # other data than the model's: every signal
    assert (result["rows"], sum(map(sum, result["confusion"])), result["n_signals"]) == (
        "all",
        96,
        96,
    )
    assert set(result["per_class"]) == set(trained["result"]["classes"])
    assert (artifacts / result["confusion_plot"]).read_bytes().startswith(PNG_MAGIC)
    metrics = json.loads((artifacts / result["metrics_file"]).read_text())
    assert np.mean(np.array(metrics["predictions"]) == metrics["labels"]) == result["accuracy"]
    batches = progress(api.events(evaluate), "evaluate")
    assert batches[-1]["current"] == batches[-1]["total"] == 1

    # export: TorchScript and ONNX give PyTorch's logits; int8 with its accuracy delta
    result = succeeded(api, export)["result"]
    assert set(result["files"]) == {"torchscript", "onnx", "int8"}
    assert all(d <= result["tolerance"] for d in result["max_relative_difference"].values())
    assert all(v > 0 for v in result["latency_ms"].values())
    assert result["bytes"]["onnx"] == (artifacts / result["files"]["onnx"]).stat().st_size
    quantized = result["quantized"]
    assert quantized["accuracy_delta"] == pytest.approx(
        quantized["accuracy_int8"] - quantized["accuracy_float"], abs=1e-6
    )
    signals = np.random.default_rng(0).normal(size=(3, 256)).astype(np.float32)
    scripted = torch.jit.load(str(artifacts / result["files"]["torchscript"]))  # type: ignore[no-untyped-call]
    session = onnxruntime.InferenceSession(str(artifacts / result["files"]["onnx"]))
    from_onnx = session.run(["logits"], {"signals": signals})[0]
    with torch.no_grad():
        np.testing.assert_allclose(
            scripted(torch.from_numpy(signals)).numpy(), from_onnx, atol=1e-4
        )
    manifest = json.loads((artifacts / result["manifest"]).read_text())
    assert manifest["classes"] == trained["result"]["classes"]
    assert manifest["input"]["shape"] == ["batch", 256]

    # test: a degradation table and plot, each condition reported with its accuracy
    job = succeeded(api, robustness)
    assert job["request"]["params"]["dataset"] == dataset
    result = job["result"]
    # the model's own data: only the 19 signals (0.2 of 96) it held out from training
    assert (result["rows"], result["n_signals"]) == ("held-out", 19)
    assert [(r["perturbation"], r["level"]) for r in result["table"]] == [
        ("noise", 20.0),
        ("noise", 0.0),
        ("shift", 0.1),
        ("shift", 0.25),
        ("shift", 0.5),
        ("scale", 0.5),
        ("scale", 0.8),
        ("scale", 1.25),
        ("scale", 2.0),
    ]
    for row in result["table"]:
        assert row["drop"] == pytest.approx(result["clean_accuracy"] - row["accuracy"], abs=1e-6)
    assert (artifacts / result["plot"]).read_bytes().startswith(PNG_MAGIC)
    with (artifacts / result["table_file"]).open() as file:
        assert len(list(csv.DictReader(file))) == 1 + len(result["table"])
    conditions = progress(api.events(robustness), "test")
    assert [e["metrics"]["accuracy"] for e in conditions] == [
        result["clean_accuracy"],
        *(r["accuracy"] for r in result["table"]),
    ]
    print(f"chain datagen -> train -> evaluate/export/test: {time.monotonic() - started:.1f}s")


def write_recordings(folder: Path) -> None:
    """Real MATLAB files: v5 (scipy) and v7.3 (HDF5 as MATLAB writes it: transposed, with
    MATLAB_class attributes and the 512-byte header block), two classes, a malformed file."""
    t = np.arange(3000) / 12_000
    for label, hz in (("inner", 160.0), ("outer", 105.0)):
        (folder / label).mkdir(parents=True)
        signal = np.sin(2 * np.pi * hz * t) + 0.1 * np.sin(2 * np.pi * 1500 * t)
        scipy.io.savemat(
            folder / label / "a.mat",
            {"X100_DE_time": signal[:, None], "X100_FE_time": signal[:, None] * 0.5, "RPM": 1797},
        )
        with h5py.File(folder / label / "b.mat", "w", userblock_size=512) as file:
            file.create_dataset("X200_DE_time", data=signal[None, :]).attrs["MATLAB_class"] = (
                np.bytes_("double")
            )
        with (folder / label / "b.mat").open("r+b") as raw:
            raw.write(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM")
    (folder / "inner" / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(50))


def test_mat_import_then_features(api: ApiServer) -> None:
    uploads = api.data_dir / "artifacts" / "uploads" / "default" / "bearing"  # the tenant's
    write_recordings(uploads)
    params = {
        "files": "uploads/default/bearing/**/*.mat",
        "variable": ".*DE_time",
        "segment_length": 1000,
        "sample_rate": 12_000,
    }
    failing = api.submit("mat-import", {**params, "on_error": "fail"}, retries=2)
    imported = api.submit("mat-import", params)

    result = succeeded(api, imported)["result"]
    assert result["skipped"] == [
        {"file": "uploads/default/bearing/inner/broken.mat", "error": result["skipped"][0]["error"]}
    ]
    assert "not a readable .mat file" in result["skipped"][0]["error"]
    assert result["files_imported"] == 4
    assert result["class_counts"] == {"inner": 6, "outer": 6}  # 3 segments of 1000 per file
    assert result["variables"] == ["X100_DE_time", "X200_DE_time"]
    with np.load(api.data_dir / "artifacts" / result["dataset"]) as npz:
        assert npz["X"].shape == (12, 1000)
        assert float(npz["sample_rate"]) == 12_000
        # where each window came from, which train's split goes by: 4 recordings of 3
        assert npz["recording"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert npz["start"].tolist() == [0, 1000, 2000] * 4
    files = progress(api.events(imported), "import")
    assert (files[-1]["current"], files[-1]["total"]) == (5, 5)

    failed = api.wait(failing)
    assert failed["state"] == "failed"
    assert "uploads/default/bearing/inner/broken.mat" in failed["error"]["message"]
    # the file would be as broken on a second try: failed at once, the retries unused
    assert (failed["reason"], failed["attempts"], failed["error"]["exit_code"]) == (
        "PodFailurePolicy",
        1,
        2,
    )

    features = succeeded(api, api.submit("features", {"dataset": f"job:{imported}", "bands": 4}))
    result = features["result"]
    with (api.data_dir / "artifacts" / result["table"]).open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == result["n_signals"] == 12
    assert {r["class"] for r in rows} == {"inner", "outer"}
    assert result["band_edges_hz"] == [0, 1500, 3000, 4500, 6000]
    first = {k: float(v) for k, v in rows[0].items() if k not in ("signal", "class") and v}
    bands = sum(v for k, v in first.items() if k.startswith("band_"))
    assert bands == pytest.approx(first["rms"] ** 2, rel=1e-6)
    assert progress(api.events(features["id"]), "features")[-1]["current"] == 12
