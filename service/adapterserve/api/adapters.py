"""GET /adapters and GET /adapters/{name}: what can be served, and where it lives now."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from ..errors import AdapterNotFound, AdapterServeError
from ..formats.registry import load_adapter
from ..state import AppState
from ..store import validate_name
from .deps import get_state
from .schemas import AdapterInfo, AdapterList

router = APIRouter(tags=["adapters"])
_described: dict[tuple[str, str, str], dict] = {}  # (store url, name, version) -> metadata, tensors dropped


def _describe(adapter) -> dict:
    return dict(
        kind=adapter.kind,
        task=adapter.task,
        labels=adapter.labels,
        parameters=adapter.num_parameters,
        bytes=adapter.nbytes,
        format=adapter.format,
        warnings=adapter.warnings,
    )


def _describe_sync(state: AppState, name: str) -> AdapterInfo:
    info = state.store.current(name)
    if info is None:
        raise AdapterNotFound(f"adapter {name!r} not found; available: {state.store.names()}", name=name)
    loaded = state.lifecycle.peek(name)
    if loaded is not None and loaded.version == info.version:
        meta = _describe(loaded.adapter)
    else:
        key = (state.store.url, name, info.version)
        meta = _described.get(key)
        if meta is None:
            try:
                meta = _describe(load_adapter(state.store.fetch(name, info.version), state.backbone.shape))
            except AdapterServeError as e:
                meta = dict(warnings=[f"cannot be served: {e.message}"])
            _described[key] = meta
    return AdapterInfo(
        name=name,
        version=info.version,
        sha256=info.sha256,
        created=info.created,
        residency=state.lifecycle.residency(name),
        pinned=name in state.lifecycle.pins,
        **meta,
    )


@router.get("/adapters", response_model=AdapterList, summary="All adapters in the store")
async def list_adapters(state: AppState = Depends(get_state)):
    def work():
        out = []
        for name in state.store.names():
            try:
                out.append(_describe_sync(state, name))
            except AdapterNotFound:  # deleted while we listed
                continue
        return out

    return AdapterList(adapters=await asyncio.to_thread(work))


@router.get("/adapters/{name}", response_model=AdapterInfo, summary="One adapter")
async def get_adapter(name: str, state: AppState = Depends(get_state)):
    validate_name(name)
    return await asyncio.to_thread(_describe_sync, state, name)
