"""How the local backend counts the GPUs it could give: the driver's folder, else nvidia-smi."""

from __future__ import annotations

from pathlib import Path

from kubetask.controller.backends.local_gpus import count_gpus


def fake_smi(tmp_path: Path, output: str, *, code: int = 0) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{output}END\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


def test_each_gpu_the_driver_lists_counts(tmp_path: Path) -> None:
    gpus = tmp_path / "gpus"
    for bus in ("0000:3b:00.0", "0000:af:00.0"):
        (gpus / bus).mkdir(parents=True)
    assert count_gpus(proc_gpus=gpus, nvidia_smi=fake_smi(tmp_path, "")) == 2


def test_without_the_driver_folder_nvidia_smi_lines_count(tmp_path: Path) -> None:
    listing = "GPU 0: NVIDIA H200 (UUID: GPU-1)\nGPU 1: NVIDIA H200 (UUID: GPU-2)\n"
    assert count_gpus(proc_gpus=tmp_path / "none", nvidia_smi=fake_smi(tmp_path, listing)) == 2


def test_a_failing_nvidia_smi_means_no_gpu(tmp_path: Path) -> None:
    failing = fake_smi(tmp_path, "NVIDIA-SMI has failed\n", code=9)
    assert count_gpus(proc_gpus=tmp_path / "none", nvidia_smi=failing) == 0


def test_a_missing_nvidia_smi_means_no_gpu(tmp_path: Path) -> None:
    assert count_gpus(proc_gpus=tmp_path / "none", nvidia_smi=str(tmp_path / "absent")) == 0
