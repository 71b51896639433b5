"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.runtime import Runtime
from controller.service import JobService


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_service(request: Request) -> JobService:
    return get_runtime(request).service


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ServiceDep = Annotated[JobService, Depends(get_service)]
