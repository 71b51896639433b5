"""Features of one vibration signal, pure numpy/scipy: time domain (RMS, kurtosis, skewness,
crest factor, peak-to-peak), energies in equal-width FFT bands, and the largest peaks of the
envelope spectrum (the spectrum of the demodulated signal, where bearing defect rates show).

Conventions: RMS is not mean-removed; kurtosis is Pearson's (a Gaussian's is 3); band
energies are one-sided power spectrum sums normalized so that, over all bands, they add up
to the mean square (RMS squared, Parseval); envelope-spectrum amplitudes are single-sided
(a tone of amplitude A in the envelope shows as A).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import find_peaks

Signal = NDArray[np.float64]
TIME_FEATURES = ("rms", "kurtosis", "skewness", "crest_factor", "peak_to_peak")


def time_features(x: Signal) -> dict[str, float]:
    """RMS, kurtosis, skewness, crest factor (peak |x| / RMS) and peak-to-peak."""
    rms = float(np.sqrt(np.mean(x * x)))
    centred = x - x.mean()
    variance = float(np.mean(centred * centred))
    if variance > 0:
        skewness = float(np.mean(centred**3) / variance**1.5)
        kurtosis = float(np.mean(centred**4) / variance**2)
    else:
        skewness, kurtosis = 0.0, 0.0
    return {
        "rms": rms,
        "kurtosis": kurtosis,
        "skewness": skewness,
        "crest_factor": float(np.max(np.abs(x)) / rms) if rms > 0 else 0.0,
        "peak_to_peak": float(np.ptp(x)),
    }


def band_edges(sample_rate: float, bands: int) -> NDArray[np.float64]:
    """`bands + 1` edges (Hz) of equal-width bands from 0 to the Nyquist frequency."""
    return np.linspace(0.0, sample_rate / 2, bands + 1)


def one_sided_power(x: Signal) -> Signal:
    """Power per rfft bin, scaled so that the bins add up to mean(x**2)."""
    n = len(x)
    power = np.abs(np.fft.rfft(x)) ** 2 / n**2
    power[1 : (n + 1) // 2] *= 2  # every bin but DC (and Nyquist for even n) stands for two
    return power


def band_energies(x: Signal, sample_rate: float, bands: int) -> Signal:
    """The power in each equal-width band (a bin on an inner edge goes to the upper band)."""
    power = one_sided_power(x)
    freqs = np.fft.rfftfreq(len(x), d=1 / sample_rate)
    index = np.minimum((freqs / (sample_rate / 2) * bands).astype(np.int64), bands - 1)
    return np.bincount(index, weights=power, minlength=bands).astype(np.float64)


def envelope(x: Signal, sample_rate: float, band: tuple[float, float] | None = None) -> Signal:
    """|analytic signal| of `x`, band-passed first when `band` (Hz) is given."""
    n = len(x)
    spectrum = np.fft.fft(x)
    freqs = np.fft.fftfreq(n, d=1 / sample_rate)
    gain = np.zeros(n)
    gain[freqs > 0] = 2.0  # the analytic signal: positive frequencies doubled, negative dropped
    gain[0] = 1.0
    if n % 2 == 0:
        gain[n // 2] = 1.0
    if band is not None:
        gain[(np.abs(freqs) < band[0]) | (np.abs(freqs) > band[1])] = 0.0
    analytic = np.fft.ifft(spectrum * gain)
    return np.abs(analytic)


@dataclass(frozen=True)
class Peak:
    hz: float
    amplitude: float


def envelope_peaks(
    x: Signal,
    sample_rate: float,
    *,
    count: int,
    band: tuple[float, float] | None = None,
    max_hz: float | None = None,
) -> list[Peak]:
    """The `count` largest local maxima of the envelope spectrum (DC excluded), largest
    first."""
    if count == 0:
        return []
    env = envelope(x, sample_rate, band)
    n = len(env)
    amplitude = np.abs(np.fft.rfft(env - env.mean())) / n
    amplitude[1 : (n + 1) // 2] *= 2
    freqs = np.fft.rfftfreq(n, d=1 / sample_rate)
    upto = len(freqs) if max_hz is None else int(np.searchsorted(freqs, max_hz, side="right"))
    found, _ = find_peaks(amplitude[:upto])
    found = found[found > 0]
    strongest = found[np.argsort(amplitude[found])[::-1][:count]]
    return [Peak(float(freqs[k]), float(amplitude[k])) for k in strongest]
