"""Group commit over a recording fake of the Redis client: a batch is one pipeline of the
writes then one WAITAOF; no writer hears back before that pipeline's replies (WAITAOF's
included) came; writes that arrive meanwhile make the next batch; a lost connection reaches
every writer of the batch."""

from __future__ import annotations

import asyncio
import hashlib
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from kubetask.controller.group_commit import GroupCommit

FSYNCED = [1, 0]


class Pipeline:
    """Buffers commands; `execute` answers once the test opens the gate."""

    def __init__(self, server: FakeRedis) -> None:
        self.server = server
        self.commands: list[tuple[object, ...]] = []

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def evalsha(self, sha: str, numkeys: int, *args: object) -> Pipeline:
        self.commands.append(("EVALSHA", *args))
        return self

    def __await__(self):  # type: ignore[no-untyped-def]  # a buffered command, as redis-py's
        yield from ()
        return self

    def execute_command(self, *args: object) -> Pipeline:
        self.commands.append(args)
        return self

    async def execute(self, raise_on_error: bool = True) -> list[object]:
        self.server.sent.append(self.commands)
        await self.server.gate.wait()
        if self.server.fail:
            raise RedisConnectionError("connection lost")
        return [[f"answer:{c[-1]}"] if c[0] == "EVALSHA" else FSYNCED for c in self.commands]


class FakeRedis:
    def __init__(self) -> None:
        self.sent: list[list[tuple[object, ...]]] = []
        self.gate = asyncio.Event()
        self.fail = False

    def pipeline(self, transaction: bool = True) -> Pipeline:
        return Pipeline(self)

    async def script_load(self, script: str) -> str:
        return hashlib.sha1(script.encode()).hexdigest()


def commit() -> tuple[GroupCommit, FakeRedis, object]:
    fake = FakeRedis()
    script = aioredis.Redis().register_script("return 1")  # a real script object, never sent
    return GroupCommit(cast(aioredis.Redis, fake), timeout_ms=1000), fake, script


def test_no_writer_hears_back_before_its_batch_waitaof_reply() -> None:
    async def scenario() -> None:
        group, fake, script = commit()
        writes = [
            asyncio.ensure_future(group.write(script, keys=["k"], args=[f"job{i}"]))  # type: ignore[arg-type]
            for i in range(5)
        ]
        await asyncio.sleep(0.05)
        assert [c[0] for c in fake.sent[0]] == ["EVALSHA"] * 5 + ["WAITAOF"]
        assert not any(w.done() for w in writes)
        fake.gate.set()
        answers = await asyncio.gather(*writes)
        assert answers == [([f"answer:job{i}"], FSYNCED) for i in range(5)]
        assert len(fake.sent) == group.batches == 1

    asyncio.run(scenario())


def test_writes_arriving_during_a_batch_make_the_next_one() -> None:
    async def scenario() -> None:
        group, fake, script = commit()
        first = asyncio.ensure_future(group.write(script, keys=["k"], args=["a"]))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        later = [
            asyncio.ensure_future(group.write(script, keys=["k"], args=[x]))  # type: ignore[arg-type]
            for x in "bcd"
        ]
        await asyncio.sleep(0.01)
        assert len(fake.sent) == 1
        fake.gate.set()
        await asyncio.gather(first, *later)
        assert [[c[-1] for c in batch if c[0] == "EVALSHA"] for batch in fake.sent] == [
            ["a"],
            ["b", "c", "d"],
        ]

    asyncio.run(scenario())


def test_a_lost_connection_reaches_every_writer_of_the_batch() -> None:
    async def scenario() -> list[BaseException | tuple[object, object | None]]:
        group, fake, script = commit()
        fake.fail = True
        fake.gate.set()
        return await asyncio.gather(
            *(group.write(script, keys=["k"], args=[i]) for i in range(3)),  # type: ignore[arg-type]
            return_exceptions=True,
        )

    answers = asyncio.run(scenario())
    assert all(isinstance(a, RedisConnectionError) for a in answers), answers


def test_without_waitaof_the_writes_are_only_pipelined() -> None:
    async def scenario() -> None:
        group, fake, script = commit()
        group.waitaof = False
        fake.gate.set()
        assert await group.write(script, keys=["k"], args=["a"]) == (["answer:a"], None)  # type: ignore[arg-type]
        assert [c[0] for c in fake.sent[0]] == ["EVALSHA"]

    asyncio.run(scenario())
