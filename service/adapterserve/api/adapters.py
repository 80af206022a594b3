"""GET /adapters and GET /adapters/{name}: what can be served, and where it lives now.

Resident adapters are described from memory. The others are described from their config files and
safetensors headers when their folder is on local disk (never by loading tensors, and never downloading
from a remote store); otherwise from the store's metadata alone. Nothing is remembered between requests,
and an adapter that cannot be described is listed with a warning saying why instead of failing the list.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends

from ..errors import AdapterNotFound, AdapterServeError, Unavailable
from ..formats.describe import describe_folder
from ..state import AppState
from ..store import VersionInfo, not_found, validate_name
from .deps import get_state
from .middleware import metric_route
from .responses import errors
from .schemas import AdapterInfo, AdapterList, AdapterName

log = logging.getLogger(__name__)
router = APIRouter(tags=["adapters"], route_class=metric_route("adapters"))


def _describe(adapter) -> dict:
    return dict(
        kind=adapter.kind,
        task=adapter.task,
        labels=adapter.labels,
        parameters=adapter.num_parameters,
        bytes=adapter.nbytes,
        format=adapter.format,
        warnings=adapter.warnings,
        members=getattr(adapter, "members", None),
    )


def _describe_sync(state: AppState, name: str) -> AdapterInfo:
    info = state.store.current(name)
    if info is None:
        raise not_found(state.store, name)
    loaded = state.lifecycle.peek(name)
    if loaded is not None and loaded.version == info.version:
        meta = _describe(loaded.adapter)
    else:
        folder = state.store.local_copy(name, info.version)
        meta = describe_folder(folder) if folder is not None else {}
    return _info(state, name, info, **meta)


def _info(state: AppState, name: str, info: VersionInfo | None, **meta) -> AdapterInfo:
    return AdapterInfo(
        name=name,
        version=info.version if info else None,
        sha256=info.sha256 if info else None,
        created=info.created if info else None,
        stored_bytes=info.size if info else None,
        residency=state.lifecycle.residency(name),
        pinned=name in state.lifecycle.pins,
        **meta,
    )


def _listed(state: AppState, name: str) -> AdapterInfo | None:
    """One entry of the listing; whatever is wrong with this adapter stays in its entry."""
    try:
        return _describe_sync(state, name)
    except AdapterNotFound:  # deleted while we listed
        return None
    except Unavailable:  # the store itself, not this adapter: the whole listing answers 503
        raise
    except AdapterServeError as e:
        return _info(state, name, None, warnings=[f"cannot be described: {e.message}"])
    except Exception as e:  # e.g. unreadable store metadata for this one name
        log.warning("describing adapter %s failed: %s: %s", name, type(e).__name__, e)
        return _info(
            state, name, None, warnings=[f"cannot be described: its store metadata is unreadable ({type(e).__name__})"]
        )


@router.get("/adapters", response_model=AdapterList, summary="All adapters in the store", responses=errors(503))
async def list_adapters(state: AppState = Depends(get_state)):
    def work():
        return [entry for name in state.store.names() if (entry := _listed(state, name)) is not None]

    return AdapterList(adapters=await asyncio.to_thread(work))


@router.get("/adapters/{name}", response_model=AdapterInfo, summary="One adapter", responses=errors(404, 422, 503))
async def get_adapter(name: AdapterName, state: AppState = Depends(get_state)):
    validate_name(name)
    return await asyncio.to_thread(_describe_sync, state, name)
