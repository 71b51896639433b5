"""The follower's cursor: order, repeats, gaps and the end, without any server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import cast

import pytest

from kubetask.api.streaming import BadResumePoint, Cursor, Frame, follow, resume_point, until
from kubetask.controller.bus import RESYNC, EventBus, EventHub
from kubetask.controller.records import JobRecord


def progress(seq: int) -> str:
    return json.dumps({"seq": seq, "type": "progress", "job_id": "j", "current": seq})


def state(seq: int, value: str) -> str:
    return json.dumps({"seq": seq, "type": "state", "job_id": "j", "state": value})


def test_history_after_the_cursor_in_order() -> None:
    cursor = Cursor("j", 2)
    frames = cursor.from_history([progress(1), progress(2), progress(3), progress(4)])
    assert [f.seq for f in frames] == [3, 4]
    assert cursor.last == 4


def test_a_trimmed_history_yields_a_gap_frame_not_a_silent_skip() -> None:
    cursor = Cursor("j", 2)
    frames = cursor.from_history([progress(7), progress(8)])
    assert [(f.type, f.seq) for f in frames] == [("gap", 6), ("progress", 7), ("progress", 8)]
    gap = json.loads(frames[0].data)
    assert (gap["from_seq"], gap["to_seq"]) == (3, 6)


def test_live_events_skip_repeats_and_ask_for_history_on_a_hole() -> None:
    cursor = Cursor("j", 3)
    frames, refill = cursor.from_live([progress(2), progress(3), progress(4), progress(6)])
    assert [f.seq for f in frames] == [4]
    assert refill
    assert cursor.last == 4


def test_resync_asks_for_history() -> None:
    cursor = Cursor("j", 0)
    frames, refill = cursor.from_live([progress(1), RESYNC, progress(2)])
    assert [f.seq for f in frames] == [1]
    assert refill


def test_the_terminal_state_ends_the_stream() -> None:
    cursor = Cursor("j", 0)
    frames, _ = cursor.from_live([state(1, "running"), state(2, "succeeded"), progress(3)])
    assert [f.seq for f in frames] == [1, 2]
    assert frames[-1].terminal
    assert cursor.done
    assert cursor.from_history([progress(3)]) == []


def test_a_non_terminal_state_does_not_end_it() -> None:
    assert not Frame.of(state(1, "pending")).terminal
    assert Frame.of(state(1, "cancelled")).terminal


def test_sse_frame_names_seq_and_type() -> None:
    frame = Frame.of(progress(5))
    assert frame.sse() == f"id: 5\nevent: progress\ndata: {progress(5)}\n\n"


def test_a_resume_point_is_ascii_digits_only() -> None:
    assert resume_point("12", None) == 12
    assert resume_point(None, "7") == 7
    assert resume_point("12", "7") == 12  # Last-Event-ID wins, as browsers send it
    assert resume_point("", "7") == 7  # an empty Last-Event-ID is none (the SSE rules)
    assert resume_point(None, None) == 0
    assert resume_point("0", None) == 0
    for garbage in ["²", "١٢", "abc", "-1", "+1", "1.0", "0x10", "1_000", "1 2", " 1", "9" * 16]:
        with pytest.raises(BadResumePoint, match="Last-Event-ID"):
            resume_point(garbage, None)
        with pytest.raises(BadResumePoint, match="since"):
            resume_point(None, garbage)
    with pytest.raises(BadResumePoint, match="since"):
        resume_point(None, "")


def test_until_runs_work_to_its_end_or_until_the_event() -> None:
    async def scenario() -> None:
        event = asyncio.Event()
        done: list[str] = []

        async def quick() -> None:
            done.append("quick")

        async def forever() -> None:
            asyncio.get_running_loop().call_later(0.05, event.set)
            await asyncio.sleep(60)

        async def failing() -> None:
            raise OSError("the client left")

        assert await until(event, quick) is True
        assert done == ["quick"]
        assert await asyncio.wait_for(until(event, forever), 5) is False
        assert await asyncio.wait_for(until(event, forever), 1) is False  # already set
        with pytest.raises(OSError, match="client left"):  # errors pass unchanged
            await until(asyncio.Event(), failing)

    asyncio.run(scenario())


class QuietBus:
    """A job whose events are gone (expired with its record)."""

    async def history_raw(self, job_id: str, *, since: int) -> list[str]:
        return []

    async def last_seq(self, job_id: str) -> int:
        return 0


class QuietHub:
    @contextlib.asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[asyncio.Queue[str]]:
        yield asyncio.Queue()


async def gone(job_id: str) -> JobRecord | None:
    return None


def test_a_stream_of_a_job_whose_record_went_ends_at_its_first_quiet_moment() -> None:
    """Expired (or purged) as it was followed: nothing will ever come; keep-alives forever
    held the client (and a stream slot of its tenant)."""

    async def body() -> list[object]:
        stream = follow(
            "0000000000000001",
            since=0,
            bus=cast(EventBus, QuietBus()),
            hub=cast(EventHub, QuietHub()),
            get_record=gone,
            keepalive_s=0.01,
        )
        return [batch async for batch in stream]

    assert asyncio.run(asyncio.wait_for(body(), 5)) == []
