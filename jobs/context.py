"""What a running task is given: its identity, its artifact folder and its reporter; and the
runtime's own check of every artifact path a task opens from its params (`resolve`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubetask.jobs.errors import InvalidParams
from kubetask.jobs.reporter import ProgressReporter
from kubetask.params.paths import OutsideTheStore, area, store_parts


def inside_the_store(root: Path, path: str) -> Path:
    """`path` (relative to the artifact store `root`) as a real path, symlinks resolved;
    `InvalidParams` when it is absolute, has a '..', or leads, through a symlink anywhere on
    the way, out of the area its first segments name (`<job id>/` or `uploads/<tenant>/`,
    see kubetask/params/paths.py): so not out of the store, nor into another job's folder. The
    answer is the same whether or not the place it leads to exists."""
    refused = InvalidParams(
        f"artifact path {path!r} leads outside the artifact store or out of the folder it "
        "names (paths are relative to the store, without '..', and may not follow a symlink "
        "out)"
    )
    try:
        parts = store_parts(path)
        real_root = root.resolve()
        allowed = real_root.joinpath(*area(parts))
        real = real_root.joinpath(*parts).resolve()
    except (OutsideTheStore, OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise refused from None
    if not real.is_relative_to(allowed):
        raise refused
    return real


@dataclass(frozen=True)
class TaskContext:
    job_id: str
    index: int
    artifacts_root: Path
    reporter: ProgressReporter
    redis_url: str | None = None  # for tasks that share state through Redis (Optuna studies)

    @property
    def output_dir(self) -> Path:
        """This job's own folder in the artifact store (created on first use)."""
        folder = self.artifacts_root / self.job_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def artifact(self, name: str) -> Path:
        return self.output_dir / name

    def relative(self, path: Path) -> str:
        """A path as the result reports it: relative to the artifact store, portable."""
        return str(path.relative_to(self.artifacts_root))

    def resolve(self, path: str) -> Path:
        """An artifact path given in params, relative to the store: its real path, checked
        to stay inside the folder it names (`inside_the_store`; `InvalidParams` if not)."""
        return inside_the_store(self.artifacts_root, path)
