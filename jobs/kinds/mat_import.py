"""`mat-import`: MATLAB .mat recordings (a path, a folder or a glob under the artifact store)
into `dataset.npz`, the format `datagen` writes and `train` reads: each file's signal
variable cut into `segment_length` windows, labelled by folder, file name or a variable.
Progress per file (`stage="import"`). A file that cannot be used (unreadable, no signal
variable, no label, another sample rate) is named in the result and skipped, or fails the
job with `on_error="fail"`. Without `files`, example files (v5 and v7.3) are written first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import InvalidParams, TaskError
from kubetask.jobs.kinds.ml.matfiles import (
    MatFileError,
    alike,
    label_of,
    pick_signal,
    read_mat,
    recordings,
    sample_rate_of,
    segments,
    window_starts,
    write_examples,
)
from kubetask.jobs.params.catalog import MatImportParams

GLOB_CHARS = set("*?[")
MAX_SKIPPED_LISTED = 10


@dataclass
class Imported:
    """What the files gave so far."""

    signals: list[NDArray[np.float32]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    file_index: list[int] = field(default_factory=list)
    recording: list[int] = field(default_factory=list)  # per window: which recording, and
    start: list[int] = field(default_factory=list)  # its first sample (train splits by it)
    recordings: int = 0
    files: list[str] = field(default_factory=list)
    skipped: list[dict[str, JsonValue]] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)
    sample_rate: float | None = None


def matching_files(root: Path, pattern: str) -> list[Path]:
    """Files named by `pattern` under `root`: a file, every .mat file below a folder, or a
    glob's matches (sorted). A file of that very name wins over a glob (`rec[1].mat`); a
    glob ending in `**` is every .mat file below what it matches, as a folder is (pathlib's
    own `**` at the end matches folders only)."""
    if (root / pattern).is_file():
        return [root / pattern]
    if pattern.rstrip("/").endswith("**"):
        pattern = f"{pattern.rstrip('/')}/*.mat"
    if not GLOB_CHARS & set(pattern):
        target = root / pattern
        if target.is_dir():
            return sorted(p for p in target.glob("**/*.mat") if p.is_file())
        return [target] if target.is_file() else []
    return sorted(p for p in root.glob(pattern) if p.is_file())


@dataclass(frozen=True)
class FileCut:
    """What one file gave: its segments, from so many recordings of so many samples of its
    signal variable (chosen by name over `passed_over`, as large)."""

    segments: int
    recordings: int
    samples: int
    variable: str
    passed_over: tuple[str, ...] = ()

    def __str__(self) -> str:
        plural = "s" if self.recordings != 1 else ""
        tie = ""
        if self.passed_over:
            tie = f", chosen by name over {', '.join(self.passed_over)}: set `variable`"
        return (
            f"{self.variable!r}{tie}: {self.segments} segments from {self.recordings} "
            f"recording{plural} of {self.samples} samples"
        )


def import_file(path: Path, params: MatImportParams, imported: Imported, name: str) -> FileCut:
    """Add one file's segments. Raises MatFileError for an unusable file."""
    variables = read_mat(path)
    variable, array = pick_signal(variables, params.variable)
    unusable = int(array.size - np.count_nonzero(np.isfinite(array)))
    if unusable:  # a model cannot learn from them, and `train` would refuse the dataset
        raise MatFileError(
            f"{variable!r} holds {unusable} samples that are NaN or infinite (of {array.size})"
        )
    label = label_of(
        path,
        variables,
        source=params.label_from,
        pattern=params.label_pattern,
        variable=params.label_variable,
    )
    rate = params.sample_rate or sample_rate_of(variables)
    if rate is None:
        raise MatFileError("no sample rate: set `sample_rate` or add an 'fs' variable")
    if imported.sample_rate is not None and rate != imported.sample_rate:
        raise MatFileError(
            f"sample rate {rate:g} Hz, unlike the {imported.sample_rate:g} Hz before"
        )
    length, overlap, limit = params.segment_length, params.overlap, params.max_segments_per_file
    windows, where = [], []
    rows = recordings(array, params.recordings_in)
    for number, recording in enumerate(rows, start=imported.recordings):
        starts = window_starts(len(recording), length, overlap, limit)
        windows.append(segments(recording, length, overlap, limit))
        where += [(number, int(start)) for start in starts]
    cut = np.concatenate(windows)
    if limit is not None:
        cut, where = cut[:limit], where[:limit]
    longest = max(len(r) for r in rows)
    if len(cut) == 0:
        raise MatFileError(
            f"{variable!r} has {longest} samples, fewer than segment_length={params.segment_length}"
        )
    imported.sample_rate = rate
    imported.signals.append(cut)
    imported.labels += [label] * len(cut)
    imported.file_index += [len(imported.files)] * len(cut)
    imported.recording += [number for number, _ in where]
    imported.start += [start for _, start in where]
    imported.recordings += len(windows)
    imported.files.append(name)
    imported.variables.add(variable)
    passed_over = tuple(alike(variables, params.variable, variable))
    return FileCut(len(cut), len(rows), longest, variable, passed_over)


def run(params: MatImportParams, context: TaskContext) -> dict[str, JsonValue]:
    root, reporter = context.artifacts_root, context.reporter
    if params.files is None:
        reporter.update(0, 1, stage="examples", message="writing example .mat files")
        write_examples(context.artifact("examples"))
        pattern = context.relative(context.artifact("examples"))
    else:
        pattern = params.files
    paths = matching_files(root, pattern)
    if not paths:
        raise TaskError(
            f"no files match {pattern!r} in the artifact store",
            suggestion="Give a path, folder or glob relative to the artifact store, e.g. "
            "'uploads/<tenant>/**/*.mat'.",
        )
    if len(paths) > params.max_files:
        raise InvalidParams(  # the files are there: a retry would find as many
            f"max_files: {len(paths)} files match {pattern!r}, more than {params.max_files}"
        )

    imported = Imported()
    for number, path in enumerate(paths, 1):
        name = str(path.relative_to(root))
        try:
            real = context.resolve(name)  # a symlink may not lead out of the pattern's folder
        except InvalidParams as exc:
            raise InvalidParams(f"files: {exc}") from None
        try:
            message = f"{name}: {import_file(real, params, imported, name)}"
        except MatFileError as exc:
            if params.on_error == "fail":
                raise TaskError(
                    f"{name}: {exc}",
                    suggestion="Fix or remove the file, or set on_error='skip'.",
                    permanent=True,
                ) from exc
            imported.skipped.append({"file": name, "error": str(exc)})
            message = f"{name}: skipped ({exc})"
        reporter.update(number, len(paths), stage="import", message=message)
    if not imported.signals:
        raise TaskError(
            f"none of the {len(paths)} files gave a signal; first problem: "
            f"{imported.skipped[0]['file']}: {imported.skipped[0]['error']}",
            permanent=True,
        )
    return save(imported, params, context)


def save(imported: Imported, params: MatImportParams, context: TaskContext) -> dict[str, JsonValue]:
    classes = sorted(set(imported.labels))
    y = np.array([classes.index(label) for label in imported.labels], dtype=np.int64)
    path = context.artifact("dataset.npz")
    context.reporter.update(0, 1, stage="save", message=f"writing {path.name}")
    with path.open("wb") as file:
        np.savez_compressed(
            file,
            X=np.concatenate(imported.signals),
            y=y,
            classes=np.array(classes),
            sample_rate=np.array(imported.sample_rate),
            file_index=np.array(imported.file_index, dtype=np.int64),
            recording=np.array(imported.recording, dtype=np.int64),
            start=np.array(imported.start, dtype=np.int64),
            files=np.array(imported.files),
        )
    context.reporter.update(1, 1, stage="save", message="saved")
    counts = np.bincount(y, minlength=len(classes)).tolist()
    variables: list[JsonValue] = list(sorted(imported.variables)[:10])
    return {
        "dataset": context.relative(path),
        "n_signals": len(y),
        "length": params.segment_length,
        "sample_rate": imported.sample_rate,
        "classes": list(classes),
        "class_counts": dict(zip(classes, counts, strict=True)),
        "recordings": imported.recordings,
        "files_imported": len(imported.files),
        "files_skipped": len(imported.skipped),
        "skipped": list(imported.skipped[:MAX_SKIPPED_LISTED]),
        "variables": variables,
        "bytes": path.stat().st_size,
    }
