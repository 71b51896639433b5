"""Whether a write is on disk: Redis's `WAITAOF` (Redis 7.2+, Valkey) answers how many
local fsyncs and replicas hold the connection's writes so far; the job store requires the
local one before it acknowledges a new job. It waits on the connection that wrote, since
WAITAOF covers that connection's own writes only."""

from __future__ import annotations

from typing import cast

from redis.exceptions import ResponseError

# How long a new record may wait for its fsync: over appendfsync everysec's period (plus the
# fsync itself), so that a healthy disk always makes it in time.
FSYNC_TIMEOUT_MS = 3000


def local_fsync(reply: object) -> bool | None:
    """What a WAITAOF reply ([local fsyncs, replicas acknowledging], or an error) says of
    the local fsync: True, on disk; False, not (a slow or failing disk, appendonly off);
    None, the server cannot say (it predates WAITAOF: Redis < 7.2)."""
    if isinstance(reply, ResponseError) and "unknown command" in str(reply).lower():
        return None
    if isinstance(reply, Exception):
        return False
    local, _replicas = cast(list[int], reply)
    return int(local) >= 1
