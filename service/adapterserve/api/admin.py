"""The admin API: upload, version, roll back, load/unload and delete adapters without a restart.

An upload is validated against the backbone before the store is touched; the store writes the new
version completely and reads it back before the name points at it; only then does this replica switch
(the next request is served by the new version). Any failure leaves the previous version serving.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from ..errors import AdapterNotFound, BadRequest, PayloadTooLarge
from ..formats.registry import load_adapter
from ..formats.sidecar import SIDECAR
from ..state import AppState
from ..store import validate_name
from .archive import extract_archive, is_archive_name
from .audit import audit_trail
from .deps import get_state, require_admin
from .schemas import UploadResult

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(audit_trail), Depends(require_admin)])
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


async def _receive_files(request: Request, state: AppState, folder: Path, work: Path) -> None:
    """The adapter's files into folder: multipart parts named 'files', or one archive (a 'files' part named
    *.tar.gz/*.tgz/*.tar/*.zip, or a part named 'archive') extracted safely; 'labels' is applied last."""
    s = state.settings
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > s.max_upload_bytes:
        raise PayloadTooLarge(f"upload of {length} bytes exceeds the limit of {s.max_upload_bytes}")
    try:
        form = await request.form(max_files=s.max_upload_files, max_fields=16)
    except Exception as e:  # malformed multipart bodies, too many parts
        raise BadRequest(f"could not read the multipart form: {e}; send files as parts named 'files'") from None
    total, count, labels, archive = 0, 0, None, None
    try:
        for field, value in form.multi_items():
            if field == "labels" and isinstance(value, str):
                labels = value
                continue
            if field not in ("files", "archive") or not isinstance(value, UploadFile):
                raise BadRequest(
                    f"unexpected form field {field!r}; send the adapter's files as parts named "
                    "'files' (or one archive), and optionally 'labels'"
                )
            name = Path(value.filename or "").name
            if not FILE_NAME_RE.match(name or "") or name != value.filename:
                raise BadRequest(f"file name {value.filename!r} is not allowed: plain names only, no paths")
            is_archive = field == "archive" or is_archive_name(name)
            if archive is not None or (is_archive and count):
                raise BadRequest("send either the adapter's files or one archive, not both")
            target = work / "upload.archive" if is_archive else folder / name
            if target.exists():
                raise BadRequest(f"file {name!r} was sent twice")
            with target.open("wb") as out:
                while chunk := await value.read(1 << 20):
                    total += len(chunk)
                    if total > s.max_upload_bytes:
                        raise PayloadTooLarge(f"upload exceeds the limit of {s.max_upload_bytes} bytes")
                    out.write(chunk)
            if is_archive:
                archive = target
            else:
                count += 1
    finally:
        await form.close()
    if archive is not None:
        await asyncio.to_thread(
            extract_archive, archive, folder, max_bytes=s.max_upload_bytes, max_files=s.max_upload_files
        )
    elif count == 0:
        raise BadRequest(
            "no files received: send the adapter folder's files as multipart parts named 'files', "
            "or one .tar.gz/.zip archive"
        )
    if labels is not None:
        _write_labels(folder, labels)


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
)
async def upload(name: str, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    work = Path(tempfile.mkdtemp(prefix="adapterserve-upload-"))
    folder = work / "adapter"
    folder.mkdir()
    try:
        await _receive_files(request, state, folder, work)
        adapter = await asyncio.to_thread(load_adapter, folder, state.backbone.shape)  # validate before any write
        async with state.admin_lock(name):  # racing uploads to one name: the later publish wins, and serves
            info = await asyncio.to_thread(state.store.publish, name, folder)
            entry = await asyncio.to_thread(state.cache.prepare, name, info, adapter)
            state.cache.install(entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    request.state.audit.update(version=info.version)
    return UploadResult(name=name, version=info.version, sha256=info.sha256)


@router.delete("/adapters/{name}", summary="Delete an adapter and all its versions")
async def delete(name: str, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    async with state.admin_lock(name):
        await asyncio.to_thread(state.store.delete, name)
        state.cache.forget(name)
    return {"name": name, "deleted": True}


@router.get("/adapters/{name}/versions", summary="Versions of an adapter, newest first")
async def versions(name: str, state: AppState = Depends(get_state)):
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
    version: str | None = None


@router.post("/adapters/{name}/rollback", summary="Point the adapter at a given (default: the previous) version")
async def rollback(
    name: str, request: Request, body: RollbackRequest | None = None, state: AppState = Depends(get_state)
):
    validate_name(name)
    async with state.admin_lock(name):
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
        entry = await asyncio.to_thread(state.cache.prepare, name, info, adapter)
        state.cache.install(entry)
    request.state.audit.update(version=info.version, previous=current.version)
    return {"name": name, "version": info.version, "previous": current.version}


@router.post("/adapters/{name}/load", summary="Load an adapter onto the device and pin it")
async def load(name: str, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    loaded = await state.cache.get(name)
    state.cache.pin(name)
    request.state.audit.update(version=loaded.version)
    return {"name": name, "version": loaded.version, "residency": state.cache.residency(name), "pinned": True}


@router.post("/adapters/{name}/unload", summary="Unpin an adapter and drop it from memory")
async def unload(name: str, request: Request, state: AppState = Depends(get_state)):
    validate_name(name)
    was = state.cache.unload(name)
    request.state.audit.update(unloaded=was)
    return JSONResponse({"name": name, "unloaded": was, "residency": state.cache.residency(name)})
