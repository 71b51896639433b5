"""Redis connections whose sends never lose a cancellation.

redis-py bounds each send by `socket_timeout` with `asyncio.wait_for`, which on Python 3.11
returns normally when the send completes just as its task is cancelled: the cancellation is
lost (python/cpython#86296, fixed in 3.12) and the task runs on. A task cancelled once (a
leader stepping down, a TaskGroup closing, a shutdown) then never ends: a paused leader
reconciled beside the next one, or left the election for good. These connections bound the
send with `asyncio.timeout`, which keeps a cancellation, and answer a send that took too long
as redis-py does (its `TimeoutError`, the connection dropped)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TypeVar

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import TimeoutError as RedisTimeoutError


class CancellableSends(AbstractConnection):
    """The send under `asyncio.timeout(socket_timeout)`, redis-py's own send untimed inside
    it (its reads keep their own timeout)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout:
            return await super().send_packed_command(command, check_health)
        self.socket_timeout = None  # this connection serves one command at a time
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError:  # redis-py dropped the connection as the timeout cancelled it
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


def cancellable(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (TCP, Unix socket or TLS, as the URL chose) with cancellable sends."""
    name = f"Cancellable{connection_class.__name__}"
    return type(name, (CancellableSends, connection_class), {})


Pool = TypeVar("Pool", bound=ConnectionPool)


def with_cancellable_sends(pool: Pool) -> Pool:
    """`pool`, making its connections from now on with cancellable sends."""
    pool.connection_class = cancellable(pool.connection_class)
    return pool
