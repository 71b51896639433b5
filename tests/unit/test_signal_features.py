"""The features maths on signals whose answers are known in closed form, and against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kubetask.jobs.kinds.ml.signal_features import (
    band_edges,
    band_energies,
    envelope,
    envelope_peaks,
    time_features,
)

RATE = 1000.0
T = np.arange(2000) / RATE  # 2 s: every tone below lands on an FFT bin


def sine(amplitude: float, hz: float) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * T)


def test_time_features_of_a_sine() -> None:
    features = time_features(sine(3.0, 50.0))
    assert features["rms"] == pytest.approx(3.0 / np.sqrt(2))
    assert features["crest_factor"] == pytest.approx(np.sqrt(2))
    assert features["peak_to_peak"] == pytest.approx(6.0, rel=1e-3)
    assert features["kurtosis"] == pytest.approx(1.5)  # a sine's Pearson kurtosis
    assert features["skewness"] == pytest.approx(0.0, abs=1e-9)


def test_kurtosis_and_skewness_match_scipy_on_an_impulsive_signal() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=4096) + (rng.random(4096) < 0.01) * 8.0  # sparse impacts
    features = time_features(x)
    assert features["kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=False))
    assert features["skewness"] == pytest.approx(stats.skew(x))
    assert features["kurtosis"] > 3  # impacts make it heavier-tailed than a Gaussian


def test_a_constant_signal_has_no_shape_features_but_its_level() -> None:
    features = time_features(np.full(100, 2.0))
    assert features == {
        "rms": 2.0,
        "kurtosis": 0.0,
        "skewness": 0.0,
        "crest_factor": 1.0,
        "peak_to_peak": 0.0,
    }
    assert time_features(np.zeros(10))["crest_factor"] == 0.0


def test_band_energies_add_up_to_the_mean_square_and_a_tone_lands_in_its_band() -> None:
    x = sine(2.0, 130.0) + sine(1.0, 410.0) + 0.5  # bands of 62.5 Hz up to 500 Hz
    energies = band_energies(x, RATE, 8)
    assert energies.sum() == pytest.approx(np.mean(x**2))
    assert energies[0] == pytest.approx(0.25)  # DC
    assert energies[2] == pytest.approx(2.0)  # 130 Hz in [125, 187.5): A^2 / 2
    assert energies[6] == pytest.approx(0.5)  # 410 Hz in [375, 437.5)
    assert energies[[1, 3, 4, 5, 7]] == pytest.approx(0.0, abs=1e-12)
    assert band_edges(RATE, 8).tolist() == [0, 62.5, 125, 187.5, 250, 312.5, 375, 437.5, 500]


def test_odd_lengths_keep_parseval() -> None:
    x = np.random.default_rng(1).normal(size=999)
    assert band_energies(x, RATE, 5).sum() == pytest.approx(np.mean(x**2))


def test_envelope_spectrum_finds_the_modulation_rate_of_an_amplitude_modulated_tone() -> None:
    carrier, rate_hz = 200.0, 12.0  # a resonance rung at a defect rate
    x = (1 + 0.5 * np.sin(2 * np.pi * rate_hz * T)) * np.sin(2 * np.pi * carrier * T)
    assert envelope(x, RATE)[100:-100] == pytest.approx(
        1 + 0.5 * np.sin(2 * np.pi * rate_hz * T[100:-100]), abs=1e-6
    )
    peaks = envelope_peaks(x, RATE, count=2)
    assert peaks[0].hz == pytest.approx(rate_hz)
    assert peaks[0].amplitude == pytest.approx(0.5, rel=1e-3)
    assert len(peaks) <= 2


def test_envelope_band_pass_and_frequency_limit() -> None:
    # two modulated carriers: only the one inside the band shows its rate
    x = (1 + 0.5 * np.sin(2 * np.pi * 12 * T)) * np.sin(2 * np.pi * 200 * T)
    x += (1 + 0.5 * np.sin(2 * np.pi * 30 * T)) * np.sin(2 * np.pi * 400 * T)
    inside = envelope_peaks(x, RATE, count=1, band=(350.0, 450.0))
    assert inside[0].hz == pytest.approx(30.0)
    below = envelope_peaks(x, RATE, count=1, band=(150.0, 250.0), max_hz=20.0)
    assert below[0].hz == pytest.approx(12.0)
    assert envelope_peaks(x, RATE, count=0) == []
