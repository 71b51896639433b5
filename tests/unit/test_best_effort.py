"""The best-effort writer: offers never wait, writes keep their order, a full queue drops
(counted), failures are skipped, a Retry-After pauses the worker, a busy hot path goes
first (for a while), stop drains what it can."""

from __future__ import annotations

import asyncio
import time

from kubetask.controller.backends.base import BackendError
from kubetask.controller.best_effort import BestEffortWriter, InFlight


class RecordingWrites:
    """A write that records what it got, optionally waiting on a gate or failing."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing: dict[int, Exception] = {}
        self.times: list[float] = []

    async def __call__(self, item: int) -> None:
        await self.gate.wait()
        self.times.append(time.monotonic())
        if item in self.failing:
            raise self.failing[item]
        self.written.append(item)


def test_offers_return_at_once_and_writes_keep_their_order() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        writes = RecordingWrites()
        writes.gate.clear()  # the API is slow: nothing written yet
        writer = BestEffortWriter(writes, name="events")
        writer.start()
        assert all(writer.offer(i) for i in range(5))
        before = list(writes.written)
        writes.gate.set()
        await writer.join()
        await writer.stop()
        return before, writes.written

    before, after = asyncio.run(scenario())
    assert before == []
    assert after == [0, 1, 2, 3, 4]


def test_a_full_queue_drops_and_counts() -> None:
    async def scenario() -> tuple[list[bool], int, list[int]]:
        writes = RecordingWrites()
        writes.gate.clear()
        writer = BestEffortWriter(writes, name="events", capacity=2)
        offered = [writer.offer(i) for i in range(4)]  # not started: nothing drains
        writer.start()
        writes.gate.set()
        await writer.join()
        await writer.stop()
        return offered, writer.dropped, writes.written

    offered, dropped, written = asyncio.run(scenario())
    assert offered == [True, True, False, False]
    assert (dropped, written) == (2, [0, 1])


def test_a_failed_write_is_skipped_and_retry_after_pauses_the_worker() -> None:
    async def scenario() -> tuple[list[int], list[float]]:
        writes = RecordingWrites()
        writes.failing = {1: RuntimeError("boom"), 2: BackendError("429", retry_after_s=0.3)}
        writer = BestEffortWriter(writes, name="events")
        writer.start()
        for i in range(4):
            writer.offer(i)
        await writer.join()
        await writer.stop()
        return writes.written, writes.times

    written, times = asyncio.run(scenario())
    assert written == [0, 3]
    assert times[3] - times[2] >= 0.29  # paused as the API asked, after item 2
    assert times[2] - times[1] < 0.2  # a plain failure does not pause


def test_stop_drains_within_its_deadline_then_drops_the_rest() -> None:
    async def scenario() -> tuple[list[int], int, float]:
        writes = RecordingWrites()
        writer = BestEffortWriter(writes, name="events")
        writer.start()
        writer.offer(0)
        await writer.join()
        writes.gate.clear()  # the API hangs
        writer.offer(1)
        writer.offer(2)
        started = time.monotonic()
        await writer.stop(drain_s=0.2)
        return writes.written, writer.dropped, time.monotonic() - started

    written, dropped, took = asyncio.run(scenario())
    assert written == [0]
    assert dropped == 1  # item 1 was being written when cancelled; item 2 still queued
    assert took < 1.0


def test_writes_wait_for_the_hot_path_to_be_idle_at_most_max_wait() -> None:
    async def scenario() -> tuple[list[int], list[int], list[int], float]:
        writes = RecordingWrites()
        in_flight = InFlight(max_wait_s=0.3)
        writer = BestEffortWriter(writes, name="events", yield_to=in_flight.idle)
        with in_flight.one():  # a create in progress
            writer.offer(0)
            await asyncio.sleep(0.1)
            while_busy = list(writes.written)
        await writer.join()
        after_idle = list(writes.written)
        with in_flight.one():  # a create that never ends, as far as the writer can tell
            started = time.monotonic()
            writer.offer(1)
            await writer.join()
            waited = time.monotonic() - started
        await writer.stop()
        return while_busy, after_idle, writes.written, waited

    while_busy, after_idle, written, waited = asyncio.run(scenario())
    assert (while_busy, after_idle, written) == ([], [0], [0, 1])
    assert 0.25 <= waited < 1.0  # written anyway after max_wait_s


def test_writes_wait_out_a_burst_of_calls_with_gaps_between_them() -> None:
    async def scenario() -> tuple[list[int], float]:
        writes = RecordingWrites()
        in_flight = InFlight(max_wait_s=5.0, quiet_s=0.2)
        writer = BestEffortWriter(writes, name="events", yield_to=in_flight.idle)
        started = time.monotonic()
        writer.offer(0)
        for _ in range(6):  # creates one after another, 0.05 s apart: never quiet for 0.2 s
            with in_flight.one():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
        during_burst = list(writes.written)
        ended = time.monotonic() - started
        await writer.join()
        waited = time.monotonic() - started
        await writer.stop()
        assert waited >= ended + 0.1  # written once the burst was over for a quiet spell
        return during_burst, waited

    during_burst, waited = asyncio.run(scenario())
    assert during_burst == []
    assert waited < 2.0


def test_a_backlog_over_half_the_queue_is_written_without_waiting() -> None:
    """A burst longer than the queue must not lose most of its writes: over half full, the
    worker stops yielding until the backlog is back to half."""

    async def scenario() -> tuple[list[int], list[int]]:
        writes = RecordingWrites()
        in_flight = InFlight(max_wait_s=5.0)
        writer = BestEffortWriter(writes, name="events", capacity=4, yield_to=in_flight.idle)
        with in_flight.one():  # a create that goes on for the whole test
            for i in range(3):
                writer.offer(i)
            writer.start()
            await asyncio.sleep(0.2)
            while_busy = list(writes.written)
        await writer.join()
        await writer.stop()
        return while_busy, writes.written

    while_busy, written = asyncio.run(scenario())
    assert while_busy == [0]  # 3 of 4 taken: written at once; then 2 of 4: it waits
    assert written == [0, 1, 2]
