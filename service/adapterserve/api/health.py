"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="The process runs (never fails because of load)")
async def live():
    return {"status": "alive"}


@router.get("/health/ready", summary="The backbone is loaded and warm, the batcher runs, and we are not draining")
async def ready(request: Request):
    state = getattr(request.app.state, "adapterserve", None)
    if state is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    if state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if not state.ready or not state.batcher.running:
        return JSONResponse({"status": "starting"}, status_code=503)
    return {"status": "ready", "backbone": state.backbone.info.name, "device": str(state.backbone.device)}


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request):
    state = request.app.state.adapterserve
    m = state.metrics
    m.queue_requests.set(state.batcher.queued_requests)
    m.queue_tokens.set(state.batcher.queued_tokens)
    for tier, n in state.lifecycle.counts().items():
        m.adapters_resident.labels(tier).set(n)
    m.ready.set(1 if state.ready and not state.draining else 0)
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
