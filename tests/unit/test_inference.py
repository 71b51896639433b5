"""Loading a model as `train` saves it: raw signals give the logits of the training path,
through numpy features, the torch pipeline and its exportable (DFT matrix) form alike; and
the .mat reading that `mat-import` builds on."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.datagen import generate
from kubetask.jobs.kinds.mat_import import matching_files
from kubetask.jobs.kinds.ml.best_epoch import cpu_state
from kubetask.jobs.kinds.ml.data import Dataset, Prepared, to_features
from kubetask.jobs.kinds.ml.inference import HeldOut, LoadedModel, align_labels, load_model
from kubetask.jobs.kinds.ml.loop import build_trainer
from kubetask.jobs.kinds.ml.matfiles import (
    MatFileError,
    label_of,
    pick_signal,
    read_mat,
    recordings,
    segments,
    write_v73,
)
from kubetask.jobs.kinds.ml.models import ModelSpec
from kubetask.jobs.kinds.train import save_model
from kubetask.jobs.params import DatagenParams, TrainParams

DATA = DatagenParams(n_per_class=2, length=128, sample_rate=2000.0)
CLASSES = [c.value for c in DATA.classes]


def saved_model(folder: Path, kind: str, features: str, sample_rate: float | None = None) -> Path:
    """A model.pt written by train's own save_model (untrained weights, real statistics)."""
    x, _ = generate(DATA)
    feats = to_features(x, features)
    params = TrainParams.model_validate(
        {"model": kind, "features": features, "width": 8, "depth": 2}
    )
    spec = ModelSpec(kind, feats.shape[1], len(CLASSES), 8, 2, 0.1)  # type: ignore[arg-type]
    trainer = build_trainer(params, spec, torch.device("cpu"))
    empty = np.empty((0, feats.shape[1]), dtype=np.float32)
    labels = np.empty(0, dtype=np.int64)
    prepared = Prepared(
        x_train=empty,
        y_train=labels,
        x_val=empty,
        y_val=labels,
        val_rows=labels,
        n=0,
        mean=feats.mean(axis=0),
        std=feats.std(axis=0) + 1e-6,
        classes=CLASSES,
        source=None,
    )
    path = folder / f"{kind}-{features}.pt"
    weights = cpu_state(trainer.model)
    save_model(
        path, weights, spec=spec, data=prepared, features=features, metrics={"epoch": 0},
        sample_rate=sample_rate,
    )  # fmt: skip
    return path


def test_a_model_refuses_signals_of_another_sample_rate(tmp_path: Path) -> None:
    """Scored on signals of another rate, a model's figures are as wrong as on another
    length, and nothing said so: it keeps its training rate and refuses another, for good.
    One saved before it kept the rate (or trained on data that does not record it) is not
    checked."""
    cpu = torch.device("cpu")
    model = load_model(saved_model(tmp_path, "mlp", "raw", 1000.0), cpu, relative="m.pt")
    assert model.sample_rate == 1000.0
    model.check_rate(1000.0)
    model.check_rate(None)
    with pytest.raises(TaskError, match="sampled at 1000 Hz; the data are sampled at 48000") as no:
        model.check_rate(48000.0, what="the data")
    assert no.value.permanent
    unknown = load_model(saved_model(tmp_path / "old", "mlp", "raw"), cpu, relative="o.pt")
    assert unknown.sample_rate is None
    unknown.check_rate(48000.0)


@pytest.mark.parametrize(("kind", "features"), [("cnn1d", "spectrum"), ("mlp", "raw")])
def test_every_path_from_raw_signals_gives_the_training_logits(
    tmp_path: Path, kind: str, features: str
) -> None:
    model = load_model(saved_model(tmp_path, kind, features), torch.device("cpu"))
    assert not model.network.training
    assert model.classes == CLASSES
    x, _ = generate(DATA.model_copy(update={"seed": 5}))
    features_ = torch.from_numpy((to_features(x, features) - model.mean) / model.std)
    with torch.no_grad():
        expected = model.network(features_).numpy()
        eager = model.pipeline(128)(torch.from_numpy(x)).numpy()
        exportable = model.pipeline(128, exportable=True)(torch.from_numpy(x)).numpy()
    batches: list[tuple[int, int]] = []
    logits = model.logits(x, batch_size=5, on_batch=lambda d, t: batches.append((d, t)))
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    np.testing.assert_allclose(eager, expected, atol=1e-4)
    np.testing.assert_allclose(exportable, expected, atol=1e-4)
    assert batches[-1] == (3, 3)  # 12 signals in batches of 5


def test_the_pipeline_is_differentiable_from_the_raw_signal(tmp_path: Path) -> None:
    model = load_model(saved_model(tmp_path, "cnn1d", "spectrum"), torch.device("cpu"))
    x = torch.from_numpy(generate(DATA)[0][:2]).requires_grad_(True)
    model.pipeline(128)(x)[:, 0].sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_wrong_lengths_missing_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    """A file that is there but does not fit fails for good (a retry would fail the same); a
    missing one may be there by the next try."""
    model: LoadedModel = load_model(saved_model(tmp_path, "cnn1d", "spectrum"), torch.device("cpu"))
    assert model.signal_lengths() == (128, 129)
    with pytest.raises(TaskError, match="length 128 or 129; the signals have length 256") as wrong:
        model.logits(np.zeros((1, 256), dtype=np.float32))
    with pytest.raises(TaskError, match="not found") as missing:
        load_model(tmp_path / "nope.pt", torch.device("cpu"), relative="x/model.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(TaskError, match="not a model saved by `train`") as not_a_model:
        load_model(foreign, torch.device("cpu"))
    permanent = [e.value.permanent for e in (wrong, missing, not_a_model)]
    assert permanent == [True, False, True]


def test_labels_are_aligned_to_the_models_classes_by_name() -> None:
    data = Dataset(
        x=np.zeros((3, 4), dtype=np.float32),
        y=np.array([0, 1, 1], dtype=np.int64),
        classes=["looseness", "normal"],
        source="d.npz",
    )
    assert align_labels(data, CLASSES).tolist() == [3, 0, 0]
    strange = Dataset(x=data.x, y=data.y, classes=["normal", "cracked"], source="d.npz")
    with pytest.raises(TaskError, match=r"classes the model does not know: \['cracked'\]") as e:
        align_labels(strange, CLASSES)
    assert e.value.permanent


# -- .mat files ---------------------------------------------------------------------------


def test_v5_and_v73_files_read_the_same(tmp_path: Path) -> None:
    signal = np.sin(np.arange(300) / 7)
    scipy.io.savemat(
        tmp_path / "a.mat", {"X097_DE_time": signal[:, None], "RPM": 1797, "who": "inner"}
    )
    write_v73(tmp_path / "b.mat", signal, 12_000.0)
    v5, v73 = read_mat(tmp_path / "a.mat"), read_mat(tmp_path / "b.mat")
    assert v5["who"] == "inner"
    assert pick_signal(v5, None)[0] == "X097_DE_time"
    assert pick_signal(v5, ".*DE_time")[1].shape == (300, 1)
    name, array = pick_signal(v73, None)
    assert name == "DE_time"
    np.testing.assert_array_equal(recordings(array)[0], signal)
    with pytest.raises(MatFileError, match="no matching 'FE_time' signal variable"):
        pick_signal(v5, "FE_time")


def test_malformed_files_raise_mat_file_errors(tmp_path: Path) -> None:
    (tmp_path / "text.mat").write_text("this is not a MAT-file at all")
    with pytest.raises(MatFileError, match=r"not a readable \.mat file"):
        read_mat(tmp_path / "text.mat")
    with h5py.File(tmp_path / "cube.mat", "w") as file:
        file["x"] = np.zeros((2, 3, 4))
    with pytest.raises(MatFileError, match="need a vector or matrix"):
        recordings(pick_signal(read_mat(tmp_path / "cube.mat"), None)[1])


@pytest.mark.parametrize("pointer", ["external", "external-link", "soft-link", "virtual"])
def test_a_v73_file_whose_data_lies_elsewhere_is_refused(tmp_path: Path, pointer: str) -> None:
    """HDF5 reads wherever a file points: a tenant's .mat could read, as a variable, another
    tenant's upload or the server's tokens."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"admin-token-0123456789")
    path = tmp_path / "crafted.mat"
    with h5py.File(path, "w") as file:
        file["signal"] = np.zeros((1, 64))
        if pointer == "external":
            file.create_dataset("label", shape=(64,), dtype="u1", external=[(str(secret), 0, 64)])
        elif pointer == "external-link":
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other["label"] = np.frombuffer(secret.read_bytes(), dtype="u1")
            file["label"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/label")
        elif pointer == "soft-link":
            file["label"] = h5py.SoftLink("/signal")
        else:
            layout = h5py.VirtualLayout(shape=(22,), dtype="u1")
            layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "label", shape=(22,))
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other["label"] = np.frombuffer(secret.read_bytes(), dtype="u1")
            file.create_virtual_dataset("label", layout)
    with pytest.raises(MatFileError, match=r"variable 'label' is .*: refused"):
        read_mat(path)


def test_segments_overlap_limit_and_orientation() -> None:
    recording = np.arange(10, dtype=np.float64)
    assert segments(recording, 4, 0.0, None).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert segments(recording, 4, 0.5, None)[:, 0].tolist() == [0, 2, 4, 6]
    assert len(segments(recording, 4, 0.5, 2)) == 2
    assert segments(recording, 11, 0.0, None).shape == (0, 11)
    matrix = np.zeros((3, 100))  # three recordings of 100 samples, either way round
    assert [len(r) for r in recordings(matrix)] == [100] * 3
    assert [len(r) for r in recordings(matrix.T)] == [100] * 3


def test_labels_from_folder_filename_or_variable() -> None:
    path = Path("cwru/inner_race/IR007_0.mat")
    kwargs = {"pattern": None, "variable": "label"}
    assert label_of(path, {}, source="folder", **kwargs) == "inner_race"  # type: ignore[arg-type]
    assert label_of(path, {}, source="filename", pattern=r"^([A-Z]+)\d", variable="") == "IR"
    assert label_of(path, {"label": "ok"}, source="variable", **kwargs) == "ok"  # type: ignore[arg-type]
    assert label_of(path, {"label": np.array([[3.0]])}, source="variable", **kwargs) == "3"  # type: ignore[arg-type]
    # no match, an optional group that took no part, an empty match: no label (a None or
    # '' class broke the dataset and the result)
    for pattern in ("^B", "(zzz)?", "z*"):
        with pytest.raises(MatFileError, match="finds no label in the file name"):
            label_of(path, {}, source="filename", pattern=pattern, variable="")


def test_a_glob_ending_in_double_star_is_every_mat_file_below(tmp_path: Path) -> None:
    """As a folder is: pathlib's own trailing `**` matches folders only (no files matched)."""
    for name in ("mats/normal/a.mat", "mats/imbalance/deep/b.mat", "mats/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in matching_files(tmp_path, "mats/**")]
    assert found == ["mats/imbalance/deep/b.mat", "mats/normal/a.mat"]
    assert matching_files(tmp_path, "mats/**") == matching_files(tmp_path, "mats")


def test_a_models_own_data_is_found_held_out_however_its_path_is_spelled() -> None:
    """A model saved with `id//dataset.npz` (before submit took paths as the store names
    them) still finds its validation rows in `id/dataset.npz`, and the other way round."""
    data = Dataset(
        x=np.arange(12, dtype=np.float32).reshape(6, 2),
        y=np.array([0, 1, 0, 1, 0, 1]),
        classes=["a", "b"],
        source="0abcdefgh1234567/dataset.npz",
    )
    held = HeldOut(dataset="0abcdefgh1234567//dataset.npz", n=6, rows=np.array([1, 4]))
    unseen = held.of("0abcdefgh1234567/./dataset.npz", data)
    assert unseen is not None
    assert unseen.y.tolist() == [1, 0]
    assert held.of("0abcdefgh7654321/dataset.npz", data) is None
    assert held.of(None, data) is None
