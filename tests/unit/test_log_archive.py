"""The log archiver (controller/archive.py) over a real FileStore in a temp folder and a
recording fake of the backend's logs: an ended job's log lands at `<id>/logs/output.log`,
off the hot path (offer never waits; a full queue drops with a log line), a failure is
tried again and given up on after its attempts; the reconciler offers each job once, as
its end is recorded; a purge as the log is being written deletes it after the write."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from kubetask.controller import archive
from kubetask.controller.archive import (
    Backoff,
    LogArchiver,
    archived_log,
    last_lines,
    log_key,
)
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.bus import EventBus
from kubetask.controller.reconciler import Reconciler, RetryPolicy
from kubetask.controller.retention import ArtifactJanitor
from kubetask.models import Outcome
from kubetask.storage import Entry, FileStore, UploadFailed
from kubetask.storage.base import Source
from tests.unit.test_reconciler_sync import (
    COMPLETE,
    JOB,
    RUNNING,
    T0,
    FakeBackend,
    FakeBus,
    FakeStore,
    record,
)

FAST = Backoff(attempts=3, base_s=0.01, max_s=0.01)
LOG = "line 1\nline 2\nline 3\n"


class Logs:
    """The backend's logs by job id; counts the reads."""

    def __init__(self, **logs: str | None) -> None:
        self.logs = dict(logs)
        self.reads: list[str] = []

    async def __call__(self, job_id: str) -> str | None:
        self.reads.append(job_id)
        return self.logs.get(job_id)


class FlakyStore(FileStore):
    """A FileStore whose first `failures` writes fail as a store down would."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.writes = 0

    def write(self, path: str, source: Source) -> Entry:
        self.writes += 1
        if self.writes <= self.failures:
            raise UploadFailed(path, "connection refused")
        return super().write(path, source)


class SlowStore(FileStore):
    """A FileStore whose writes wait, once begun, until `release` is set (a slow upload)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.begun = threading.Event()
        self.release = threading.Event()

    def write(self, path: str, source: Source) -> Entry:
        self.begun.set()
        assert self.release.wait(5)
        return super().write(path, source)


def running(archiver: LogArchiver, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        worker = asyncio.create_task(archiver.run())
        try:
            await asyncio.wait_for(body(), 10)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    asyncio.run(main())


def test_an_ended_jobs_log_is_written_inside_its_prefix(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    archiver = LogArchiver(read_log=Logs(j1=LOG), store=store, backoff=FAST)

    async def body() -> None:
        assert archiver.offer("j1")
        await archiver.join()

    running(archiver, body)
    assert log_key("j1") == "j1/logs/output.log"
    assert (tmp_path / "j1" / "logs" / "output.log").read_text() == LOG
    assert [e.path for e in store.list("j1")] == ["j1/logs/output.log"]  # listed as an artifact


def test_a_cancelled_jobs_log_waits_for_its_tasks_to_stop_and_holds_up_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its end comes before its task's last lines: archived once the backend says its tasks
    stopped, the waiting no try of the store's; a job behind it is archived meanwhile."""
    monkeypatch.setattr(archive, "STOP_POLL_S", 0.01)
    logs = Logs(stopping="first line\n", done=LOG)
    running_tasks = {"stopping"}
    looked: list[str] = []

    async def stopped(job_id: str) -> bool:
        looked.append(job_id)
        if looked.count("stopping") == 3:  # SIGTERM did its work: the last line is in
            logs.logs["stopping"] = "first line\nTaskTerminated: received SIGTERM\n"
            running_tasks.discard("stopping")
        return job_id not in running_tasks

    store = FileStore(tmp_path)
    archiver = LogArchiver(read_log=logs, store=store, stopped=stopped, backoff=FAST)

    async def body() -> None:
        archiver.offer("stopping")
        archiver.offer("done")
        await archiver.join()

    running(archiver, body)
    assert (tmp_path / "done/logs/output.log").read_text() == LOG
    last_look_at_stopping = max(i for i, job in enumerate(looked) if job == "stopping")
    assert looked.index("done") < last_look_at_stopping  # not held up behind it
    assert (tmp_path / "stopping/logs/output.log").read_text().endswith("SIGTERM\n")
    assert archiver.dropped == []


def test_pods_that_vanish_as_they_stop_leave_their_log_as_last_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted Job's pods (a cancel on Kubernetes) are gone once stopped, their log with
    them: what was read while they stopped is kept, not nothing."""
    monkeypatch.setattr(archive, "STOP_POLL_S", 0.01)
    logs = Logs(cancelled="starting\nstep 1\n")
    looks = 0

    async def stopped(job_id: str) -> bool:
        nonlocal looks
        looks += 1
        if looks == 3:  # stopped, and the pod object deleted with its log
            logs.logs["cancelled"] = None
            return True
        return False

    archiver = LogArchiver(read_log=logs, store=FileStore(tmp_path), stopped=stopped)

    async def body() -> None:
        archiver.offer("cancelled")
        await archiver.join()

    running(archiver, body)
    assert (tmp_path / "cancelled/logs/output.log").read_text() == "starting\nstep 1\n"


def test_a_task_that_will_not_stop_has_its_log_archived_as_it_is_in_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(archive, "STOP_POLL_S", 0.01)
    monkeypatch.setattr(archive, "STOP_WAIT_S", 0.05)

    async def never(job_id: str) -> bool:
        return False

    archiver = LogArchiver(read_log=Logs(j=LOG), store=FileStore(tmp_path), stopped=never)

    async def body() -> None:
        archiver.offer("j")
        await archiver.join()

    running(archiver, body)
    assert (tmp_path / "j/logs/output.log").read_text() == LOG
    assert "job j's tasks still run after 0 s: its log archived as it is" in caplog.text


def test_a_failed_write_is_tried_again_and_the_jobs_behind_it_are_not_held(
    tmp_path: Path,
) -> None:
    store = FlakyStore(tmp_path, failures=1)
    logs = Logs(j1=LOG, j2="other\n")
    archiver = LogArchiver(read_log=logs, store=store, backoff=FAST)

    async def body() -> None:
        archiver.offer("j1")
        archiver.offer("j2")
        await archiver.join()

    running(archiver, body)
    assert logs.reads == ["j1", "j2", "j1"]  # j2 went while j1 waited for its retry
    assert (tmp_path / "j1" / "logs" / "output.log").read_text() == LOG
    assert (tmp_path / "j2" / "logs" / "output.log").read_text() == "other\n"
    assert archiver.dropped == []


def test_a_log_that_cannot_be_written_is_given_up_on_after_its_attempts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(tmp_path, failures=100)
    archiver = LogArchiver(read_log=Logs(j1=LOG), store=store, backoff=FAST)

    async def body() -> None:
        archiver.offer("j1")
        await archiver.join()

    running(archiver, body)
    assert store.writes == FAST.attempts
    assert archiver.dropped == ["j1"]
    assert "j1's log not archived after 3 tries" in caplog.text


def test_at_shutdown_what_is_queued_is_archived_for_a_moment_then_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ok = LogArchiver(read_log=Logs(j1=LOG, j2=LOG), store=FileStore(tmp_path), backoff=FAST)
    stuck = LogArchiver(
        read_log=Logs(j3=LOG),
        store=FlakyStore(tmp_path, failures=100),
        backoff=Backoff(attempts=100, base_s=60, max_s=60),
    )

    async def drains() -> None:
        ok.offer("j1")
        ok.offer("j2")
        assert await ok.drain(5) == 0
        stuck.offer("j3")
        assert await stuck.drain(0.2) == 1  # waiting a minute for its retry: left

    running(ok, lambda: running_too(stuck, drains))
    assert sorted(e.path for e in FileStore(tmp_path).list()) == [log_key("j1"), log_key("j2")]
    assert "stopping with 1 jobs' logs not archived" in caplog.text


async def running_too(archiver: LogArchiver, body: Callable[[], Awaitable[None]]) -> None:
    worker = asyncio.create_task(archiver.run())
    try:
        await body()
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def test_offer_never_waits_a_full_queue_drops_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archiver = LogArchiver(read_log=Logs(), store=FileStore(tmp_path), capacity=2)

    async def main() -> list[bool]:  # no worker runs: nothing drains the queue
        return [archiver.offer(job) for job in ("j1", "j2", "j3")]

    assert asyncio.run(main()) == [True, True, False]
    assert archiver.dropped == ["j3"]
    assert "queue full (2): job j3's log not archived" in caplog.text


def test_an_empty_log_is_kept_and_nothing_is_written_for_no_log_or_a_purged_job(
    tmp_path: Path,
) -> None:
    """An empty log is archived empty: once the backend drops it, '' still tells it apart
    from a log that was lost."""
    store = FileStore(tmp_path)

    async def purged(job_id: str) -> bool:
        return job_id != "gone"

    archiver = LogArchiver(
        read_log=Logs(empty="", gone=LOG), store=store, wanted=purged, backoff=FAST
    )

    async def body() -> None:
        assert await archiver.archive("empty")
        assert not await archiver.archive("gone")
        assert not await archiver.archive("none")

    running(archiver, body)
    assert [(entry.path, entry.size) for entry in store.list()] == [(log_key("empty"), 0)]


def test_a_purge_as_the_log_is_written_deletes_it_once_written(tmp_path: Path) -> None:
    store = SlowStore(tmp_path)
    kept = {"j1"}

    async def wanted(job_id: str) -> bool:
        return job_id in kept

    archiver = LogArchiver(read_log=Logs(j1=LOG), store=store, wanted=wanted, backoff=FAST)
    janitor = ArtifactJanitor(store=store, settled=archiver.settled)

    async def forget() -> bool:
        kept.discard("j1")
        return True

    async def body() -> None:
        assert archiver.offer("j1")
        assert await asyncio.to_thread(store.begun.wait, 5)  # the log is being uploaded
        purge = asyncio.create_task(janitor.purge("j1", forget=forget))
        await asyncio.sleep(0.05)
        assert not purge.done()  # it waits for the write under way
        store.release.set()
        assert await purge == 1  # the log, deleted once written
        await archiver.join()

    running(archiver, body)
    assert list(store.list()) == []


def test_the_archived_log_is_read_back_whole_or_its_tail(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.write(log_key("j1"), [LOG.encode()])
    assert asyncio.run(archived_log(store, "j1", tail=None)) == LOG
    assert asyncio.run(archived_log(store, "j1", tail=2)) == "line 2\nline 3\n"
    assert asyncio.run(archived_log(store, "j2", tail=None)) is None
    assert last_lines("a\nb", 1) == "b"


def reconciler_of(store: FakeStore, bus: FakeBus, backend: FakeBackend, **hooks: Any) -> Reconciler:
    """A reconciler over the fakes, with the end/stop `hooks` a test watches."""
    return Reconciler(
        store=store,
        bus=cast(EventBus, bus),
        backend=backend,
        spec_for=lambda r: TaskSpec(
            job_id=r.id, kind="noop", image="", command=(), env={}, retries=0, timeout_s=None
        ),
        clock=lambda: T0,
        retry=RetryPolicy(base_s=0.001, max_s=0.001),
        **hooks,
    )


def test_the_reconciler_offers_a_job_once_as_its_end_is_recorded() -> None:
    offered: list[str] = []
    store, bus, backend = FakeStore(record(submitted=True)), FakeBus(), FakeBackend()
    reconciler = reconciler_of(store, bus, backend, on_end=offered.append)

    async def sync(times: int) -> None:
        for _ in range(times):
            await reconciler.sync(JOB)

    backend.jobs[JOB] = RUNNING
    asyncio.run(sync(2))
    assert offered == []  # running: nothing to archive yet
    backend.jobs[JOB] = COMPLETE
    bus.left[JOB] = {0: Outcome(ok=True)}
    asyncio.run(sync(3))
    assert offered == [JOB]  # once, however often it is synced after


def test_a_log_remembered_before_its_pods_went_wins_over_a_shorter_later_read(
    tmp_path: Path,
) -> None:
    """A cancel deletes the Job's pods, and the Job controller deletes a failed Job's running
    workers: read after that, the log misses their part (or all of it). The read made before
    they went is kept instead; a longer later read still wins (a log only grows)."""
    whole = "==> index 0 <==\nstep 1\n==> index 1 <==\nstep 1\n"
    logs = Logs(gone=whole, grew="a\n")
    archiver = LogArchiver(read_log=logs, store=FileStore(tmp_path), backoff=FAST)

    async def body() -> None:
        await archiver.remember("gone")
        await archiver.remember("grew")
        logs.logs["gone"] = "==> index 1 <==\nstep 1\n"  # index 0's pod went, its log too
        logs.logs["grew"] = "a\nb\n"
        archiver.offer("gone")
        archiver.offer("grew")
        await archiver.join()

    running(archiver, body)
    assert (tmp_path / "gone/logs/output.log").read_text() == whole
    assert (tmp_path / "grew/logs/output.log").read_text() == "a\nb\n"


def test_the_reconciler_remembers_the_log_before_it_deletes_a_cancelled_job() -> None:
    remembered: list[tuple[str, bool]] = []
    store, bus, backend = (
        FakeStore(record(submitted=True, cancel_requested=True)),
        FakeBus(),
        FakeBackend(),
    )

    async def before_stop(job_id: str) -> None:
        remembered.append((job_id, job_id in backend.jobs))  # the Job still there

    reconciler = reconciler_of(store, bus, backend, before_stop=before_stop)
    backend.jobs[JOB] = RUNNING
    asyncio.run(reconciler.sync(JOB))
    assert remembered == [(JOB, True)]
    assert JOB in backend.deleted


def test_the_reconciler_remembers_the_log_while_the_job_controller_stops_the_pods() -> None:
    """A failure decided (tries spent) with pods still stopping: the Job controller deletes
    them itself, so the log is read meanwhile; kubetask deletes nothing."""
    remembered: list[str] = []
    store, bus, backend = FakeStore(record(submitted=True)), FakeBus(), FakeBackend()

    async def before_stop(job_id: str) -> None:
        remembered.append(job_id)

    reconciler = reconciler_of(store, bus, backend, before_stop=before_stop)
    backend.jobs[JOB] = replace(RUNNING, pods=(), terminating=1, failed=1)  # retries=0 spent
    asyncio.run(reconciler.sync(JOB))
    assert remembered == [JOB]
    assert backend.deleted == []


def test_by_default_a_store_away_for_most_of_an_hour_still_gets_the_log() -> None:
    """The waits between the tries add up to about an hour (an object store restarted, or
    being fixed); a try at least every two minutes."""
    backoff = Backoff()
    waits = [backoff.delay_s(attempt) for attempt in range(1, backoff.attempts)]
    assert 55 * 60 <= sum(waits) <= 75 * 60
    assert max(waits) <= 120
