"""What the API asks of the controller: submit, read, list, cancel, logs, kinds.

Submitting validates the kind's params, stores the record (the job is accepted from then on:
the reconciler creates the backend's job, and creates it again after any crash) and wakes
the reconciler.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from typing import Any

from pydantic import JsonValue, ValidationError

from controller.backends.base import Backend, TaskSpec
from controller.bus import EventBus
from controller.errors import (
    FieldError,
    IdempotencyKeyReused,
    InvalidRequest,
    JobFinished,
    JobNotFound,
)
from controller.ids import is_job_id, new_job_id
from controller.reconciler import Clock, Reconciler
from controller.records import JobRecord
from controller.store import CancelOutcome, IdempotencyConflict, JobQuery, Store
from jobs.registry import KINDS
from kubetask.models import JobPage, JobRequest, JobView, KindInfo


def validate_request(
    request: JobRequest, *, priorities: Collection[str] | None = None
) -> JobRequest:
    """The request with its params checked by the kind's model and its defaults filled in;
    `priorities` (when given) are the allowed values of `priority`."""
    spec = KINDS.get(request.kind)
    if spec is None:
        known = ", ".join(sorted(KINDS))
        raise InvalidRequest(
            [FieldError(("kind",), f"unknown kind {request.kind!r}; known: {known}", "enum")]
        )
    try:
        params = spec.params.model_validate(request.params)
    except ValidationError as exc:
        raise InvalidRequest(
            [
                FieldError(("params", *e["loc"]), e["msg"], e["type"])
                for e in exc.errors(include_url=False)
            ]
        ) from None
    if priorities is not None and request.priority not in (None, *priorities):
        allowed = ", ".join(sorted(priorities)) or "none"
        raise InvalidRequest(
            [FieldError(("priority",), f"unknown priority; allowed: {allowed}", "enum")]
        )
    if request.parallelism > request.completions:
        raise InvalidRequest(
            [FieldError(("parallelism",), "must not exceed completions", "value_error")]
        )
    return request.model_copy(update={"params": params.model_dump(mode="json")})


def fingerprint(request: JobRequest) -> str:
    """Equal for equal requests, whatever the order of their keys."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def kind_infos() -> list[KindInfo]:
    schemas: list[KindInfo] = []
    for name, spec in sorted(KINDS.items()):
        schema: dict[str, Any] = spec.params.model_json_schema()
        schemas.append(
            KindInfo(
                kind=name, description=spec.description, image=spec.image, params_schema=schema
            )
        )
    return schemas


class JobService:
    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        backend: Backend,
        reconciler: Reconciler,
        spec_for: Callable[[JobRecord], TaskSpec],
        clock: Clock,
        priorities: Collection[str] | None = None,
    ) -> None:
        self._priorities = priorities
        self._store = store
        self._bus = bus
        self._backend = backend
        self._reconciler = reconciler
        self._spec_for = spec_for
        self._clock = clock

    async def submit(
        self, request: JobRequest, *, idempotency_key: str | None
    ) -> tuple[JobView, bool]:
        """(the job, True) when created now; (the original job, False) for a replay."""
        request = validate_request(request, priorities=self._priorities)
        now = self._clock()
        record = JobRecord(id=new_job_id(now), request=request, created_at=now)
        try:
            record, created = await self._store.create(
                record, idempotency_key=idempotency_key, fingerprint=fingerprint(request)
            )
        except IdempotencyConflict as exc:
            raise IdempotencyKeyReused(exc.job_id) from None
        if created:
            self._reconciler.enqueue(record.id)
        return await self._view(record), created

    def dry_run(self, request: JobRequest) -> dict[str, JsonValue]:
        """What submitting would create, creating nothing."""
        request = validate_request(request, priorities=self._priorities)
        now = self._clock()
        record = JobRecord(id=new_job_id(now), request=request, created_at=now)
        return {
            "request": request.model_dump(mode="json"),
            "object": self._backend.render(self._spec_for(record)),
        }

    async def get(self, job_id: str) -> JobView:
        return await self._view(await self._record(job_id))

    async def find(self, query: JobQuery, *, cursor: str | None, limit: int) -> JobPage:
        if cursor is not None and not is_job_id(cursor):
            raise InvalidRequest([FieldError(("cursor",), "not a cursor from this API", "value")])
        records, next_cursor = await self._store.find(query, cursor=cursor, limit=limit)
        latest = await self._bus.latest_progress([r.id for r in records])
        return JobPage(
            items=[
                r.view(backend=self._backend.ref(r.id), progress=latest.get(r.id)) for r in records
            ],
            next_cursor=next_cursor,
        )

    async def cancel(self, job_id: str) -> JobView:
        answer = await self._store.request_cancel(job_id)
        if answer is CancelOutcome.MISSING:
            raise JobNotFound(job_id)
        if answer is not CancelOutcome.ACCEPTED:
            raise JobFinished(job_id, str(answer))
        self._reconciler.enqueue(job_id)
        return await self.get(job_id)

    async def logs(self, job_id: str, *, tail: int | None) -> str:
        await self._record(job_id)
        return await self._backend.logs(job_id, tail=tail) or ""

    async def _record(self, job_id: str) -> JobRecord:
        record = await self._store.get(job_id) if is_job_id(job_id) else None
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def _view(self, record: JobRecord) -> JobView:
        latest = await self._bus.latest_progress([record.id])
        return record.view(backend=self._backend.ref(record.id), progress=latest.get(record.id))
