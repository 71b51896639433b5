"""The per-job event log in Redis: one atomic script assigns the next `seq`, keeps a bounded
history and the latest progress event, and publishes on the job's channel.

Tasks (sync client) and the controller (async client) append through the same script, so
progress and state events share one increasing `seq` per job and a late subscriber can
resume from any `seq` it has seen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import JsonValue, TypeAdapter

from kubetask import keys
from kubetask.models import Event

HISTORY_LIMIT = 1000

# KEYS: seq, history, latest, channel. ARGV: event body without its opening brace,
# history limit, "1" when the event is progress (kept as the latest).
APPEND_SCRIPT = """
local seq = redis.call('INCR', KEYS[1])
local event = '{"seq":' .. seq .. ',' .. ARGV[1]
redis.call('ZADD', KEYS[2], seq, event)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
if ARGV[3] == '1' then redis.call('SET', KEYS[3], event) end
redis.call('PUBLISH', KEYS[4], event)
return seq
"""

_EVENT = TypeAdapter[Event](Event)


def script_keys(job_id: str) -> list[str]:
    return [
        keys.seq(job_id),
        keys.history(job_id),
        keys.latest_progress(job_id),
        keys.progress_channel(job_id),
    ]


def script_args(fields: Mapping[str, JsonValue], *, limit: int = HISTORY_LIMIT) -> list[str]:
    """Arguments for APPEND_SCRIPT: the event JSON minus `seq` and its opening brace."""
    body = json.dumps(fields, separators=(",", ":"), default=str)
    return [body[1:], str(limit), "1" if fields.get("type") == "progress" else "0"]


def parse_event(raw: str | bytes) -> Event:
    return _EVENT.validate_json(raw)
