"""A stalled disk, as a real Redis-protocol server shows it: with AOF switched on while a
snapshot child holds the fork (slowed by `rdb-key-save-delay`), the AOF waits for its
rewrite, so WAITAOF answers that no local fsync holds a write. `BGSAVE CANCEL` (Valkey 8.1+)
ends the stall."""

from __future__ import annotations

import time

import redis


def stall(client: redis.Redis) -> None:
    client.config_set("appendonly", "no")
    client.set("stall:seed", "1")  # one key for the snapshot to crawl over
    client.config_set("rdb-key-save-delay", 100_000_000)  # 100 s per key
    client.bgsave()
    client.config_set("appendonly", "yes")  # its rewrite waits for the snapshot


def unstall(client: redis.Redis) -> None:
    client.config_set("rdb-key-save-delay", 0)
    client.execute_command("BGSAVE", "CANCEL")  # type: ignore[no-untyped-call]
    wait_until_written(client)


def wait_until_written(client: redis.Redis, timeout_s: float = 10) -> None:
    """Until no snapshot or AOF rewrite is running or due."""
    busy = ("rdb_bgsave_in_progress", "aof_rewrite_in_progress", "aof_rewrite_scheduled")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not any(info[field] for field in busy):
            return
        time.sleep(0.05)
    raise AssertionError(f"the AOF is still rewriting: {client.info('persistence')}")
