"""train's pure parts: the models' shapes, features, the split, the CPU quota, the loop's
determinism, and a checkpoint that resumes exactly where a run stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kubetask.jobs.errors import TaskError
from kubetask.jobs.kinds.ml.best_epoch import keep_best
from kubetask.jobs.kinds.ml.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from kubetask.jobs.kinds.ml.data import (
    Dataset,
    Prepared,
    Segments,
    cpu_quota,
    load_dataset,
    obtain_dataset,
    prepare,
    require_classes,
    split_by_recording,
    split_indices,
    to_features,
)
from kubetask.jobs.kinds.ml.loop import (
    Trainer,
    batch_bounds,
    build_trainer,
    epoch_metrics,
    evaluate,
    model_spec,
    to_device,
    train_epoch,
)
from kubetask.jobs.kinds.ml.models import ModelSpec, build_model, count_parameters
from kubetask.jobs.params import DatagenParams, ModelKind, TrainParams

CPU = torch.device("cpu")
TINY_DATA = DatagenParams(n_per_class=6, length=128, sample_rate=2_000.0)


def tiny(**fields: object) -> TrainParams:
    return TrainParams.model_validate(
        {"datagen": TINY_DATA.model_dump(), "width": 8, "depth": 2, "threads": 1, **fields}
    )


def spec(kind: ModelKind, length: int = 65, depth: int = 2) -> ModelSpec:
    return ModelSpec(kind=kind, input_length=length, n_classes=6, width=8, depth=depth, dropout=0.1)


@pytest.mark.parametrize("kind", ["mlp", "cnn1d"])
@pytest.mark.parametrize(("length", "depth"), [(65, 1), (65, 3), (1024, 2), (7, 4)])
def test_models_map_a_batch_of_vectors_to_class_logits(
    kind: ModelKind, length: int, depth: int
) -> None:
    model = build_model(spec(kind, length, depth))
    model.eval()
    assert model(torch.randn(5, length)).shape == (5, 6)
    assert model(torch.randn(1, length)).shape == (1, 6)


def test_depth_and_width_add_parameters() -> None:
    small = count_parameters(build_model(spec("mlp", depth=1)))
    assert count_parameters(build_model(spec("mlp", depth=3))) > small
    assert spec("cnn1d").to_json()["kind"] == "cnn1d"


def test_spectrum_features_have_half_the_length_plus_one() -> None:
    x = np.random.default_rng(0).normal(size=(4, 256)).astype(np.float32)
    features = to_features(x, "spectrum")
    assert features.shape == (4, 129)
    assert features.dtype == np.float32
    assert (features >= 0).all()
    assert to_features(x, "raw") is x


@pytest.mark.parametrize(("n", "fraction", "n_val"), [(100, 0.2, 20), (2, 0.9, 1), (10, 0.01, 1)])
def test_the_split_is_seeded_disjoint_and_never_empty(n: int, fraction: float, n_val: int) -> None:
    train, val = split_indices(n, fraction, seed=3)
    assert len(val) == n_val
    assert sorted([*train, *val]) == list(range(n))
    again = split_indices(n, fraction, seed=3)
    assert (again[0] == train).all()


def windows(recordings: int, count: int, step: int) -> Segments:
    """`count` windows `step` samples apart in each of `recordings` recordings."""
    return Segments(
        recording=np.repeat(np.arange(recordings), count).astype(np.int64),
        start=np.tile(np.arange(count) * step, recordings).astype(np.int64),
    )


def shared_samples(segments: Segments, length: int, a: np.ndarray, b: np.ndarray) -> int:
    """Pairs of windows, one from `a` and one from `b`, that share a sample."""
    return sum(
        segments.recording[i] == segments.recording[j]
        and abs(int(segments.start[i]) - int(segments.start[j])) < length
        for i in a
        for j in b
    )


@pytest.mark.parametrize(("overlap_step", "dropped"), [(256, 0), (128, 1), (64, 3)])
def test_windows_of_recordings_are_split_by_time_with_no_sample_in_both(
    overlap_step: int, dropped: int
) -> None:
    """3 recordings of 20 windows of 256 samples: each holds out its last 4 (val_fraction
    0.2); the training windows that overlap them are left out (1 at 50%, 3 at 75%)."""
    segments = windows(3, 20, overlap_step)
    train, val = split_by_recording(segments, 256, 0.2)
    assert shared_samples(segments, 256, train, val) == 0
    assert len(val) == 3 * 4
    assert len(train) == 3 * (16 - dropped)
    for recording in range(3):
        mine = val[segments.recording[val] == recording]
        assert sorted(segments.start[mine]) == [overlap_step * k for k in range(16, 20)]


def test_a_shuffled_split_of_overlapping_windows_would_share_samples() -> None:
    """What the recording split is for: the shuffle `datagen`'s independent signals get."""
    segments = windows(2, 30, 64)
    train, val = split_indices(60, 0.2, seed=0)
    assert shared_samples(segments, 256, train, val) > 0


def test_recordings_too_short_to_hold_any_window_out_are_refused() -> None:
    with pytest.raises(TaskError, match="too short") as info:
        split_by_recording(windows(4, 2, 64), 256, 0.2)  # 2 windows each: 0.4 rounds to 0
    assert info.value.permanent


def test_a_mat_import_dataset_is_split_by_recording(tmp_path: Path) -> None:
    """`prepare` reads `recording` and `start` from the dataset and splits by time."""
    segments = windows(2, 10, 128)
    x = np.random.default_rng(0).normal(size=(20, 256)).astype(np.float32)
    path = tmp_path / "dataset.npz"
    np.savez(path, X=x, y=np.repeat([0, 1], 10), classes=np.array(["a", "b"]), **vars(segments))
    data = load_dataset(path, "m/dataset.npz")
    assert isinstance(data, Dataset)
    assert data.segments is not None
    prepared = prepare(data, tiny(features="raw"))
    assert sorted(prepared.val_rows.tolist()) == [8, 9, 18, 19]
    assert len(prepared.x_train) == 2 * 7  # the 8th window of each overlaps the 9th


@pytest.mark.parametrize(
    ("cpu_max", "available", "threads"),
    [
        ("max 100000\n", 16, 16),
        ("200000 100000\n", 16, 2),
        ("150000 100000", 16, 2),
        ("50000 100000", 16, 1),
        ("800000 100000", 4, 4),
        (None, 3, 3),
        ("garbage", 2, 2),
    ],
)
def test_cpu_quota_follows_the_cgroup_limit(
    cpu_max: str | None, available: int, threads: int
) -> None:
    assert cpu_quota(cpu_max, available) == threads


def test_prepare_standardizes_with_the_training_split() -> None:
    params = tiny()
    data = prepare(obtain_dataset(params, None), params)
    assert data.x_train.shape[1] == data.x_val.shape[1] == 65
    assert len(data.y_train) + len(data.y_val) == 36
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-4)
    assert data.classes[0] == "normal"


def test_a_missing_dataset_names_the_path_and_datagen(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as caught:
        load_dataset(tmp_path / "nope" / "dataset.npz", "nope/dataset.npz")
    assert "nope/dataset.npz" in str(caught.value)
    assert not caught.value.permanent  # it may be there by the next try
    assert caught.value.suggestion is not None
    assert "datagen" in caught.value.suggestion


def test_a_file_that_is_not_a_dataset_is_a_task_error(tmp_path: Path) -> None:
    path = tmp_path / "dataset.npz"
    path.write_text("not a zip")
    with pytest.raises(TaskError, match="not a datagen dataset") as caught:
        load_dataset(path, "x/dataset.npz")
    assert caught.value.permanent  # a retry would read the same file


def setup(params: TrainParams) -> tuple[Trainer, Prepared]:
    torch.set_num_threads(1)
    data = prepare(obtain_dataset(params, None), params)
    return build_trainer(params, model_spec(params, data), CPU), data


def fit(trainer: Trainer, data: Prepared, epochs: range) -> list[dict[str, float]]:
    train_set = to_device(data.x_train, data.y_train, CPU)
    val_set = to_device(data.x_val, data.y_val, CPU)
    history = []
    for epoch in epochs:
        metrics = epoch_metrics(epoch, train_epoch(trainer, train_set), evaluate(trainer, val_set))
        history.append({k: v for k, v in metrics.items() if k != "samples_per_s"})
    return history


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_the_same_seed_gives_the_same_metrics(model: str) -> None:
    params = tiny(model=model)
    first = fit(*setup(params), range(1, 4))
    assert fit(*setup(params), range(1, 4)) == first
    other = fit(*setup(tiny(model=model, seed=1)), range(1, 4))
    assert other != first


def test_batches_report_progress_in_order() -> None:
    trainer, data = setup(tiny(batch_size=8))
    seen: list[tuple[int, int]] = []
    train_epoch(
        trainer, to_device(data.x_train, data.y_train, CPU), lambda d, t: seen.append((d, t))
    )
    n_batches = len(batch_bounds(len(data.y_train), 8))
    assert seen == [(i, n_batches) for i in range(1, n_batches + 1)]


@pytest.mark.parametrize(
    ("n", "size", "bounds"),
    [
        (20, 19, [(0, 20)]),  # a last batch of one sample joins the one before
        (9, 4, [(0, 4), (4, 9)]),
        (8, 4, [(0, 4), (4, 8)]),
        (1, 4, [(0, 1)]),  # nothing before it to join
        (3, 1, [(0, 1), (1, 3)]),
    ],
)
def test_no_batch_of_one_sample_but_where_nothing_else_can_be(
    n: int, size: int, bounds: list[tuple[int, int]]
) -> None:
    assert batch_bounds(n, size) == bounds


def test_a_deep_cnn_trains_on_20_signals_in_batches_of_19() -> None:
    """Its last block's BatchNorm sees one value per channel: a batch of one sample failed
    with torch's ValueError (exit 1, retried)."""
    params = tiny(model="cnn1d", width=2, depth=11, batch_size=19)
    trainer, data = setup(params)
    train_set = to_device(data.x_train[:20], data.y_train[:20], CPU)
    assert train_epoch(trainer, train_set).samples == 20


def test_batches_of_one_sample_through_a_cnn_that_narrows_to_one_value_are_refused() -> None:
    with pytest.raises(TaskError, match="cannot train on batches of 1 sample") as refused:
        setup(tiny(model="cnn1d", width=2, depth=11, batch_size=1))
    assert refused.value.permanent


def test_a_training_split_of_one_signal_through_such_a_cnn_is_refused_too() -> None:
    """Two signals, one of them held out: every batch is that one sample (it was torch's
    ValueError, exit 1, retried for nothing)."""
    params = tiny(model="cnn1d", width=2, depth=11, batch_size=32)
    data = prepare(obtain_dataset(params, None), params)
    spec = model_spec(params, data)
    said = r"batches of 1 sample \(the training split holds 1"
    with pytest.raises(TaskError, match=said) as refused:
        build_trainer(params, spec, CPU, n_train=1)
    assert refused.value.permanent
    build_trainer(params, spec, CPU, n_train=2)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    params = tiny(model="cnn1d", dropout=0.3)
    straight = fit(*setup(params), range(1, 5))

    trainer, data = setup(params)
    history = fit(trainer, data, range(1, 3))
    path = tmp_path / "checkpoint.pt"
    best = keep_best(None, epoch=2, val_accuracy=history[-1]["val_accuracy"], model=trainer.model)
    save_checkpoint(path, trainer, epoch=2, history=history, best=best, key=fingerprint(params))
    torch.manual_seed(12345)  # a new process starts with other random state

    trainer, data = setup(params.model_copy(update={"epochs": 4}))
    resumed = load_checkpoint(path, trainer, key=fingerprint(params), epochs=4)
    assert resumed is not None
    assert resumed.epoch == 2
    assert resumed.history + fit(trainer, data, range(3, 5)) == straight


def test_a_checkpoint_of_other_params_or_more_epochs_is_not_taken_up(tmp_path: Path) -> None:
    params = tiny()
    trainer, _ = setup(params)
    path = tmp_path / "checkpoint.pt"
    best = keep_best(None, epoch=3, val_accuracy=0.0, model=trainer.model)
    save_checkpoint(path, trainer, epoch=3, history=[], best=best, key=fingerprint(params))
    assert load_checkpoint(path, trainer, key=fingerprint(tiny(lr=0.1)), epochs=8) is None
    assert load_checkpoint(path, trainer, key=fingerprint(params), epochs=2) is None
    assert load_checkpoint(tmp_path / "absent.pt", trainer, key="", epochs=8) is None
    # epochs, device, threads and amp do not change what is being trained
    assert fingerprint(params) == fingerprint(tiny(epochs=50, device="cpu", threads=2, amp=False))


def test_a_dataset_whose_labels_or_values_cannot_be_learnt_is_refused_for_good(
    tmp_path: Path,
) -> None:
    """Labels outside `classes` (an IndexError deep in the loss), or a NaN in X (a model of
    NaN weights reported as a success): refused as it loads, naming what is wrong."""
    x = np.zeros((12, 64), dtype=np.float32)
    cases = {
        "outside": (x, np.array([0, 1, 2, 3] * 3), "labels y from 0 to 3, but 2 classes"),
        "negative": (x, np.array([-1, 0, 1] * 4), "labels y from -1 to 1, but 2 classes"),
        "nan": (
            np.where(np.eye(12, 64) > 0, np.nan, x),
            np.array([0, 1] * 6),
            "has 12 values in X that are NaN or infinite",
        ),
    }
    for name, (signals, labels, said) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, X=signals, y=labels, classes=np.array(["a", "b"]))
        with pytest.raises(TaskError) as caught:
            load_dataset(path, f"x/{name}.npz")
        assert caught.value.permanent, name
        assert said in str(caught.value), str(caught.value)


def test_a_dataset_of_one_signal_or_one_class_is_refused_for_good(tmp_path: Path) -> None:
    """One signal: said so (it read "need [n, length]" of a well-shaped array). One class:
    a classifier trained on it scored a perfect 1.0 and "succeeded"."""
    path = tmp_path / "one.npz"
    np.savez(path, X=np.zeros((1, 64)), y=np.array([0]), classes=np.array(["normal"]))
    with pytest.raises(TaskError, match=r"holds 1 signal\(s\): at least 2") as caught:
        load_dataset(path, "x/one.npz")
    assert caught.value.permanent
    single = Dataset(
        x=np.zeros((6, 64), dtype=np.float32),
        y=np.zeros(6, dtype=np.int64),
        classes=["normal", "inner"],
        source="x/d.npz",
    )
    with pytest.raises(TaskError, match=r"one class only \(normal\)") as caught:
        require_classes(single)
    assert caught.value.permanent
    assert caught.value.suggestion is not None
    require_classes(Dataset(single.x, np.array([0, 1] * 3), single.classes, "x/d.npz"))
