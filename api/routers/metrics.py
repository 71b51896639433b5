"""`GET /metrics`: the controller's metrics in the Prometheus text format (controller/metrics.py).

The `Metrics` the API and the reconciler report to lives in `app.state.metrics`; an app that
set none gets one here, with only the scrape-time gauges moving.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from kubetask.api.deps import RuntimeDep
from kubetask.controller.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["meta"])


async def get_metrics(request: Request) -> Metrics:
    metrics = getattr(request.app.state, "metrics", None)
    if not isinstance(metrics, Metrics):
        metrics = Metrics()
        request.app.state.metrics = metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(runtime: RuntimeDep, metrics: MetricsDep) -> Response:
    await metrics.refresh(runtime.store)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)
