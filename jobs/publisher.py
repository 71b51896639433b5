"""Sends a task's events and outcome to Redis, and never lets Redis fail the task.

When Redis is unreachable the publisher logs once per outage, drops what it cannot send and
tries again after a short pause; the outcome also goes to the termination log, so the
controller still learns how the task ended. The event log's scripts run with EVAL (the server
caches them by digest), so a batch needs no script loaded before it and keeps its order.
The connection is `kubetask.jobs.resp`'s: no redis-py (and its asyncio client) for a task.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

from pydantic import JsonValue

from kubetask import eventlog, keys
from kubetask.jobs import resp

log = logging.getLogger("kubetask.task")

OUTCOME_TTL_S = 7 * 24 * 3600
QUICK_TRIES_S = 1.0  # the outcome is tried again only while tries fail this fast (refused)


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
        self._client = resp.connect(url, timeout_s=2.0, connect_timeout_s=0.5)
        self._worker = worker or eventlog.WorkerRun(run=os.urandom(16).hex(), started=time.time())
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._down_until: float | None = None
        self.dropped = 0

    def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool:
        """Append events in one round trip. False (and logged) when Redis is unavailable or
        refused any of them."""
        if not events:
            return True
        if self._down_until is not None and self._clock() < self._down_until:
            self.dropped += len(events)
            return False
        event_keys = eventlog.script_keys(self._job_id)
        progress_keys = eventlog.progress_keys(self._job_id)
        commands: list[list[resp.Arg]] = []
        for fields in events:
            if fields.get("type") == "progress":
                args = eventlog.progress_args(fields, self._worker)
                script, script_keys = eventlog.PROGRESS_SCRIPT, progress_keys
            else:
                args = eventlog.script_args(fields)
                script, script_keys = eventlog.APPEND_SCRIPT, event_keys
            commands.append(["EVAL", script, len(script_keys), *script_keys, *args])
        try:
            replies = self._client.execute(commands)
        except resp.RedisUnavailable as exc:
            self._mark_down(exc)
            self.dropped += len(events)
            return False
        failed = [reply for reply in replies if isinstance(reply, resp.ReplyError)]
        if failed:  # the server ran the others; these events are lost
            log.warning("redis refused %d of %d events: %s", len(failed), len(events), failed[0])
            self.dropped += len(failed)
        if self._down_until is not None:
            log.warning("redis is reachable again; %d progress events were dropped", self.dropped)
            self._down_until = None
        return not failed

    def put_outcome(self, outcome_json: str, *, index: int, attempts: int = 3) -> bool:
        """Store the task's outcome; a few quick tries while Redis refuses (restarting), none
        once a try has waited out its timeout (a server that hangs would hold the task's
        exit, and its slot, for each); then give up (the termination log has it)."""
        started = self._clock()
        for attempt in range(attempts):
            command: list[resp.Arg] = ["SET", keys.outcome(self._job_id, index), outcome_json]
            try:
                (reply,) = self._client.execute([[*command, "EX", OUTCOME_TTL_S]])
            except resp.RedisUnavailable as exc:
                self._mark_down(exc)
                if self._clock() - started >= QUICK_TRIES_S:
                    return False
                time.sleep(0.2 * (attempt + 1))
                continue
            if isinstance(reply, resp.ReplyError):
                log.warning("redis refused the outcome: %s", reply)
                return False
            return True
        return False

    def close(self) -> None:
        self._client.close()

    def _mark_down(self, exc: Exception) -> None:
        if self._down_until is None:
            log.warning("redis unavailable (%s); the task carries on without live progress", exc)
        self._down_until = self._clock() + self._retry_after_s
