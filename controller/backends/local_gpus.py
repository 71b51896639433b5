"""The GPUs the local backend could give a task: counted once, without importing torch.

The NVIDIA driver lists each GPU under /proc/driver/nvidia/gpus; where that folder is
missing (a container given GPUs without /proc/driver), `nvidia-smi -L` prints one line per
GPU. Neither there: no GPU. Tasks run on this machine's GPUs as they find them; the local
backend neither pins nor shares them out.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

PROC_GPUS = Path("/proc/driver/nvidia/gpus")
NVIDIA_SMI_TIMEOUT_S = 5.0


def count_gpus(*, proc_gpus: Path = PROC_GPUS, nvidia_smi: str | None = None) -> int:
    """How many NVIDIA GPUs this machine shows (0 when none, or when asking fails)."""
    if proc_gpus.is_dir():
        return sum(1 for _ in proc_gpus.iterdir())
    smi = nvidia_smi or shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listed = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    if listed.returncode != 0:
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))


@functools.cache
def visible_gpus() -> int:
    """count_gpus(), asked once per process."""
    return count_gpus()
