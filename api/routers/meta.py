"""Kinds, health and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kubetask.api.deps import RuntimeDep
from kubetask.api.problems import RETRY_AFTER, problem
from kubetask.controller.service import kind_infos
from kubetask.models import KindInfo

router = APIRouter(tags=["meta"])


@router.get("/v1/kinds", operation_id="list_kinds", response_model=list[KindInfo])
async def list_kinds(runtime: RuntimeDep) -> list[KindInfo]:
    return kind_infos(runtime.service.kinds)


@router.get(
    "/healthz",
    operation_id="healthz",
    response_model=dict[str, str],
    responses={
        503: {
            "description": "The embedded Redis server is gone (being restarted).",
            "headers": RETRY_AFTER,
        }
    },
)
async def healthz(runtime: RuntimeDep) -> JSONResponse:
    if not runtime.alive():
        return problem(
            503, "Service Unavailable", "the embedded Redis server is gone; restarting it",
            headers={"Retry-After": "1"},
        )  # fmt: skip
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=dict[str, str],
    responses={
        503: {
            "description": "Not ready: Redis unreachable, or the reconciler or event hub down.",
            "model": dict[str, str],
        }
    },
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready = await runtime.ready()
    return JSONResponse(
        {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
    )
