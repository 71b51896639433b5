"""Group commit: concurrent durable writes share one fsync. Each write (a script call) joins
the next batch; a batch goes down one connection as one pipeline followed by one `WAITAOF`,
and every writer of the batch gets its own answer with the batch's WAITAOF reply, only once
that reply came. One batch is in flight at a time: the writes that arrive meanwhile make the
next one, so batches grow with the load and a lone write goes at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

MAX_BATCH = 512  # writes per pipeline; more wait for the next batch


@dataclass
class _Write:
    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[str | int | float]
    done: asyncio.Future[tuple[object, object | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """Batches script calls on `client`; `waitaof` False: the server has no WAITAOF
    (the writes are then only pipelined, and the reply is None)."""

    def __init__(self, client: aioredis.Redis, *, timeout_ms: int) -> None:
        self._redis = client
        self._timeout_ms = timeout_ms
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self.waitaof = True
        self.batches = 0  # pipelines sent, for tests and benchmarks
        self._loaded: set[str] = set()  # the scripts' SHAs loaded on the server

    async def write(
        self, script: AsyncScript, *, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> tuple[object, object | None]:
        """The script's answer (an exception object if it failed) and its batch's WAITAOF
        reply (an exception object if that failed; None without WAITAOF). Raises when the
        pipeline itself failed (the connection)."""
        write = _Write(script, keys, args)
        self._pending.append(write)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="store-group-commit")
        return await asyncio.shield(write.done)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            try:
                replies = await self._send(batch)
            except BaseException as exc:  # the connection: every writer of the batch hears it
                for write in batch:
                    if not write.done.done():
                        write.done.set_exception(exc)
                if isinstance(exc, Exception):
                    continue
                raise
            fsync = replies[len(batch)] if self.waitaof else None
            for write, answer in zip(batch, replies, strict=False):
                if not write.done.done():
                    write.done.set_result((answer, fsync))

    async def _send(self, batch: list[_Write]) -> list[object]:
        """The batch's replies, WAITAOF's last. Each script goes by its SHA alone (a script
        object in a pipeline costs a SCRIPT EXISTS round trip per batch), each loaded once
        first; the writes the server did not run for want of their script (it restarted,
        or was flushed) go again once it has them, and their WAITAOF answers for the whole
        batch."""
        await self._load([w for w in batch if w.script.sha not in self._loaded])
        replies = await self._pipeline(batch)
        missing = [i for i, reply in enumerate(replies[: len(batch)]) if _no_script(reply)]
        if missing:
            await self._load([batch[i] for i in missing])
            again = await self._pipeline([batch[i] for i in missing])
            for i, reply in zip(missing, again, strict=False):
                replies[i] = reply
            if self.waitaof:
                replies[len(batch)] = again[len(missing)]
        return replies

    async def _load(self, writes: list[_Write]) -> None:
        """Load the writes' scripts on the server, each once."""
        for script in {id(w.script): w.script for w in writes}.values():
            script.sha = await self._redis.script_load(script.script)
            self._loaded.add(script.sha)

    async def _pipeline(self, batch: list[_Write]) -> list[object]:
        self.batches += 1
        async with self._redis.pipeline(transaction=False) as pipe:
            for write in batch:
                pipe.evalsha(write.script.sha, len(write.keys), *write.keys, *write.args)
            if self.waitaof:
                pipe.execute_command("WAITAOF", 1, 0, self._timeout_ms)
            replies: list[object] = await pipe.execute(raise_on_error=False)
            return replies


def _no_script(reply: object) -> bool:
    return isinstance(reply, NoScriptError)
