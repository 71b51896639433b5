"""The per-job event log in Redis: one atomic script assigns the next `seq`, keeps a bounded
history and the latest progress event, and publishes on the job's channel.

Tasks (sync client) and the controller (async client) append through the same script, so
progress and state events share one increasing `seq` per job and a late subscriber can
resume from any `seq` it has seen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from pydantic import JsonValue, TypeAdapter

from kubetask import keys
from kubetask.models import Event, JobState

HISTORY_LIMIT = 1000

# One Lua function, shared by every script that appends an event (see store.py's create).
APPEND_FUNCTION = """
local function append_event(seq_key, history_key, latest_key, channel, body, limit, progress)
  local seq = redis.call('INCR', seq_key)
  local event = '{"seq":' .. seq .. ',' .. body
  redis.call('ZADD', history_key, seq, event)
  redis.call('ZREMRANGEBYRANK', history_key, 0, -(tonumber(limit) + 1))
  if progress == '1' then redis.call('SET', latest_key, event) end
  redis.call('PUBLISH', channel, event)
  return seq
end
"""

# KEYS: seq, history, latest, channel. ARGV: event body without its opening brace,
# history limit, "1" when the event is progress (kept as the latest).
APPEND_SCRIPT = (
    APPEND_FUNCTION
    + "return append_event(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])"
)

_EVENT = TypeAdapter[Event](Event)


def script_keys(job_id: str) -> list[str]:
    return [
        keys.seq(job_id),
        keys.history(job_id),
        keys.latest_progress(job_id),
        keys.progress_channel(job_id),
    ]


def script_args(fields: Mapping[str, JsonValue]) -> list[str]:
    """Arguments for APPEND_SCRIPT: the event JSON minus `seq` and its opening brace."""
    body = json.dumps(fields, separators=(",", ":"), default=str)
    return [body[1:], str(HISTORY_LIMIT), "1" if fields.get("type") == "progress" else "0"]


def state_fields(
    job_id: str,
    *,
    state: JobState,
    reason: str | None,
    message: str | None,
    attempts: int,
    now: datetime,
) -> dict[str, JsonValue]:
    """A state event as the contract defines it (without `seq`, which Redis assigns)."""
    return {
        "type": "state",
        "job_id": job_id,
        "timestamp": now.isoformat(),
        "state": state.value,
        "reason": reason,
        "message": message,
        "attempts": attempts,
    }


def parse_event(raw: str | bytes) -> Event:
    return _EVENT.validate_json(raw)
