"""`/v1/jobs`: submit, read, list, cancel (or purge a finished job with its artifacts), logs
(live, else as archived when the job ended); each scoped to the caller's tenant (an
admin's: every tenant), another tenant's job answering 404 as a missing one does."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from kubetask.api.body import JsonRoute
from kubetask.api.deps import ArtifactsDep, LimitsDep, PrincipalDep, RuntimeDep, ServiceDep
from kubetask.api.limits import CAP_RETRY_AFTER_S, LimitExceeded, apply_caps
from kubetask.api.problems import RETRY_AFTER, RETRY_AFTER_S, problem
from kubetask.api.routers.metrics import MetricsDep
from kubetask.api.settings import Settings
from kubetask.controller.archive import archived_log
from kubetask.controller.backends.base import BackendError
from kubetask.controller.errors import FieldError, InvalidRequest
from kubetask.controller.store import JobQuery, TenantCapReached
from kubetask.models import DryRun, JobPage, JobRequest, JobState, JobView

log = logging.getLogger("kubetask.api")

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    route_class=JsonRoute,
    responses={
        401: {"description": "No valid bearer token (WWW-Authenticate says why)."},
        503: {
            "description": "The job store is unavailable; try again after Retry-After.",
            "headers": RETRY_AFTER,
        },
    },
)

DEFAULT_PAGE_SIZE = 50
MAX_TAIL_LINES = 100_000


def _labels(selectors: list[str]) -> dict[str, str] | None:
    """The labels every job listed carries; None when no job can (one key, two values)."""
    labels: dict[str, str] = {}
    for selector in selectors:
        key, sep, value = selector.partition("=")
        if not sep or not key:
            raise InvalidRequest(
                [FieldError(("query", "label"), f"{selector!r} is not key=value", "value_error")]
            )
        if labels.setdefault(key, value) != value:
            return None
    return labels


def _secrets_allowed(request: JobRequest, settings: Settings) -> None:
    """Secrets reach a task through the kubelet: the local backend has none to read. And
    kubetask's own (the task Redis URL or password, the S3 credentials), which the chart
    puts in every tenant namespace, are the server's to hand out: a tenant naming one could
    read every tenant's data with it (a library that prints a variable's value is enough)."""
    if request.secrets and settings.resolved_backend != "kubernetes":
        message = "the local backend cannot read Kubernetes Secrets; use the kubernetes backend"
        raise InvalidRequest([FieldError(("secrets",), message, "backend")])
    own = {ref.name for ref in settings.task_secret_env().values()}
    refused = [
        FieldError(
            ("secrets", i, "name"), f"{s.name!r} is kubetask's own Secret: not for tasks", "value"
        )
        for i, s in enumerate(request.secrets)
        if s.name in own
    ]
    if refused:
        raise InvalidRequest(refused)


@router.post(
    "",
    operation_id="submit_job",
    status_code=status.HTTP_201_CREATED,
    response_model=JobView,
    responses={
        200: {
            "description": "Replay of an Idempotency-Key, or a dry run: nothing created.",
            "model": JobView | DryRun,
        },
        201: {"headers": {"Location": {"description": "The job.", "schema": {"type": "string"}}}},
        409: {"description": "Idempotency-Key reused with a different request."},
        413: {"description": "Body too large."},
        422: {"description": "Unknown field or kind, invalid params, or over a per-job cap."},
        429: {"description": "Over the tenant's submissions per minute or unfinished jobs."},
    },
)
async def submit_job(
    request: JobRequest,
    service: ServiceDep,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    limits: LimitsDep,
    metrics: MetricsDep,
    response: Response,
    dry_run: bool = False,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Any:
    settings = runtime.settings
    request = apply_caps(request, settings.job_caps())
    _secrets_allowed(request, settings)
    admit = partial(limits.admit_submit, principal.tenant)  # counted once found valid
    if dry_run:
        return JSONResponse(await service.dry_run(request, tenant=principal.tenant, admit=admit))
    started = time.perf_counter()
    try:
        view, created = await service.submit(
            request,
            idempotency_key=idempotency_key,
            tenant=principal.tenant,
            caps=settings.tenant_caps(),
            admit=admit,
        )
    except TenantCapReached as exc:
        raise LimitExceeded(str(exc), retry_after_s=CAP_RETRY_AFTER_S[exc.cap]) from None
    metrics.observe_submit(request.kind, time.perf_counter() - started, created=created)
    location = f"/v1/jobs/{view.id}"
    if not created:
        return JSONResponse(view.model_dump(mode="json"), headers={"Location": location})
    response.headers["Location"] = location
    return view


@router.get("", operation_id="list_jobs", response_model=JobPage)
async def list_jobs(
    service: ServiceDep,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    state: JobState | None = None,
    kind: str | None = None,
    tenant: Annotated[
        str | None,
        Query(min_length=1, max_length=63, description="An admin's filter; users see their own."),
    ] = None,
    label: Annotated[
        list[str], Query(description="key=value, repeatable: jobs with every label given")
    ] = [],  # noqa: B006
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            description="Jobs per page: default 50; over the server's most "
            "(KUBETASK_MAX_PAGE_SIZE, 200 unless set lower), that many, and `next_cursor` "
            "leads on.",
        ),
    ] = None,
    cursor: str | None = None,
) -> JobPage:
    limit = min(limit or DEFAULT_PAGE_SIZE, runtime.settings.max_page_size)
    scope = principal.scope
    if scope is not None and tenant not in (None, scope):
        return JobPage(items=[])  # another tenant's jobs: as if there were none
    labels = _labels(label)
    if labels is None:
        return JobPage(items=[])  # one key with two values: no job has both
    query = JobQuery(state=state, kind=kind, labels=labels, tenant=scope or tenant)
    return await service.find(query, cursor=cursor, limit=limit)


@router.get(
    "/{job_id}",
    operation_id="get_job",
    response_model=JobView,
    responses={404: {"description": "No such job."}},
)
async def get_job(job_id: str, service: ServiceDep, principal: PrincipalDep) -> JobView:
    return await service.get(job_id, tenant=principal.scope)


@router.delete(
    "/{job_id}",
    operation_id="cancel_job",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={
        204: {"description": "Purged: the finished job's record and artifacts are deleted."},
        404: {"description": "No such job."},
        409: {"description": "Cancel: already finished. Purge: not finished yet."},
    },
)
async def cancel_job(
    job_id: str,
    service: ServiceDep,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    purge: Annotated[
        bool,
        Query(
            description="Delete a finished job's record and every artifact under its prefix "
            "(its archived log too); an unfinished one answers 409: cancel it first."
        ),
    ] = False,
) -> Any:
    """Cancel the job; with `purge=true`, delete a finished job and its artifacts."""
    if not purge:
        return await service.cancel(job_id, tenant=principal.scope)
    view = await service.get(job_id, tenant=principal.scope)
    if not view.state.terminal:  # its tasks may still write files: purging now would race them
        detail = f"job {job_id} is {view.state}: cancel it, then purge it once it is cancelled"
        return problem(409, "Conflict", detail, state=view.state.value)
    if not await service.tasks_stopped(job_id):  # cancelled, its tasks stopping: they would
        detail = (  # write files (a checkpoint, staged out) after the purge, for nobody
            f"job {job_id} is {view.state}, but its tasks are still stopping: purge it once "
            "they have (in a few seconds)"
        )
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        return problem(409, "Conflict", detail, headers=headers, state=view.state.value)
    if runtime.janitor is None:  # a Runtime made by hand without one
        raise HTTPException(503, "the artifact store is not configured")
    await runtime.janitor.purge(job_id, forget=partial(runtime.store.forget, job_id))
    try:  # its folder or Job would keep its params and logs until the backend's own TTL
        await service.purge_from_backend(job_id)
    except BackendError as exc:
        log.warning(
            "job %s purged; its backend copy stays until the backend's TTL: %s", job_id, exc
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{job_id}/logs",
    operation_id="job_logs",
    response_class=PlainTextResponse,
    response_model=None,
    responses={
        404: {"description": "No such job."},
        410: {
            "description": "The job ran, but its log was not kept (its pods were gone "
            "before it could be archived)."
        },
    },
)
async def job_logs(
    job_id: str,
    service: ServiceDep,
    principal: PrincipalDep,
    store: ArtifactsDep,
    tail: Annotated[int | None, Query(ge=1, le=MAX_TAIL_LINES)] = None,
) -> str | Response:
    """The tasks' output: live from the backend while it has it, then the copy archived
    into the artifact store when the job ended (`<id>/logs/output.log`); 410 for a job that
    ran and ended with neither (never an empty answer passed off as its log)."""
    live, ended = await service.logs(job_id, tail=tail, tenant=principal.scope)
    if live:
        return live
    archived = await archived_log(store, job_id, tail=tail)
    if archived is not None:
        return archived
    if live is None and ended:
        detail = (
            f"job {job_id}'s log was not kept: its pods were gone before the log could be "
            "archived (deleted by hand, or while the server was down)"
        )
        return problem(410, "Gone", detail)
    return live or ""
