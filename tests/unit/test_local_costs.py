"""The local backend's costs grow with what an event touches, not with the open jobs: a
submit reads O(1) folders however many jobs wait, filling and draining N jobs reads O(N),
the poller reads no idle job's folder, start-up reads only the jobs not done with, and
the retention sweep runs off the event loop. Pods are faked (no processes): a fake
supervisor with the real one's interface records what it starts, and a pod's exit is
written to its folder as the real supervisor would."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kubetask import env
from kubetask.controller.backends import local
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local import LocalBackend
from kubetask.controller.backends.local_folders import JobFolders, PodStop, write_json
from kubetask.controller.backends.local_queue import WaitQueue
from kubetask.controller.clock import Clock, utcnow


def job_id(number: int) -> str:
    return f"{number:016x}"


def spec(number: int, **changes: object) -> TaskSpec:
    fields: dict[str, object] = {
        "job_id": job_id(number),
        "kind": "noop",
        "image": "",
        "command": ("python", "-c", "pass"),
        "env": {env.JOB_ID: job_id(number)},
        "retries": 0,
        "timeout_s": None,
    }
    fields.update(changes)
    return TaskSpec(**fields)  # type: ignore[arg-type]


class FakeSupervisor:
    """The Supervisor's interface; pods "run" until `exit` writes their exit."""

    instances: list[FakeSupervisor] = []

    def __init__(
        self,
        *,
        folders: JobFolders,
        python: str,
        on_change: Callable[[str], None],
        on_exit: Callable[[str], None],
        zygotes: bool = True,
        clock: Clock = utcnow,
    ) -> None:
        self._folders = folders
        self._on_exit = on_exit
        self.live: dict[Path, str] = {}
        self.started: list[str] = []  # job ids, in the order their pods started
        self.adopted: list[str] = []
        FakeSupervisor.instances.append(self)

    @property
    def running(self) -> int:
        return len(self.live)

    def watches(self, pod_dir: Path) -> bool:
        return pod_dir in self.live

    def spawn(
        self,
        spec: TaskSpec,
        index: int,
        attempt: int,
        *,
        now: datetime,
        stop: PodStop | None = None,
    ) -> None:
        pod_dir = self._folders.new_pod_dir(spec.job_id, index, attempt, now=now, stop=stop)
        self.live[pod_dir] = spec.job_id
        self.started.append(spec.job_id)

    def adopt(self, job_id: str) -> None:
        self.adopted.append(job_id)

    def terminate(self, job_id: str) -> None:
        """Signals only: the pod exits later (`exit`)."""

    def check_exits(self) -> None:
        pass

    def close(self) -> None:
        self.live.clear()

    def exit(self, job_id: str, code: int = 0) -> None:
        """The job's pods exit with `code`: recorded in their folders, then told."""
        for pod_dir, owner in list(self.live.items()):
            if owner == job_id:
                write_json(
                    pod_dir / "exit.json",
                    {"exit_code": code, "finished_at": datetime.now().astimezone().isoformat()},
                )
                del self.live[pod_dir]
                self._on_exit(job_id)


class Reads:
    """How many times the folders' specs and pods were read, and the pods of which jobs."""

    def __init__(self) -> None:
        self.specs = 0
        self.pods = 0
        self.pods_of: Counter[str] = Counter()

    def reset(self) -> None:
        self.specs = self.pods = 0
        self.pods_of.clear()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    counted = Reads()
    spec_of, pods_of = JobFolders.spec, JobFolders.pods

    def count_spec(folders: JobFolders, job: str) -> TaskSpec:
        counted.specs += 1
        return spec_of(folders, job)

    def count_pods(folders: JobFolders, job: str, **kwargs: Any) -> Any:
        counted.pods += 1
        counted.pods_of[job] += 1
        return pods_of(folders, job, **kwargs)

    monkeypatch.setattr(JobFolders, "spec", count_spec)
    monkeypatch.setattr(JobFolders, "pods", count_pods)
    monkeypatch.setattr(local, "Supervisor", FakeSupervisor)
    FakeSupervisor.instances.clear()
    return counted


def backend(
    root: Path, slots: int, ttl_s: float | None = None
) -> tuple[LocalBackend, FakeSupervisor]:
    made = LocalBackend(root=root, slots=slots, finished_ttl_s=ttl_s)
    return made, FakeSupervisor.instances[-1]


def test_a_submit_reads_one_folder_with_a_thousand_jobs_waiting(
    tmp_path: Path, reads: Reads
) -> None:
    async def scenario() -> tuple[int, int, str | None]:
        made, _ = backend(tmp_path, slots=2)
        await made.start()
        try:
            for number in range(1002):
                await made.create(spec(number))
            reads.reset()
            await made.create(spec(1002))
            observed = await made.observe(job_id(1002))
            assert observed is not None
            return reads.specs, reads.pods, observed.suspended_message
        finally:
            await made.stop()

    specs, pods, waiting = asyncio.run(scenario())
    assert specs == 0  # kept since its create
    assert pods <= 2  # its sync and the observe: none of the 1,000 others
    assert waiting == "waiting for a free slot (2 in use)"


def test_filling_and_draining_n_jobs_reads_o_n_folders_in_age_order(
    tmp_path: Path, reads: Reads
) -> None:
    jobs = 300

    async def scenario() -> tuple[list[str], int, int]:
        made, pods = backend(tmp_path, slots=2)
        await made.start()
        try:
            for number in reversed(range(jobs)):  # submitted newest first: age still wins
                await made.create(spec(number))
            filled = reads.pods
            while pods.live:
                pods.exit(next(iter(pods.live.values())))
            return pods.started, filled, reads.pods - filled
        finally:
            await made.stop()

    started, filled, drained = asyncio.run(scenario())
    assert started[2:] == [job_id(n) for n in range(jobs) if job_id(n) not in started[:2]]
    assert len(started) == jobs
    assert filled <= 2 * jobs  # O(N): each job read about once (the old step: N²/2)
    assert drained <= 3 * jobs  # each exit syncs the job that exited and the one started


def test_the_poller_reads_no_waiting_jobs_folder(
    tmp_path: Path, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "POLL_INTERVAL_S", 0.01)

    async def scenario() -> Counter[str]:
        made, _ = backend(tmp_path, slots=1)
        await made.start()
        try:
            for number in range(50):
                await made.create(spec(number))
            reads.reset()
            await asyncio.sleep(0.3)  # some 30 polls
            return reads.pods_of
        finally:
            await made.stop()

    read = asyncio.run(scenario())
    assert set(read) == {job_id(0)}  # the running job, once a poll; none of the 49 waiting
    assert read[job_id(0)] >= 5


def test_the_full_pass_still_syncs_every_open_job(
    tmp_path: Path, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The level-triggered safety net, every RESYNC_INTERVAL_S: waiting jobs too."""
    monkeypatch.setattr(local, "POLL_INTERVAL_S", 0.01)
    monkeypatch.setattr(local, "RESYNC_INTERVAL_S", 0.05)

    async def scenario() -> Counter[str]:
        made, _ = backend(tmp_path, slots=1)
        await made.start()
        try:
            for number in range(5):
                await made.create(spec(number))
            reads.reset()
            await asyncio.sleep(0.3)
            return reads.pods_of
        finally:
            await made.stop()

    read = asyncio.run(scenario())
    assert all(read[job_id(n)] >= 2 for n in range(1, 5)), read  # waiting, read by passes


def test_an_ended_job_stays_listed_while_its_pods_run(tmp_path: Path, reads: Reads) -> None:
    """Start-up reads the listed jobs only: open ones, and ended ones whose pods still run
    (a cancelled task in its grace period is adopted, as before)."""
    folders = JobFolders(tmp_path / "jobs")

    async def first_run() -> list[str]:
        made, pods = backend(tmp_path, slots=3)
        await made.start()
        try:
            for number in range(3):
                await made.create(spec(number))
            pods.exit(job_id(0))  # finished: no pod runs, unlisted
            await made.delete(job_id(1))  # cancelled, its pod still in its grace period
            return folders.listed_ids()
        finally:
            await made.stop()

    assert asyncio.run(first_run()) == [job_id(1), job_id(2)]

    async def second_run() -> tuple[list[str], set[str]]:
        made, pods = backend(tmp_path, slots=3)
        await made.start()
        try:
            announced = set()
            while not made.changes.empty():
                announced.add(made.changes.get_nowait())
            return pods.adopted, announced
        finally:
            await made.stop()

    adopted, announced = asyncio.run(second_run())
    assert adopted == [job_id(1), job_id(2)]  # never the finished job 0
    assert announced == {job_id(2)}


def test_a_store_from_before_the_list_gets_one(tmp_path: Path, reads: Reads) -> None:
    folders = JobFolders(tmp_path / "jobs")
    for number in range(3):
        folders.write_job(spec(number))
    folders.mark_deleted(job_id(0))
    for entry in folders.listed.iterdir():
        entry.unlink()
    folders.listed.rmdir()  # as an older version left it: no list
    assert JobFolders(tmp_path / "jobs").listed_ids() == [job_id(1), job_id(2)]


def test_the_retention_sweep_runs_off_the_event_loop(
    tmp_path: Path, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = []

    def remove_expired(jobs: Path, *, now: float, ttl_s: float) -> list[str]:
        threads.append(threading.current_thread())
        return []

    monkeypatch.setattr(local, "remove_expired", remove_expired)

    async def scenario() -> None:
        made, _ = backend(tmp_path, slots=1, ttl_s=60.0)
        await made.start()
        await made.stop()

    asyncio.run(scenario())
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


def test_the_wait_queue_gives_the_oldest_and_forgets_the_removed() -> None:
    queue = WaitQueue()
    for name in ("c", "a", "b"):
        queue.add(name, f"{name} waits")
    assert queue.oldest() == "a"
    assert queue.oldest(before="a") is None
    assert queue.remove("a") == "a waits"
    assert queue.oldest() == "b"
    queue.add("a", "again")  # back in after a removal: once in the heap, still oldest
    assert queue.oldest() == "a"
    assert queue.remove("a") == "again"
    assert queue.remove("a") is None
    assert (queue.oldest(before="c"), len(queue)) == ("b", 2)


def test_small_specs_are_kept_large_ones_read_again(tmp_path: Path, reads: Reads) -> None:
    """A sync reads only the pods of a job with small params; one with large params (not
    kept: 10,000 of them would not fit in memory) has its spec read at each sync."""
    large = {env.JOB_ID: job_id(1), env.PARAMS: "x" * (local.SPEC_KEPT_BYTES + 1)}

    async def scenario() -> int:
        made, _ = backend(tmp_path, slots=0)
        await made.start()
        try:
            await made.create(spec(0))
            await made.create(spec(1, env=large))
            reads.reset()
            made.step()
            made.step()
            return reads.specs
        finally:
            await made.stop()

    assert asyncio.run(scenario()) == 2  # the large one's, once a step
