"""`/v1/jobs`: submit, read, list, cancel, logs."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import ServiceDep
from api.routers.metrics import MetricsDep
from controller.errors import FieldError, InvalidRequest
from controller.store import JobQuery
from kubetask.models import JobPage, JobRequest, JobState, JobView

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
MAX_TAIL_LINES = 100_000


def _labels(selectors: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for selector in selectors:
        key, sep, value = selector.partition("=")
        if not sep or not key:
            raise InvalidRequest(
                [FieldError(("query", "label"), f"{selector!r} is not key=value", "value_error")]
            )
        labels[key] = value
    return labels


@router.post(
    "",
    operation_id="submit_job",
    status_code=status.HTTP_201_CREATED,
    response_model=JobView,
    responses={
        200: {"description": "Replay of an Idempotency-Key, or a dry run: nothing created."},
        409: {"description": "Idempotency-Key reused with a different request."},
        413: {"description": "Body too large."},
        422: {"description": "Unknown field or kind, or invalid params."},
    },
)
async def submit_job(
    request: JobRequest,
    service: ServiceDep,
    metrics: MetricsDep,
    response: Response,
    dry_run: bool = False,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Any:
    if dry_run:
        return JSONResponse(service.dry_run(request))
    started = time.perf_counter()
    view, created = await service.submit(request, idempotency_key=idempotency_key)
    metrics.observe_submit(request.kind, time.perf_counter() - started, created=created)
    location = f"/v1/jobs/{view.id}"
    if not created:
        return JSONResponse(view.model_dump(mode="json"), headers={"Location": location})
    response.headers["Location"] = location
    return view


@router.get("", operation_id="list_jobs", response_model=JobPage)
async def list_jobs(
    service: ServiceDep,
    state: JobState | None = None,
    kind: str | None = None,
    label: Annotated[list[str], Query(description="key=value, repeatable")] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> JobPage:
    query = JobQuery(state=state, kind=kind, labels=_labels(label))
    return await service.find(query, cursor=cursor, limit=limit)


@router.get("/{job_id}", operation_id="get_job", response_model=JobView)
async def get_job(job_id: str, service: ServiceDep) -> JobView:
    return await service.get(job_id)


@router.delete(
    "/{job_id}",
    operation_id="cancel_job",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={404: {"description": "No such job."}, 409: {"description": "Already finished."}},
)
async def cancel_job(job_id: str, service: ServiceDep) -> JobView:
    return await service.cancel(job_id)


@router.get("/{job_id}/logs", operation_id="job_logs", response_class=PlainTextResponse)
async def job_logs(
    job_id: str,
    service: ServiceDep,
    tail: Annotated[int | None, Query(ge=1, le=MAX_TAIL_LINES)] = None,
) -> str:
    return await service.logs(job_id, tail=tail)
