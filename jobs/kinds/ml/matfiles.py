"""Reading MATLAB .mat files of vibration recordings: v4-v7 through scipy.io, v7.3 (HDF5)
through h5py; picking the signal variable, the label and the sample rate; cutting
recordings into fixed-length segments. What makes a file unusable is a `MatFileError` whose
message says why; everything but the file reading is pure."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import scipy.io
from numpy.typing import NDArray

from kubetask.jobs.kinds.datagen import make_signal
from kubetask.jobs.params import DatagenParams, FaultClass

Variables = dict[str, NDArray[np.generic] | str]
SAMPLE_RATE_NAMES = ("fs", "Fs", "FS", "sample_rate", "sampling_rate")
MATLAB_73_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: kubetask HDF5 schema 1.00 ."
)


class MatFileError(Exception):
    """This file cannot be imported; the message says why."""


def read_mat(path: Path) -> Variables:
    """The file's top-level variables: numeric arrays, and text as `str`."""
    try:
        if h5py.is_hdf5(path):
            return _read_hdf5(path)
        raw = scipy.io.loadmat(path, chars_as_strings=True)
    except MatFileError:
        raise
    except Exception as exc:  # scipy and h5py raise many types for a bad file
        raise MatFileError(f"not a readable .mat file ({type(exc).__name__}: {exc})") from exc
    variables: Variables = {}
    for name, value in raw.items():
        if name.startswith("__") or not isinstance(value, np.ndarray):
            continue
        if value.dtype.kind == "U":
            variables[name] = "".join(str(v) for v in value.ravel()).strip()
        else:
            variables[name] = value
    return variables


def _read_hdf5(path: Path) -> Variables:
    """A v7.3 file: MATLAB writes arrays transposed and text as uint16 code units. Only
    data inside the file is read (`_inside`): HDF5 can point elsewhere."""
    variables: Variables = {}
    with h5py.File(path, "r") as file:
        for name in file:
            _inside(file, name)
            item = file[name]
            if not isinstance(item, h5py.Dataset) or name.startswith("#"):
                continue
            value = np.asarray(item[()])
            matlab_class = item.attrs.get("MATLAB_class", b"")
            if isinstance(matlab_class, bytes):
                matlab_class = matlab_class.decode()
            if matlab_class == "char":
                variables[name] = "".join(chr(c) for c in value.ravel()).strip()
            else:
                variables[name] = value.T
    return variables


def _inside(file: h5py.File, name: str) -> None:
    """MatFileError unless the variable's data is the file's own: HDF5 follows an external
    or soft link, a dataset stored in other files (`external`) and a virtual one (mapped
    from other files) wherever they point, which would read, as a variable, any file the
    task can read (another tenant's upload, the server's secrets). MATLAB writes none."""
    link = file.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise MatFileError(f"variable {name!r} is a link ({type(link).__name__}): refused")
    item = file[name]
    if isinstance(item, h5py.Dataset) and (item.external or item.is_virtual):
        kind = "stored in other files" if item.external else "a virtual dataset"
        raise MatFileError(f"variable {name!r} is {kind}: refused")


def _numeric(value: NDArray[np.generic] | str) -> bool:
    return not_a_signal(value) is None


def not_a_signal(value: NDArray[np.generic] | str) -> str | None:
    """Why a variable cannot be a signal (text, complex, a struct or cell, one number or
    none); None: it can."""
    if isinstance(value, str):
        return "text"
    if value.dtype.kind == "c":
        return "complex"
    if value.dtype.kind not in "fiu":
        return "a struct or cell" if value.dtype.kind in "OV" else f"of type {value.dtype}"
    if value.size <= 1:
        return "empty" if value.size == 0 else "a single number"
    return None


def pick_signal(variables: Variables, pattern: str | None) -> tuple[str, NDArray[np.float64]]:
    """(name, array) of the signal variable: the largest numeric array, among those whose
    name matches `pattern` in full when one is given; MatFileError naming why the
    variables that match are none (each one's reason) when there is none."""
    named = {k: v for k, v in variables.items() if pattern is None or re.fullmatch(pattern, k)}
    candidates = {k: v for k, v in named.items() if _numeric(v)}
    if not candidates:
        names = ", ".join(sorted(variables)) or "none"
        wanted = f"matching {pattern!r}" if pattern else "numeric"
        why = "; ".join(f"{k!r} is {not_a_signal(v)}" for k, v in sorted(named.items()))
        raise MatFileError(
            f"no {wanted} signal variable ({why + '; ' if why else ''}variables: {names})"
        )
    name = max(candidates, key=lambda k: (np.size(candidates[k]), k))
    return name, np.asarray(candidates[name], dtype=np.float64)


def alike(variables: Variables, pattern: str | None, name: str) -> list[str]:
    """The other signal variables as large as `name` that `pick_signal` passed over (by
    name: the last in order wins a tie), sorted."""
    size = np.size(variables[name])
    return sorted(
        k
        for k, v in variables.items()
        if k != name
        and _numeric(v)
        and np.size(v) == size
        and (pattern is None or re.fullmatch(pattern, k))
    )


Layout = Literal["auto", "rows", "columns"]


def recordings(array: NDArray[np.float64], layout: Layout = "auto") -> list[NDArray[np.float64]]:
    """The 1-D recordings in an array: a vector is one; a matrix holds one per row or one
    per column, as `layout` says (auto: time runs along the longer axis)."""
    squeezed = np.squeeze(array)
    if squeezed.ndim == 1:
        return [squeezed]
    if squeezed.ndim != 2:
        raise MatFileError(f"the signal variable has shape {array.shape}: need a vector or matrix")
    if layout == "auto":
        layout = "rows" if squeezed.shape[1] >= squeezed.shape[0] else "columns"
    return list(squeezed if layout == "rows" else squeezed.T)


def window_starts(
    samples: int, length: int, overlap: float, limit: int | None
) -> NDArray[np.int64]:
    """The first sample of each window `segments` cuts from `samples` samples."""
    step = max(1, round(length * (1 - overlap)))
    count = 0 if samples < length else 1 + (samples - length) // step
    if limit is not None:
        count = min(count, limit)
    return np.arange(count, dtype=np.int64) * step


def segments(
    recording: NDArray[np.float64], length: int, overlap: float, limit: int | None
) -> NDArray[np.float32]:
    """Consecutive windows of `length` samples overlapping by `overlap` (at most `limit`);
    the tail shorter than a window is dropped."""
    starts = window_starts(len(recording), length, overlap, limit)
    windows: NDArray[np.float32] = recording[starts[:, None] + np.arange(length)].astype(np.float32)
    return windows.reshape(len(starts), length)


def label_of(
    path: Path, variables: Variables, *, source: str, pattern: str | None, variable: str
) -> str:
    """The class of a file: its folder's name, its name (or `pattern`'s first group in
    it), or a text (or scalar) variable in it."""
    if source == "folder":
        return path.parent.name
    if source == "filename":
        if pattern is None:
            return path.stem
        found = re.search(pattern, path.stem)
        label = None if found is None else found.group(1) if found.groups() else found.group(0)
        if not label:  # no match, an optional group that took no part, or an empty match
            raise MatFileError(f"label_pattern {pattern!r} finds no label in the file name")
        return label
    value = variables.get(variable)
    if isinstance(value, str) and value:
        return value
    number = _number(value)
    if number is not None:
        return str(int(number)) if number.is_integer() else str(number)
    raise MatFileError(f"no text label variable {variable!r} (a text, or a single number)")


def _number(value: object) -> float | None:
    """The finite real number a one-element numeric variable holds; None for anything else
    (a struct, a cell, bytes, a complex number, NaN)."""
    if not isinstance(value, np.ndarray) or value.size != 1 or value.dtype.kind not in "biuf":
        return None
    number = float(value.ravel()[0])
    return number if math.isfinite(number) else None


def sample_rate_of(variables: Variables) -> float | None:
    """A scalar sample-rate variable ('fs', 'sample_rate', ...), if the file has one."""
    for name in SAMPLE_RATE_NAMES:
        rate = _number(variables.get(name))
        if rate is not None and rate > 0:
            return rate
    return None


# -- example files ------------------------------------------------------------------------


def write_v5(path: Path, signal: NDArray[np.float64], sample_rate: float) -> None:
    """A MATLAB v5 file like a CWRU recording: a column vector 'DE_time' and 'fs'."""
    scipy.io.savemat(path, {"DE_time": signal[:, None], "fs": np.array([[sample_rate]])})


def write_v73(path: Path, signal: NDArray[np.float64], sample_rate: float) -> None:
    """A v7.3 (HDF5) file as MATLAB writes one: the 512-byte header block, arrays stored
    transposed, each with its MATLAB_class."""
    with h5py.File(path, "w", userblock_size=512) as file:
        column = file.create_dataset("DE_time", data=signal[None, :])
        column.attrs["MATLAB_class"] = np.bytes_("double")
        rate = file.create_dataset("fs", data=np.array([[sample_rate]]))
        rate.attrs["MATLAB_class"] = np.bytes_("double")
    with path.open("r+b") as raw:
        # 116 bytes of text, 8 of subsystem offset, then version 0x0200 and the endian mark
        raw.write(MATLAB_73_HEADER.ljust(116, b" ") + bytes(8) + b"\x00\x02IM")


def write_examples(folder: Path, *, seed: int = 0) -> list[Path]:
    """Two recordings per fault class from datagen's physics, one v5 and one v7.3 file,
    in a folder per class (12 kHz, 4096 samples)."""
    params = DatagenParams(length=4096, sample_rate=12_000.0, seed=seed)
    rng = np.random.default_rng(seed)
    written = []
    for fault in FaultClass:
        (folder / fault.value).mkdir(parents=True, exist_ok=True)
        for number, writer in enumerate((write_v5, write_v73), 1):
            path = folder / fault.value / f"{fault.value}-{number}.mat"
            writer(path, make_signal(fault, params, rng), params.sample_rate)
            written.append(path)
    return written
