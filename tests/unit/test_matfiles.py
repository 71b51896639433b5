"""`mat-import` on lab files that are awkward, not broken: a label or sample rate stored as
a struct, a cell, bytes or a non-finite number is no label or rate (a `MatFileError`
naming it, so the file is skipped or fails the job permanently: never a raw TypeError,
retried); samples that are NaN or infinite make the file unusable, named, never imported
into a dataset `train` then refuses; a matrix of more recordings than samples each is read
as the user says (`recordings_in`), and each file's progress says how it was read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io

from kubetask.jobs.kinds.mat_import import Imported, import_file
from kubetask.jobs.kinds.ml.matfiles import (
    MatFileError,
    label_of,
    pick_signal,
    read_mat,
    sample_rate_of,
)
from kubetask.jobs.params.catalog import MatImportParams

SIGNAL = np.random.default_rng(0).standard_normal(4096)


def saved(tmp_path: Path, **variables: Any) -> Path:
    path = tmp_path / "f.mat"
    scipy.io.savemat(path, variables)
    return path


@pytest.mark.parametrize(
    "label",
    [{"v": 1.0}, np.array(["inner"], dtype=object), np.nan, 1 + 2j],
    ids=["struct", "cell", "nan", "complex"],
)
def test_a_label_that_is_no_text_or_single_number_is_named(tmp_path: Path, label: Any) -> None:
    variables = read_mat(saved(tmp_path, x=SIGNAL, label=label))
    with pytest.raises(MatFileError, match="no text label variable 'label'"):
        label_of(tmp_path / "f.mat", variables, source="variable", pattern=None, variable="label")


def test_a_number_is_a_label() -> None:
    label = label_of(
        Path("f.mat"), {"y": np.array([[3.0]])}, source="variable", pattern=None, variable="y"
    )
    assert label == "3"


@pytest.mark.parametrize(
    "fs", [{"v": 1.0}, np.inf, np.nan, 0.0], ids=["struct", "inf", "nan", "zero"]
)
def test_a_sample_rate_that_is_no_positive_finite_number_is_none(tmp_path: Path, fs: Any) -> None:
    assert sample_rate_of(read_mat(saved(tmp_path, x=SIGNAL, fs=fs))) is None
    assert sample_rate_of(read_mat(saved(tmp_path, x=SIGNAL, fs=12000.0))) == 12000.0


def test_a_signal_with_nan_or_infinite_samples_is_named_not_imported(tmp_path: Path) -> None:
    bad = SIGNAL.copy()
    bad[100], bad[2000] = np.nan, np.inf
    params = MatImportParams.model_validate({"files": "f.mat"})
    imported = Imported()
    with pytest.raises(MatFileError, match=r"'x' holds 2 samples that are NaN or infinite"):
        import_file(saved(tmp_path, x=bad, fs=12000.0), params, imported, "f.mat")
    assert imported.signals == []
    assert import_file(saved(tmp_path, x=SIGNAL, fs=12000.0), params, imported, "f.mat").segments


TRIALS = np.random.default_rng(1).standard_normal((300, 256))  # 300 trials of 256 samples


@pytest.mark.parametrize(
    ("layout", "recordings", "samples"),
    [("rows", 300, 256), ("columns", 256, 300), ("auto", 256, 300)],
)
def test_a_matrix_is_read_as_recordings_in_says(
    tmp_path: Path, layout: str, recordings: int, samples: int
) -> None:
    params = MatImportParams.model_validate(
        {"files": "f.mat", "segment_length": 128, "recordings_in": layout}
    )
    imported = Imported()
    cut = import_file(saved(tmp_path, x=TRIALS, fs=1000.0), params, imported, "f.mat")
    assert (cut.recordings, cut.samples) == (recordings, samples)
    cut_text = f"{cut.segments} segments from {recordings} recordings of {samples} samples"
    assert str(cut) == f"'x': {cut_text}"
    assert imported.recordings == recordings
    first = imported.signals[0][0]
    expected = TRIALS[0, :128] if layout == "rows" else TRIALS[:128, 0]
    np.testing.assert_allclose(first, expected.astype(np.float32))


def test_a_vector_is_one_recording_whatever_the_layout(tmp_path: Path) -> None:
    params = MatImportParams.model_validate({"files": "f.mat", "recordings_in": "columns"})
    cut = import_file(saved(tmp_path, x=SIGNAL, fs=1000.0), params, Imported(), "f.mat")
    assert str(cut) == "'x': 4 segments from 1 recording of 4096 samples"


def test_recordings_in_takes_only_its_three_values() -> None:
    with pytest.raises(ValueError, match="recordings_in"):
        MatImportParams.model_validate({"recordings_in": "time"})


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (SIGNAL.astype(np.complex128), "complex"),
        (np.array([]), "empty"),
        (np.array([[5.0]]), "a single number"),
        ("some text", "text"),
        ({"a": SIGNAL}, "a struct or cell"),
    ],
    ids=["complex", "empty", "scalar", "text", "struct"],
)
def test_no_signal_variable_says_why_each_match_is_none(
    tmp_path: Path, value: Any, why: str
) -> None:
    variables = read_mat(saved(tmp_path, x_DE_time=value, other=SIGNAL))
    with pytest.raises(MatFileError) as raised:
        pick_signal(variables, ".*DE_time")
    assert str(raised.value) == (
        f"no matching '.*DE_time' signal variable ('x_DE_time' is {why}; "
        "variables: other, x_DE_time)"
    )
    assert pick_signal(variables, None)[0] == "other"


def test_a_tie_for_the_largest_variable_is_named_in_the_files_progress(tmp_path: Path) -> None:
    path = saved(tmp_path, X097_DE_time=SIGNAL, X097_FE_time=SIGNAL, X097_BA_time=SIGNAL, fs=1e3)
    params = MatImportParams.model_validate({"files": "f.mat"})
    cut = import_file(path, params, Imported(), "f.mat")
    assert str(cut) == (
        "'X097_FE_time', chosen by name over X097_BA_time, X097_DE_time: set `variable`: "
        "4 segments from 1 recording of 4096 samples"
    )
    chosen = MatImportParams.model_validate({"files": "f.mat", "variable": ".*DE_time"})
    assert str(import_file(path, chosen, Imported(), "f.mat")).startswith("'X097_DE_time': 4 ")
