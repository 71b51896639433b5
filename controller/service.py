"""What the API asks of the controller: submit, read, list, cancel, logs, kinds.

Submitting validates the kind's params, stores the record (the job is accepted from then on:
the reconciler creates the backend's job, and creates it again after any crash) and wakes
the reconciler. Every job belongs to its submitter's tenant; a caller scoped to a tenant
finds another tenant's job exactly as it finds a missing one (JobNotFound).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from pydantic import JsonValue, ValidationError

from kubetask import eventlog
from kubetask.controller.backends.base import Backend, RefusesRequests, TaskSpec
from kubetask.controller.bus import EventBus
from kubetask.controller.chaining import JobLookup, UploadCheck, resolve_references
from kubetask.controller.clock import Clock
from kubetask.controller.errors import (
    FieldError,
    IdempotencyKeyReused,
    InvalidRequest,
    JobFinished,
    JobNotFound,
)
from kubetask.controller.ids import is_job_id, new_job_id
from kubetask.controller.reconciler import Reconciler
from kubetask.controller.records import JobRecord
from kubetask.controller.store import (
    NO_CAPS,
    CancelOutcome,
    IdempotencyConflict,
    JobQuery,
    Store,
    TenantCaps,
)
from kubetask.controller.uploads import upload_check
from kubetask.kinds import KindSpec
from kubetask.models import DEFAULT_TENANT, BackendRef, JobPage, JobRequest, JobView, KindInfo
from kubetask.storage import ArtifactStore

# Awaited once a submission is found valid: the caller's count of it (a rate limit)
Admit = Callable[[], Awaitable[object]]


def validate_request(
    request: JobRequest,
    *,
    kinds: Mapping[str, KindSpec],
    priorities: Collection[str] | None = None,
) -> JobRequest:
    """The request with its params checked by the kind's model (one of `kinds`, the installed
    ones) and its defaults filled in; `priorities` (when given) are the allowed values of
    `priority`. `InvalidRequest` naming every field found wrong, not the first alone."""
    errors: list[FieldError] = []
    spec = kinds.get(request.kind)
    params = None
    if spec is None:
        known = ", ".join(sorted(kinds))
        errors.append(
            FieldError(("kind",), f"unknown kind {request.kind!r}; known: {known}", "enum")
        )
    else:
        if request.completions > 1 and not spec.splits:
            errors.append(
                FieldError(("completions",), _cannot_split(request, kinds), "value_error")
            )
        try:
            params = spec.params.model_validate(request.params)
        except ValidationError as exc:
            errors += [
                FieldError(("params", *e["loc"]), e["msg"], e["type"])
                for e in exc.errors(include_url=False)
            ]
        if getattr(params, "device", None) == "cuda" and request.resources.gpu == 0:
            message = (
                "'cuda' needs a GPU: ask for one in resources.gpu, or use 'auto' "
                "(CUDA when the task has a GPU, else the CPU)"
            )
            errors.append(FieldError(("params", "device"), message, "value_error"))
    if priorities is not None and request.priority not in (None, *priorities):
        allowed = ", ".join(sorted(priorities)) or "none"
        errors.append(FieldError(("priority",), f"unknown priority; allowed: {allowed}", "enum"))
    if request.parallelism > request.completions:
        errors.append(FieldError(("parallelism",), "must not exceed completions", "value_error"))
    if errors or params is None:
        raise InvalidRequest(errors)
    return request.model_copy(update={"params": params.model_dump(mode="json")})


def _cannot_split(request: JobRequest, kinds: Mapping[str, KindSpec]) -> str:
    splitting = ", ".join(sorted(name for name, kind in kinds.items() if kind.splits))
    return (
        f"{request.kind} cannot share its work among workers: each of the "
        f"{request.completions} would do all of it, into the same files; ask for 1 "
        f"(kinds that split their work: {splitting})"
    )


async def accept(
    request: JobRequest,
    *,
    kinds: Mapping[str, KindSpec],
    tenant: str,
    lookup: JobLookup,
    priorities: Collection[str] | None = None,
    refusals: Callable[[JobRequest], list[FieldError]] | None = None,
    uploads: UploadCheck | None = None,
) -> JobRequest:
    """What submitting, a dry run and `kubetask-server render` all make of a request:
    `validate_request`, then what the backend `refusals` name, then each `job:<id>` in the
    params resolved to that job's output and each artifact path checked to be the tenant's
    (controller/chaining.py). `lookup` answers None for a job `tenant` may not see;
    `uploads` whether an `upload:<path>` exists (None: not checked)."""
    request = validate_request(request, kinds=kinds, priorities=priorities)
    if refusals is not None and (refused := refusals(request)):
        raise InvalidRequest(refused)
    model = kinds[request.kind].params
    params = await resolve_references(
        model, request.params, tenant=tenant, lookup=lookup, uploads=uploads
    )
    return request.model_copy(update={"params": params})


def fingerprint(request: JobRequest) -> str:
    """Equal for equal requests, whatever the order of their keys."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def kind_infos(kinds: Mapping[str, KindSpec]) -> list[KindInfo]:
    """What `GET /v1/kinds` shows of each kind: its description, image role and params schema."""
    schemas: list[KindInfo] = []
    for name, spec in sorted(kinds.items()):
        schema: dict[str, Any] = spec.params.model_json_schema()
        schemas.append(
            KindInfo(
                kind=name, description=spec.description, image=spec.image, params_schema=schema
            )
        )
    return schemas


def tenant_lookup(store: Store, tenant: str) -> JobLookup:
    """The job records of `store` that `tenant` may see (None for the others)."""

    async def lookup(job_id: str) -> JobRecord | None:
        record = await store.get(job_id)
        return record if record is not None and record.visible_to(tenant) else None

    return lookup


class JobService:
    def __init__(
        self,
        *,
        kinds: Mapping[str, KindSpec],
        store: Store,
        bus: EventBus,
        backend: Backend,
        reconciler: Reconciler,
        spec_for: Callable[[JobRecord], TaskSpec],
        clock: Clock,
        priorities: Collection[str] | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        """`artifacts`: the store `upload:<path>` params are looked up in (None: unchecked)."""
        self.kinds = kinds
        self._uploads = upload_check(artifacts) if artifacts is not None else None
        self._priorities = priorities
        self._store = store
        self._bus = bus
        self._backend = backend
        self._reconciler = reconciler
        self._spec_for = spec_for
        self._clock = clock

    async def submit(
        self,
        request: JobRequest,
        *,
        idempotency_key: str | None,
        tenant: str = DEFAULT_TENANT,
        caps: TenantCaps = NO_CAPS,
        admit: Admit | None = None,
    ) -> tuple[JobView, bool]:
        """(the job, True) when created now; (the original job, False) for a replay of the
        tenant's Idempotency-Key. `TenantCapReached` when the tenant is at one of its
        `caps`; `admit` is awaited once the request is found valid (the caller's rate limit:
        what it raises, the submission does)."""
        request = await self._validated(request, tenant, admit)
        now = self._clock()
        record = JobRecord(id=new_job_id(now), request=request, created_at=now, tenant=tenant)
        try:
            record, created = await self._store.create(
                record,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint(request),
                caps=caps,
            )
        except IdempotencyConflict as exc:
            raise IdempotencyKeyReused(exc.job_id) from None
        if not created:
            return await self._view(record), False
        self._reconciler.enqueue(record.id)
        return self._new_view(record), True

    async def dry_run(
        self, request: JobRequest, *, tenant: str = DEFAULT_TENANT, admit: Admit | None = None
    ) -> dict[str, JsonValue]:
        """What submitting would create, creating nothing (`admit` as for `submit`)."""
        request = await self._validated(request, tenant, admit)
        now = self._clock()
        record = JobRecord(id=new_job_id(now), request=request, created_at=now, tenant=tenant)
        return {
            "request": request.model_dump(mode="json"),
            "object": self._backend.render(self._spec_for(record)),
        }

    async def _validated(
        self, request: JobRequest, tenant: str, admit: Admit | None = None
    ) -> JobRequest:
        """`accept`: the tenant's own jobs and uploads only; then `admit`, if any."""
        backend = self._backend
        accepted = await accept(
            request,
            kinds=self.kinds,
            tenant=tenant,
            lookup=tenant_lookup(self._store, tenant),
            priorities=self._priorities,
            refusals=backend.refusals if isinstance(backend, RefusesRequests) else None,
            uploads=self._uploads,
        )
        if admit is not None:
            await admit()
        return accepted

    async def get(self, job_id: str, *, tenant: str | None = None) -> JobView:
        """The job; `tenant`: only that tenant's (None: any)."""
        return await self._view(await self._record(job_id, tenant))

    async def find(self, query: JobQuery, *, cursor: str | None, limit: int) -> JobPage:
        if cursor is not None and not is_job_id(cursor):
            raise InvalidRequest(
                [FieldError(("query", "cursor"), "not a cursor from this API", "value_error")]
            )
        records, next_cursor = await self._store.find(query, cursor=cursor, limit=limit)
        latest = await self._bus.latest_progress([r.id for r in records])
        return JobPage(
            items=[r.view(backend=self._ref(r), progress=latest.get(r.id)) for r in records],
            next_cursor=next_cursor,
        )

    async def cancel(self, job_id: str, *, tenant: str | None = None) -> JobView:
        await self._record(job_id, tenant)
        answer = await self._store.request_cancel(job_id)
        if answer is CancelOutcome.MISSING:
            raise JobNotFound(job_id)
        if answer is not CancelOutcome.ACCEPTED:
            raise JobFinished(job_id, str(answer))
        self._reconciler.enqueue(job_id)
        return await self.get(job_id)

    async def logs(
        self, job_id: str, *, tail: int | None, tenant: str | None = None
    ) -> tuple[str | None, bool]:
        """The backend's log of the job (None: it holds none), and whether the job ran and
        ended (so it had a log, which only the archive keeps once the backend drops it)."""
        record = await self._record(job_id, tenant)
        ended = record.status.state.terminal and record.status.started_at is not None
        return await self._backend.logs(job_id, tail=tail), ended

    async def purge_from_backend(self, job_id: str) -> None:
        """After a purge of its record and files: what the backend keeps of it too."""
        await self._backend.purge(job_id)

    async def tasks_stopped(self, job_id: str) -> bool:
        """Whether none of the job's tasks runs any more (a cancelled job's may, a moment)."""
        return await self._backend.stopped(job_id)

    async def _record(self, job_id: str, tenant: str | None = None) -> JobRecord:
        record = await self._store.get(job_id) if is_job_id(job_id) else None
        if record is None or not record.visible_to(tenant):
            raise JobNotFound(job_id)  # another tenant's job is answered as a missing one
        return record

    async def _view(self, record: JobRecord) -> JobView:
        latest = await self._bus.latest_progress([record.id])
        completions = record.request.completions
        workers = await self._bus.workers(record.id, completions) if completions > 1 else []
        return record.view(
            backend=self._ref(record), progress=latest.get(record.id), workers=workers
        )

    def _new_view(self, record: JobRecord) -> JobView:
        """The view of a job created just now: none of its workers has reported yet (what
        `_view` would read back, without the round trips)."""
        completions = record.request.completions
        workers = eventlog.parse_workers({}, completions) if completions > 1 else []
        return record.view(backend=self._ref(record), progress=None, workers=workers)

    def _ref(self, record: JobRecord) -> BackendRef:
        return self._backend.ref(record.id, tenant=record.tenant, namespace=record.namespace)
