"""The local backend has no cgroup quota to give each worker its CPUs: it sets
`OMP_NUM_THREADS` to the worker's share of the machine, and the ML kinds' default thread
count honours it, so two workers on two cores run one thread each, not two apiece."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_supervisor import cpu_share, task_env
from kubetask.jobs.kinds.ml.data import default_threads

SPEC = TaskSpec(
    job_id="0000000000abcdef",
    kind="noop",
    image="i",
    command=("python",),
    env={},
    retries=0,
    timeout_s=None,
)


@pytest.mark.parametrize(
    ("parallelism", "cpus", "share"), [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1), (2, 2, 1)]
)
def test_each_worker_gets_its_share_of_the_cpus(parallelism: int, cpus: int, share: int) -> None:
    assert cpu_share(parallelism, cpus) == share


def test_the_task_environment_carries_the_share_unless_the_spec_sets_its_own(
    tmp_path: Path,
) -> None:
    wide = replace(SPEC, parallelism=2, completions=2)
    environment, _ = task_env(wide, tmp_path, 0, system={})
    assert environment["OMP_NUM_THREADS"] == str(cpu_share(2))
    own = replace(wide, env={"OMP_NUM_THREADS": "7"})
    assert task_env(own, tmp_path, 0, system={})[0]["OMP_NUM_THREADS"] == "7"


def test_the_default_thread_count_honours_omp_num_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    everything = default_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(everything + 5))  # never above the quota
    assert default_threads() == everything
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert default_threads() == everything
