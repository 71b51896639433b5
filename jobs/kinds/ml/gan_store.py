"""Where the GAN workflow keeps a machine's files, shared by its jobs:
`gan/<machine_id>/seed.csv` (gan-seed), `synthesizer.pkl`, `metadata.json` and `losses.csv`
(gan-train), under the artifact store root. Files are replaced atomically, so a job reading
them never sees half a file; a missing one is an error that names the kind producing it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import TaskError

TABLE = "readings"  # the table name in the SDV metadata


@dataclass(frozen=True)
class MachineFiles:
    root: Path  # the artifact store
    machine_id: str

    @property
    def folder(self) -> Path:
        return self.root / "gan" / self.machine_id

    @property
    def seed(self) -> Path:
        return self.folder / "seed.csv"

    @property
    def synthesizer(self) -> Path:
        return self.folder / "synthesizer.pkl"

    @property
    def metadata(self) -> Path:
        return self.folder / "metadata.json"

    @property
    def losses(self) -> Path:
        return self.folder / "losses.csv"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def require(self, path: Path, *, what: str, producer: str) -> Path:
        """`path` when it exists; else a TaskError saying which kind makes it."""
        if path.is_file():
            return path
        raise TaskError(
            f"no {what} for machine {self.machine_id!r}: {self.relative(path)} is missing "
            "from the artifact store",
            suggestion=f"Run a `{producer}` job with machine_id={self.machine_id!r} first.",
        )


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(temporary path)`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
