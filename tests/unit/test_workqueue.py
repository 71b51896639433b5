"""The reconciler's work queue: each job id once, changes before the resync's look at every
job, a resync entry that changes promoted, the periodic resync's entries a few at a time."""

from __future__ import annotations

import asyncio

from kubetask.controller.workqueue import WorkQueue


async def drain(queue: WorkQueue) -> list[str]:
    taken = []
    while len(queue):
        taken.append(await queue.get())
        queue.done(taken[-1])
    return taken


def test_changes_go_before_the_resync_and_each_id_comes_once() -> None:
    async def scenario() -> list[str]:
        queue = WorkQueue()
        for job_id in ("r1", "r2", "r3"):
            queue.put(job_id, urgent=False)
        queue.put("c1")
        queue.put("c1")  # already queued
        queue.put("r2")  # a resync entry that changed: promoted
        queue.put("c2", urgent=False)
        queue.put("c2")
        queue.put("c1", urgent=False)  # queued as a change: stays one
        return await drain(queue)

    assert asyncio.run(scenario()) == ["c1", "r2", "c2", "r1", "r3"]


def test_a_getter_waits_for_a_put_and_each_put_wakes_one() -> None:
    async def scenario() -> list[str]:
        queue = WorkQueue()
        got: list[str] = []

        async def worker() -> None:
            got.append(await queue.get())

        workers = [asyncio.create_task(worker()) for _ in range(3)]
        await asyncio.sleep(0)
        assert got == []
        queue.put("a", urgent=False)
        queue.put("b")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert sorted(got) == ["a", "b"]
        assert not len(queue)
        queue.put("c")
        await asyncio.gather(*workers)
        return got

    assert asyncio.run(scenario()) == ["b", "a", "c"]


def test_paced_entries_are_given_out_two_at_a_time_and_changes_still_go_at_once() -> None:
    async def scenario() -> None:
        queue = WorkQueue(paced_at_once=2)
        for job_id in ("p1", "p2", "p3", "p4"):
            queue.put(job_id, urgent=False, paced=True)
        queue.put("p4", urgent=False)  # the same job, looked at unpaced: not held back
        assert [await queue.get(), await queue.get()] == ["p1", "p2"]
        third = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not third.done()  # two paced entries are out
        queue.put("c1")
        await asyncio.sleep(0)
        assert third.done()
        assert third.result() == "c1"
        fourth = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not fourth.done()  # p3 is next, and paced
        queue.done("c1")
        await asyncio.sleep(0)
        assert not fourth.done()  # a change's end frees no paced place
        queue.done("p1")
        await asyncio.sleep(0)
        assert fourth.done()
        assert fourth.result() == "p3"
        assert await queue.get() == "p4"  # unpaced, though two paced are out again
        queue.put("p5", urgent=False, paced=True)
        queue.put("p5")  # changed: promoted, and so no more paced
        assert await queue.get() == "p5"

    asyncio.run(scenario())
