"""The per-job event log in Redis: one atomic script assigns the next `seq`, keeps a bounded
history and the latest progress event, and publishes on the job's channel.

Tasks (sync client) and the controller (async client) append through the same script, so
progress and state events share one increasing `seq` per job and a late subscriber can
resume from any `seq` it has seen.

Light on purpose: a task's publisher imports it, so the contract models (kubetask.models,
pydantic) are imported only by the functions that read events back (`parse_event`,
`parse_workers`), which the controller calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from kubetask import keys

if TYPE_CHECKING:
    from pydantic import JsonValue, TypeAdapter

    from kubetask.models import Event, JobState, WorkerProgress

HISTORY_LIMIT = 1000

# One Lua function, shared by every script that appends an event (see store.py's create).
APPEND_FUNCTION = """
local function append_event(seq_key, history_key, latest_key, channel, body, limit, progress)
  local seq = redis.call('INCR', seq_key)
  local event = '{"seq":' .. seq .. ',' .. body
  redis.call('ZADD', history_key, seq, event)
  redis.call('ZREMRANGEBYRANK', history_key, 0, -(tonumber(limit) + 1))
  if progress == '1' then redis.call('SET', latest_key, event, 'KEEPTTL') end
  -- the job's end gave its keys their expiry: an event after it (a task's late progress)
  -- expires with them, whatever key it made
  local ttl = redis.call('PTTL', seq_key)
  if ttl > 0 then
    redis.call('PEXPIRE', history_key, ttl)
    if progress == '1' then redis.call('PEXPIRE', latest_key, ttl) end
  end
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

# The job's figure for a progress event, atomically over all its workers: JobTally.record of
# kubetask/progress.py (its reference, tested against this), returned as the JSON members
# `"fraction":F,"attempt":N,"eta_s":E,` that go in front of the event's body.
JOB_FIGURE_FUNCTION = """
local function num(value) return string.format('%.17g', value) end
local function job_figure(tally_key, workers_key, index, run, worker_fraction, stage,
                          started, now, completions)
  local t = redis.call('HMGET', tally_key, 'attempt', 'fraction', 'base', 'since')
  local attempt = tonumber(t[1]) or 1
  local fraction = tonumber(t[2]) or 0
  local base = tonumber(t[3]) or 0
  local since = tonumber(t[4]) or tonumber(started)
  local previous = redis.call('HGET', workers_key, 'run:' .. index)
  local retried = previous and previous ~= run
  if retried then
    attempt = attempt + 1
    fraction = 0
    since = tonumber(started)
  end
  redis.call('HSET', workers_key, 'run:' .. index, run)
  if worker_fraction ~= '' then
    redis.call('HSET', workers_key, 'fraction:' .. index, worker_fraction)
  end
  if stage ~= '' then redis.call('HSET', workers_key, 'stage:' .. index, stage) end
  local n = math.min(math.max(tonumber(completions) or 1, 1), 100000)
  local sum = 0
  for i = 0, n - 1 do
    local f = tonumber(redis.call('HGET', workers_key, 'fraction:' .. i)) or 0
    sum = sum + math.min(math.max(f, 0), 1)
  end
  local computed = math.min(sum / n, 1)
  if retried then base = computed end
  if computed > fraction then fraction = computed end
  redis.call('HSET', tally_key, 'attempt', attempt, 'fraction', num(fraction),
             'base', num(base), 'since', num(since))
  local eta = 'null'
  local gained = fraction - base
  local elapsed = tonumber(now) - since
  if fraction >= 1 then
    eta = '0.0'
  elseif elapsed >= 1.0 and gained >= 0.01 then
    eta = string.format('%.1f', (1 - fraction) * elapsed / gained)
  end
  return string.format('"fraction":%.6f,"attempt":%d,"eta_s":%s,', fraction, attempt, eta)
end
"""

# KEYS: seq, history, latest, channel, tally, workers. ARGV: the event body without its
# opening brace nor the job's figure, history limit, then the worker's index, run (one per
# process), own fraction ('' if unknown), stage, run start and event time (seconds since the
# epoch), and the job's number of completions.
PROGRESS_SCRIPT = (
    APPEND_FUNCTION
    + JOB_FIGURE_FUNCTION
    + """local figure = job_figure(KEYS[5], KEYS[6], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                                ARGV[7], ARGV[8], ARGV[9])
local seq = append_event(KEYS[1], KEYS[2], KEYS[3], KEYS[4], figure .. ARGV[1], ARGV[2], '1')
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[5], ttl)
  redis.call('PEXPIRE', KEYS[6], ttl)
end
return seq"""
)
JOB_FIGURE_FIELDS = ("fraction", "attempt", "eta_s")


@cache
def _event_adapter() -> TypeAdapter[Event]:
    """The validator of a stored event, built on first use (the controller's, not a task's)."""
    from pydantic import TypeAdapter

    from kubetask.models import Event

    return TypeAdapter[Event](Event)


def script_keys(job_id: str) -> list[str]:
    return [
        keys.seq(job_id),
        keys.history(job_id),
        keys.latest_progress(job_id),
        keys.progress_channel(job_id),
    ]


def finite(value: JsonValue) -> JsonValue:
    """`value` with each NaN or infinite number as null, as in a result: JSON has none, and
    a client's parser (the dashboard's `JSON.parse`) refuses Python's `NaN`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def event_json(fields: Mapping[str, JsonValue]) -> str:
    """An event's JSON text: compact, non-finite numbers as null."""
    return json.dumps(finite(dict(fields)), separators=(",", ":"), default=str, allow_nan=False)


def script_args(fields: Mapping[str, JsonValue]) -> list[str]:
    """Arguments for APPEND_SCRIPT: the event JSON minus `seq` and its opening brace."""
    body = event_json(fields)
    return [body[1:], str(HISTORY_LIMIT), "1" if fields.get("type") == "progress" else "0"]


def progress_keys(job_id: str) -> list[str]:
    return [*script_keys(job_id), keys.progress_tally(job_id), keys.progress_workers(job_id)]


@dataclass(frozen=True)
class WorkerRun:
    """Who reports: one process (`run`, started at `started`, seconds since the epoch) of
    one completion `index` of a job with `completions` workers."""

    run: str
    started: float
    completions: int = 1


def progress_args(fields: Mapping[str, JsonValue], worker: WorkerRun) -> list[str]:
    """Arguments for PROGRESS_SCRIPT: the body (without the job's figure, which the script
    adds) and what the script needs to tally the job."""
    body = {k: v for k, v in fields.items() if k not in JOB_FIGURE_FIELDS}
    text = event_json(body)
    own = fields.get("worker_fraction")
    stage = fields.get("stage")
    index = fields.get("index")
    stamp = fields.get("timestamp")
    now = datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else worker.started
    return [
        text[1:],
        str(HISTORY_LIMIT),
        str(index if isinstance(index, int) else 0),
        worker.run,
        repr(float(own)) if isinstance(own, int | float) else "",
        stage if isinstance(stage, str) else "",
        repr(worker.started),
        repr(now),
        str(worker.completions),
    ]


def parse_workers(raw: Mapping[str, str], completions: int) -> list[WorkerProgress]:
    """Each worker of a job, from the hash the progress script keeps (`fraction:<index>`,
    `stage:<index>`); a worker not heard from is at 0."""
    from kubetask.models import WorkerProgress

    workers = []
    for index in range(completions):
        try:
            fraction = min(max(float(raw.get(f"fraction:{index}", 0.0)), 0.0), 1.0)
        except ValueError:
            fraction = 0.0
        stage = raw.get(f"stage:{index}") or None
        workers.append(WorkerProgress(index=index, fraction=fraction, stage=stage))
    return workers


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
    return _event_adapter().validate_json(raw)
