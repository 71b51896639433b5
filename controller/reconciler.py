"""The reconcile loop, level-triggered as Kubernetes controllers are: a change only enqueues
a job id; `sync` re-reads the record and the backend, derives the state with the one pure
function, and writes the status (and one state event) only when it changed.

One job is synced by one worker at a time; a change that arrives meanwhile syncs it again.
Unfinished jobs are all re-synced on start and every `resync_s`, so nothing depends on an
event having been seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from controller.backends.base import Backend, BackendError, TaskSpec
from controller.bus import EventBus
from controller.outcomes import parse_outcome, summarize
from controller.records import JobRecord, JobStatus, next_status
from controller.states import JobFacts, Observation, derive_state
from controller.store import Store
from kubetask.models import JobState, Outcome

log = logging.getLogger("kubetask.reconciler")

Clock = Callable[[], datetime]
TransitionHook = Callable[[JobRecord, JobStatus], Awaitable[None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def ran_at(observation: Observation | None, now: datetime) -> datetime | None:
    """When the job's tasks ran, if a pod already finished (succeeded or failed)."""
    if observation is None or not (observation.succeeded or observation.failed):
        return None
    return observation.start_time or now


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        backend: Backend,
        spec_for: Callable[[JobRecord], TaskSpec],
        retention_s: int,
        clock: Clock = utcnow,
        workers: int = 8,
        resync_s: float = 30.0,
        on_transition: TransitionHook | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._backend = backend
        self._spec_for = spec_for
        self._retention_s = retention_s
        self._clock = clock
        self._workers = workers
        self._resync_s = resync_s
        self._on_transition = on_transition
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self.ready = asyncio.Event()

    def enqueue(self, job_id: str) -> None:
        if job_id in self._busy:
            self._again.add(job_id)
        elif job_id not in self._queued:
            self._queued.add(job_id)
            self._queue.put_nowait(job_id)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow_backend())
            for _ in range(self._workers):
                group.create_task(self._work())
            group.create_task(self._resync_forever())

    async def _resync_forever(self) -> None:
        while True:
            try:
                for job_id in await self._store.unfinished():
                    self.enqueue(job_id)
                self.ready.set()
            except Exception:
                log.exception("resync failed; trying again")
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(self._resync_s)

    async def _follow_backend(self) -> None:
        while True:
            self.enqueue(await self._backend.changes.get())

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            self._queued.discard(job_id)
            self._busy.add(job_id)
            try:
                await self.sync(job_id)
            except BackendError as exc:
                log.warning("sync of %s: %s; retrying", job_id, exc)
                self._retry_later(job_id, exc.retry_after_s or 1.0)
            except Exception:
                log.exception("sync of %s failed; retrying", job_id)
                self._retry_later(job_id)
            finally:
                self._busy.discard(job_id)
            if job_id in self._again:
                self._again.discard(job_id)
                self.enqueue(job_id)

    def _retry_later(self, job_id: str, delay_s: float = 1.0) -> None:
        asyncio.get_running_loop().call_later(delay_s, self.enqueue, job_id)

    async def sync(self, job_id: str) -> None:
        record = await self._store.get(job_id)
        if record is None or record.status.state.terminal:
            return
        now = self._clock()
        deadline_passed = record.start_deadline_passed(now)
        if not record.submitted and not record.cancel_requested and not deadline_passed:
            # Creating is idempotent: after a crash between create and mark, it finds the job.
            await self._backend.create(self._spec_for(record))
            await self._store.mark_submitted(job_id)
            record = record.model_copy(update={"submitted": True})
        observation = await self._backend.observe(job_id)
        derived = derive_state(
            JobFacts(
                observation=observation,
                submitted=record.submitted,
                cancel_requested=record.cancel_requested,
                start_deadline_passed=deadline_passed,
            )
        )
        if derived.stop and observation is not None:
            await self._backend.delete(job_id)
        result = error = None
        if derived.state in (JobState.SUCCEEDED, JobState.FAILED):
            outcomes = await self._outcomes(record)
            result, error = summarize(derived, outcomes, completions=record.request.completions)
        status = next_status(
            record.status,
            derived,
            attempts=observation.attempts if observation else 0,
            now=now,
            result=result,
            error=error,
            ran_at=ran_at(observation, now),
        )
        if status is None:
            return
        if not await self._store.save_status(record, status):
            self.enqueue(job_id)  # cancelled meanwhile: derive again
            return
        await self._bus.publish_state(
            job_id,
            state=status.state,
            reason=status.reason,
            message=status.message,
            attempts=status.attempts,
            now=now,
        )
        if status.state.terminal:
            await self._bus.expire(job_id, self._retention_s)
        try:
            await self._backend.record_transition(job_id, status)
            if self._on_transition is not None:
                await self._on_transition(record, status)
        except Exception:  # a trace or a notification never blocks the state
            log.warning("after the transition of %s to %s", job_id, status.state, exc_info=True)

    async def _outcomes(self, record: JobRecord) -> dict[int, Outcome]:
        """What each task left: from Redis, or the termination message if Redis lost it."""
        completions = record.request.completions
        found = await self._bus.outcomes(record.id, completions)
        missing = [i for i in range(completions) if i not in found]
        if missing:
            messages = await self._backend.termination_messages(record.id)
            for index in missing:
                outcome = parse_outcome(messages.get(index))
                if outcome is not None:
                    found[index] = outcome
        return found
