"""The admin API: upload, version, roll back, load/unload and delete adapters without a restart.

An upload is validated against the backbone before the store is touched; the store writes the new
version completely and reads it back before the name points at it; only then does this replica switch
(the next request is served by the new version). Any failure leaves the previous version serving.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..adapters.ensemble import Ensemble
from ..engine.fanout import check_members, resolve_names
from ..errors import AdapterNotFound, BadRequest
from ..formats import ensemble as ensemble_format
from ..formats.registry import load_adapter
from ..formats.sidecar import SIDECAR
from ..lifecycle import Forget, Install, Pin, Unload
from ..snapshot import Snapshot
from ..state import AppState
from ..store import VERSION_PATTERN, validate_name
from .audit import audit_trail
from .deps import get_state, require_admin
from .middleware import metric_route
from .responses import errors
from .schemas import STRICT, AdapterName, UploadResult
from .upload import receive_files

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(audit_trail), Depends(require_admin)],
    route_class=metric_route("admin"),
    responses=errors(400, 401, 403, 404, 409, 422, 503),
)
# The form is read by upload.receive_files (streamed, with limits), not by FastAPI: this documents what it accepts.
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "minItems": 1,
                        "description": "the adapter folder's files (plain names), or one .tar.gz/.tgz/.tar/.zip",
                    },
                    "archive": {"type": "string", "format": "binary", "description": "one archive of the folder"},
                    "labels": {"type": "string", "description": "label names: a JSON list or comma-separated"},
                },
                "additionalProperties": False,
                "description": "either 'files' or 'archive', not both",
            }
        }
    },
}


def _write_labels(folder: Path, value: str) -> None:
    try:
        labels = json.loads(value) if value.strip().startswith("[") else [x.strip() for x in value.split(",")]
    except json.JSONDecodeError:
        raise BadRequest("'labels' must be a JSON list or a comma-separated list of label names") from None
    path = folder / SIDECAR
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["labels"] = labels
    path.write_text(json.dumps(data))


@router.put(
    "/adapters/{name}",
    status_code=201,
    response_model=UploadResult,
    summary="Upload a new version of an adapter (multipart 'files' parts, or one .tar.gz/.zip archive)",
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload(name: AdapterName, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    work = Path(tempfile.mkdtemp(prefix="adapterserve-upload-"))
    folder = work / "adapter"
    folder.mkdir()
    try:
        labels = await receive_files(
            request, folder, work, state.settings.max_upload_bytes, state.settings.max_upload_files
        )
        if labels is not None:
            _write_labels(folder, labels)
        adapter = await asyncio.to_thread(load_adapter, folder, state.backbone.shape)  # validate before any write
        if isinstance(adapter, Ensemble):
            adapter = await _check_ensemble(state, name, folder, adapter)
        async with state.lifecycle.changing(name):  # racing uploads to one name: the later publish serves
            info = await asyncio.to_thread(state.store.publish, name, folder)
            state.lifecycle.apply(Install(Snapshot(name, info, adapter)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    request.state.audit.update(version=info.version)
    return UploadResult(name=name, version=info.version, sha256=info.sha256)


async def _check_ensemble(state: AppState, name: str, folder: Path, ensemble: Ensemble) -> Ensemble:
    """Members must exist now and share task and labels; those are recorded in the published ensemble.json."""
    if name in ensemble.members:
        raise BadRequest(f"ensemble {name!r} names itself as a member")
    try:
        members = await resolve_names(state.lifecycle.get, ensemble.members)
    except AdapterNotFound as e:
        missing = e.details.get("names", [])
        raise BadRequest(f"ensemble {name!r}: member(s) {missing} are not published", missing=missing) from None
    ensemble.task, ensemble.labels = check_members(name, ensemble, members)
    await asyncio.to_thread(ensemble_format.write, folder, ensemble)
    return ensemble


@router.delete("/adapters/{name}", summary="Delete an adapter and all its versions")
async def delete(name: AdapterName, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    async with state.lifecycle.changing(name):
        await asyncio.to_thread(state.store.delete, name)
        state.lifecycle.apply(Forget(name))
    return {"name": name, "deleted": True}


@router.get("/adapters/{name}/versions", summary="Versions of an adapter, newest first")
async def versions(name: AdapterName, state: AppState = Depends(get_state)):
    validate_name(name)
    current = await asyncio.to_thread(state.store.current, name)
    if current is None:
        raise AdapterNotFound(f"adapter {name!r} not found", name=name)
    items = await asyncio.to_thread(state.store.versions, name)
    return {
        "name": name,
        "current": current.version,
        "versions": [{**v.to_dict(), "current": v.version == current.version} for v in items],
    }


class RollbackRequest(BaseModel):
    model_config = STRICT
    version: str | None = Field(
        None, pattern=VERSION_PATTERN, max_length=128, description="default: the previous version"
    )


@router.post("/adapters/{name}/rollback", summary="Point the adapter at a given (default: the previous) version")
async def rollback(
    name: AdapterName, request: Request, body: RollbackRequest | None = None, state: AppState = Depends(get_state)
):
    validate_name(name)
    async with state.lifecycle.changing(name):
        current = await asyncio.to_thread(state.store.current, name)
        if current is None:
            raise AdapterNotFound(f"adapter {name!r} not found", name=name)
        target = body.version if body and body.version else None
        if target is None:
            older = [v for v in await asyncio.to_thread(state.store.versions, name) if v.version != current.version]
            if not older:
                raise BadRequest(f"adapter {name!r} has no previous version to roll back to")
            target = older[0].version
        folder = await asyncio.to_thread(state.store.fetch, name, target)
        adapter = await asyncio.to_thread(load_adapter, folder, state.backbone.shape)
        info = await asyncio.to_thread(state.store.set_current, name, target)
        state.lifecycle.apply(Install(Snapshot(name, info, adapter)))
    request.state.audit.update(version=info.version, previous=current.version)
    return {"name": name, "version": info.version, "previous": current.version}


@router.post("/adapters/{name}/load", summary="Load an adapter onto the device and pin it")
async def load(name: AdapterName, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    snapshot = await state.lifecycle.get(name)
    state.lifecycle.apply(Pin(name))
    await state.place(snapshot)
    request.state.audit.update(version=snapshot.version)
    return {"name": name, "version": snapshot.version, "residency": state.lifecycle.residency(name), "pinned": True}


@router.post("/adapters/{name}/unload", summary="Unpin an adapter and drop it from memory")
async def unload(name: AdapterName, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    was = state.lifecycle.apply(Unload(name))
    request.state.audit.update(unloaded=was)
    return JSONResponse({"name": name, "unloaded": was, "residency": state.lifecycle.residency(name)})
