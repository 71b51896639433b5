"""Sends a task's events and outcome to Redis, and never lets Redis fail the task.

When Redis is unreachable the publisher logs once per outage, drops what it cannot send and
tries again after a short pause; the outcome also goes to the termination log, so the
controller still learns how the task ended.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

import redis
from pydantic import JsonValue

from kubetask import eventlog, keys

log = logging.getLogger("kubetask.task")

OUTCOME_TTL_S = 7 * 24 * 3600


class RedisPublisher:
    """Appends events to a job's event log; each call either succeeds or is dropped."""

    def __init__(
        self,
        url: str,
        *,
        job_id: str,
        worker: eventlog.WorkerRun | None = None,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._job_id = job_id
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=0.5)
        self._append = self._client.register_script(eventlog.APPEND_SCRIPT)
        self._append_progress = self._client.register_script(eventlog.PROGRESS_SCRIPT)
        self._worker = worker or eventlog.WorkerRun(run=uuid.uuid4().hex, started=time.time())
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._down_until: float | None = None
        self.dropped = 0

    def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool:
        """Append events in one round trip. False (and logged) when Redis is unavailable."""
        if not events:
            return True
        if self._down_until is not None and self._clock() < self._down_until:
            self.dropped += len(events)
            return False
        event_keys = eventlog.script_keys(self._job_id)
        progress_keys = eventlog.progress_keys(self._job_id)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for fields in events:
                    if fields.get("type") == "progress":
                        args = eventlog.progress_args(fields, self._worker)
                        self._append_progress(keys=progress_keys, args=args, client=pipe)
                    else:
                        args = eventlog.script_args(fields)
                        self._append(keys=event_keys, args=args, client=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            self._mark_down(exc)
            self.dropped += len(events)
            return False
        if self._down_until is not None:
            log.warning("redis is reachable again; %d progress events were dropped", self.dropped)
            self._down_until = None
        return True

    def put_outcome(self, outcome_json: str, *, index: int, attempts: int = 3) -> bool:
        """Store the task's outcome; a few quick tries, then give up (the log has it too)."""
        for attempt in range(attempts):
            try:
                self._client.set(keys.outcome(self._job_id, index), outcome_json, ex=OUTCOME_TTL_S)
                return True
            except redis.RedisError as exc:
                self._mark_down(exc)
                time.sleep(0.2 * (attempt + 1))
        return False

    def close(self) -> None:
        self._client.close()

    def _mark_down(self, exc: Exception) -> None:
        if self._down_until is None:
            log.warning("redis unavailable (%s); the task carries on without live progress", exc)
        self._down_until = self._clock() + self._retry_after_s
