"""Seed sensor data for one machine: what a plant historian would export for a pump motor.

Each row is one reading: the operating mode (idle, normal, peak) sets the load, the load sets
speed, current, pressure and temperature, and a fault (bearing wear, imbalance, overheating,
a pressure leak) shifts the signals it would shift on a real machine. The machine id fixes the
machine's own ratings (a stable hash, the same on every run and host), so two machines differ
the way two installed machines do. Pure: numpy and pandas, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

MODES = ("idle", "normal", "peak")
MODE_SHARE = (0.15, 0.6, 0.25)
FAULTS = ("none", "bearing_wear", "imbalance", "overheating", "pressure_leak")
NUMERIC = ("load_pct", "rpm", "temperature_c", "vibration_rms", "pressure_bar", "current_a")
CATEGORICAL = ("operating_mode", "fault_label")
COLUMNS = ("operating_mode", *NUMERIC, "fault_label")


@dataclass(frozen=True)
class MachineProfile:
    """A machine's ratings, drawn once from its id."""

    rated_rpm: float
    ambient_c: float
    rated_current_a: float
    nominal_pressure_bar: float
    base_vibration: float  # mm/s RMS at full load, healthy


def machine_key(machine_id: str) -> int:
    return int.from_bytes(hashlib.sha256(machine_id.encode()).digest()[:8], "big")


def machine_profile(machine_id: str) -> MachineProfile:
    rng = np.random.default_rng(machine_key(machine_id))
    return MachineProfile(
        rated_rpm=float(rng.choice([1480.0, 1760.0, 2950.0])),
        ambient_c=float(rng.uniform(18.0, 32.0)),
        rated_current_a=float(rng.uniform(20.0, 60.0)),
        nominal_pressure_bar=float(rng.uniform(4.0, 10.0)),
        base_vibration=float(rng.uniform(1.2, 2.8)),
    )


def seed_frame(machine_id: str, *, rows: int, fault_rate: float, seed: int) -> pd.DataFrame:
    """`rows` readings of the machine, `fault_rate` of them under one of the faults."""
    profile = machine_profile(machine_id)
    rng = np.random.default_rng([seed, machine_key(machine_id)])
    mode = rng.choice(np.array(MODES), size=rows, p=MODE_SHARE)
    load = np.select(
        [mode == "idle", mode == "normal"],
        [rng.uniform(5, 15, rows), rng.normal(65, 8, rows)],
        rng.normal(92, 4, rows),
    ).clip(0, 110)
    faulty = rng.random(rows) < fault_rate
    fault = np.where(faulty, rng.choice(np.array(FAULTS[1:]), size=rows), FAULTS[0])
    speed = np.where(mode == "idle", 0.4, 1.0) + 0.0003 * (load - 65)
    rpm = profile.rated_rpm * speed * (1 + rng.normal(0, 0.004, rows))
    temperature = profile.ambient_c + 0.35 * load + rng.normal(0, 1.5, rows)
    temperature += np.select([fault == "overheating", fault == "bearing_wear"], [18.0, 6.0], 0.0)
    vibration = profile.base_vibration * (0.5 + load / 200) * rng.lognormal(0, 0.1, rows)
    vibration += np.where(fault == "bearing_wear", rng.uniform(2.0, 5.0, rows), 0.0)
    vibration += np.where(fault == "imbalance", 3.0 * speed**2, 0.0)
    pressure = profile.nominal_pressure_bar * (0.4 + 0.6 * load / 100) + rng.normal(0, 0.08, rows)
    pressure -= np.where(fault == "pressure_leak", rng.uniform(0.8, 2.0, rows), 0.0)
    current = profile.rated_current_a * (0.2 + 0.8 * load / 100) + rng.normal(0, 0.4, rows)
    current += np.where(fault == "overheating", 0.12 * profile.rated_current_a, 0.0)
    return pd.DataFrame(
        {
            "operating_mode": mode.astype(object),
            "load_pct": load.round(1),
            "rpm": rpm.round().astype(np.int64),
            "temperature_c": temperature.round(1),
            "vibration_rms": vibration.clip(0.05).round(2),
            "pressure_bar": pressure.clip(0).round(2),
            "current_a": current.clip(0).round(1),
            "fault_label": fault.astype(object),
        },
        columns=list(COLUMNS),
    )
