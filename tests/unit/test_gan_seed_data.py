"""gan-seed's sensor data: its columns and types, per-machine ratings, and faults that move
the signals a real fault would move."""

from __future__ import annotations

import pandas as pd
import pytest

from kubetask.jobs.kinds.ml.seed_data import (
    CATEGORICAL,
    COLUMNS,
    FAULTS,
    MODES,
    NUMERIC,
    machine_profile,
    seed_frame,
)


def frame(machine_id: str = "pump-1", rows: int = 2000, fault_rate: float = 0.3) -> pd.DataFrame:
    return seed_frame(machine_id, rows=rows, fault_rate=fault_rate, seed=0)


def test_columns_and_types() -> None:
    data = frame()
    assert tuple(data.columns) == COLUMNS
    assert len(data) == 2000
    for column in NUMERIC:
        assert pd.api.types.is_numeric_dtype(data[column]), column
    assert pd.api.types.is_integer_dtype(data["rpm"])
    for column in CATEGORICAL:
        assert data[column].dtype == object, column
    assert set(data["operating_mode"]) == set(MODES)
    assert set(data["fault_label"]) == set(FAULTS)
    assert not data.isna().any().any()


def test_values_are_physical() -> None:
    data = frame()
    assert data["load_pct"].between(0, 110).all()
    assert (data["vibration_rms"] > 0).all()
    assert (data["pressure_bar"] >= 0).all()
    assert (data["current_a"] >= 0).all()
    assert data["temperature_c"].between(0, 120).all()


def test_the_same_seed_gives_the_same_rows_and_machines_differ() -> None:
    pd.testing.assert_frame_equal(frame(), frame())
    assert machine_profile("pump-1") == machine_profile("pump-1")
    assert machine_profile("pump-1") != machine_profile("pump-2")
    assert not frame("pump-1").equals(frame("pump-2"))


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_the_fault_rate_is_respected(rate: float) -> None:
    share = (frame(rows=4000, fault_rate=rate)["fault_label"] != "none").mean()
    assert share == pytest.approx(rate, abs=0.03)


@pytest.mark.parametrize(
    ("fault", "column", "higher"),
    [
        ("overheating", "temperature_c", True),
        ("overheating", "current_a", True),
        ("bearing_wear", "vibration_rms", True),
        ("imbalance", "vibration_rms", True),
        ("pressure_leak", "pressure_bar", False),
    ],
)
def test_faults_shift_their_signals(fault: str, column: str, higher: bool) -> None:
    data = frame(rows=6000, fault_rate=0.5)
    normal = data[(data.operating_mode == "normal") & (data.fault_label == "none")][column]
    faulty = data[(data.operating_mode == "normal") & (data.fault_label == fault)][column]
    assert (faulty.mean() > normal.mean()) == higher


def test_load_follows_the_operating_mode() -> None:
    means = frame().groupby("operating_mode")["load_pct"].mean()
    assert means["idle"] < means["normal"] < means["peak"]
