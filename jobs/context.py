"""What a running task is given: its identity, its artifact folder and its reporter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.reporter import ProgressReporter


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
        """An artifact path given in params: relative to the store, or absolute."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.artifacts_root / candidate
