"""`mat-import` on lab files that are awkward, not broken: a label or sample rate stored as
a struct, a cell, bytes or a non-finite number is no label or rate (a `MatFileError`
naming it, so the file is skipped or fails the job permanently: never a raw TypeError,
retried); samples that are NaN or infinite make the file unusable, named, never imported
into a dataset `train` then refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io

from kubetask.jobs.kinds.mat_import import Imported, import_file
from kubetask.jobs.kinds.ml.matfiles import MatFileError, label_of, read_mat, sample_rate_of
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
    assert import_file(saved(tmp_path, x=SIGNAL, fs=12000.0), params, imported, "f.mat") > 0
