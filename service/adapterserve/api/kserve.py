"""KServe v2 / Open Inference Protocol: health, server and model metadata, inference, and the repository
extension (mapped onto the admin API, behind the same token).

Each adapter is a model. Its inputs are BYTES tensors: "text" and, for text pairs, "text_pair" (JSON data, or
the binary tensor data extension that tritonclient uses by default). Classification adapters answer typed
outputs "labels" (BYTES) and "scores" (FP32), shape [batch, k], best first; tagging adapters answer "entities"
(BYTES, one JSON list per input). Outputs are always JSON data (the binary output extension is not
implemented; clients read JSON outputs whatever they asked for).
"""

from __future__ import annotations

import asyncio
import json
import struct

from fastapi import APIRouter, Depends, Request, Response

from .. import __version__, tasks
from ..engine.postprocess import rank_labels, tag
from ..errors import AdapterNotFound, BadRequest, Unavailable
from ..state import AppState
from . import admin
from .audit import audit_trail
from .common import run_adapter
from .deps import get_state, require_admin
from .middleware import metric_route
from .responses import errors
from .schemas import AdapterName, InferRequest

router = APIRouter(prefix="/v2", tags=["kserve v2"], route_class=metric_route("kserve"))
repository = APIRouter(
    prefix="/repository",
    tags=["kserve v2"],
    dependencies=[Depends(audit_trail), Depends(require_admin)],
    route_class=metric_route("admin"),
    responses=errors(401, 403, 404, 422, 503),
)
TEXT, PAIR = "text", "text_pair"
# The outputs by the route that serves the task (tasks.get(task).route): ranked labels, or entities.
ROUTE_OUTPUTS = {"classify": [("labels", "BYTES"), ("scores", "FP32")], "tag": [("entities", "BYTES")]}


@router.get("", summary="Server metadata")
async def server_metadata():
    return {"name": "adapterserve", "version": __version__, "extensions": ["model_repository", "binary_tensor_data"]}


@router.get("/health/live", summary="The process runs")
async def live():
    return {"live": True}


@router.get("/health/ready", summary="Ready for inference", responses=errors(503))
async def ready(request: Request):
    state = getattr(request.app.state, "adapterserve", None)
    if state is None or not state.ready or state.draining or not state.batcher.running:
        raise Unavailable("not ready: starting or draining")
    return {"ready": True}


async def _current(state: AppState, name: str, version: str | None):
    info = await asyncio.to_thread(state.store.current, name)
    if info is None:
        raise AdapterNotFound(f"model {name!r} not found", name=name)
    if version is not None and version != info.version:
        raise AdapterNotFound(
            f"model {name!r} serves version {info.version}, not {version}: roll back to serve another",
            name=name,
            version=version,
        )
    return info


async def _metadata(name: str, version: str | None, state: AppState):
    info = await _current(state, name, version)
    loaded = await state.lifecycle.get(name)
    task = loaded.adapter.task
    route = tasks.get(task).route
    inputs = [{"name": TEXT, "datatype": "BYTES", "shape": [-1]}]
    if route == "classify":
        inputs.append({"name": PAIR, "datatype": "BYTES", "shape": [-1], "optional": True})
    k = len(loaded.adapter.labels)
    shapes = {"labels": [-1, k], "scores": [-1, k], "entities": [-1]}
    return {
        "name": name,
        "versions": [info.version],
        "platform": f"adapterserve/{task}",
        "inputs": inputs,
        "outputs": [{"name": n, "datatype": dt, "shape": shapes[n]} for n, dt in ROUTE_OUTPUTS[route]],
    }


@router.get("/models/{name}", summary="Model metadata: inputs, outputs, versions", responses=errors(404, 422, 503))
async def model_metadata(name: AdapterName, state: AppState = Depends(get_state)):
    return await _metadata(name, None, state)


@router.get("/models/{name}/versions/{version}", summary="Model metadata", responses=errors(404, 422, 503))
async def model_version_metadata(name: AdapterName, version: str, state: AppState = Depends(get_state)):
    return await _metadata(name, version, state)


@router.get("/models/{name}/ready", summary="The model can be served", responses=errors(404, 422, 503))
async def model_ready(name: AdapterName, state: AppState = Depends(get_state)):
    await _current(state, name, None)
    return {"name": name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", summary="The version is served", responses=errors(404, 422, 503))
async def model_version_ready(name: AdapterName, version: str, state: AppState = Depends(get_state)):
    await _current(state, name, version)
    return {"name": name, "ready": True}


def _bytes_elements(raw: bytes) -> list[str]:
    """The binary tensor data extension's BYTES layout: each element is a 4-byte little-endian length, then bytes."""
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise BadRequest("binary BYTES tensor is truncated (a 4-byte length is cut off)")
        (n,) = struct.unpack_from("<I", raw, i)
        if i + 4 + n > len(raw):
            raise BadRequest("binary BYTES tensor is truncated (an element is shorter than its length)")
        out.append(raw[i + 4 : i + 4 + n].decode("utf-8", errors="replace"))
        i += 4 + n
    return out


def _flatten(data) -> list:
    return [x for item in data for x in _flatten(item)] if isinstance(data, list) else [data]


async def _parse(request: Request) -> tuple[InferRequest, dict[str, list[str]]]:
    body = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest("Inference-Header-Content-Length must be the JSON header's size in bytes")
        header, binary = body[: int(header_length)], body[int(header_length) :]
    else:
        header, binary = body, b""
    try:
        req = InferRequest.model_validate_json(header)
    except ValueError as e:
        raise BadRequest(f"invalid inference request: {e}".splitlines()[0] + "; see /docs") from None
    tensors: dict[str, list[str]] = {}
    offset = 0
    for t in req.inputs:
        size = (t.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input {t.name!r}: binary_data_size does not match the bytes sent")
            values = _bytes_elements(binary[offset : offset + size])
            offset += size
        elif t.data is not None:
            values = _flatten(t.data)
        else:
            raise BadRequest(f"input {t.name!r} has no data (JSON 'data' or binary_data_size)")
        count = 1
        for d in t.shape:
            count *= d
        if count != len(values):
            raise BadRequest(f"input {t.name!r}: shape {t.shape} holds {count} elements but {len(values)} were sent")
        tensors[t.name] = values
    if offset != len(binary):
        raise BadRequest("the request carries binary data that no input claims (binary_data_size)")
    return req, tensors


async def _infer(name: str, version: str | None, request: Request, response: Response, state: AppState):
    req, tensors = await _parse(request)
    await _current(state, name, version)
    loaded = await state.lifecycle.get(name)
    route = tasks.get(loaded.adapter.task).route
    texts, pairs = tensors[TEXT], tensors.get(PAIR)
    if pairs is not None and (route != "classify" or len(pairs) != len(texts)):
        raise BadRequest(f"{PAIR!r} needs a classification adapter and as many elements as {TEXT!r}")
    params = req.parameters or {}
    top_k = params.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise BadRequest("parameters.top_k must be a positive integer")
    function = params.get("function_to_apply")
    if function not in (None, "softmax", "sigmoid", "none"):
        raise BadRequest("parameters.function_to_apply must be softmax, sigmoid or none")
    loaded, rows, logits = await run_adapter(
        request, response, state, name, route, texts, pairs, tagging=route == "tag"
    )
    wanted = {o.name for o in req.outputs} if req.outputs else None
    outputs = []
    if route == "tag":
        tok = state.backbone.tokenizer
        ents = [tag(t, e, lg, loaded.adapter.labels, tok, "simple", ["O"]) for t, e, lg in zip(texts, rows, logits)]
        outputs.append(
            {"name": "entities", "datatype": "BYTES", "shape": [len(texts)], "data": [json.dumps(x) for x in ents]}
        )
    else:
        head = loaded.adapter.head
        ranked = [rank_labels(row, head.labels, head.task, top_k, function) for row in logits]
        k = len(ranked[0])
        shape = [len(texts), k]
        outputs.append(
            {"name": "labels", "datatype": "BYTES", "shape": shape, "data": [x["label"] for r in ranked for x in r]}
        )
        outputs.append(
            {"name": "scores", "datatype": "FP32", "shape": shape, "data": [x["score"] for r in ranked for x in r]}
        )
    if wanted is not None:
        unknown = wanted - {o["name"] for o in outputs}
        if unknown:
            raise BadRequest(f"unknown outputs {sorted(unknown)}; this model has {[o['name'] for o in outputs]}")
        outputs = [o for o in outputs if o["name"] in wanted]
    out = {"model_name": name, "model_version": loaded.version, "outputs": outputs}
    if req.id is not None:
        out["id"] = req.id
    return out


INFER_DOC = (
    "JSON body, or the binary tensor data extension: the JSON header, then each input's bytes, with the "
    "header's size in `Inference-Header-Content-Length`."
)
INFER_ERRORS = errors(400, 404, 413, 422, 429, 499, 503, 504)


def _inlined(schema: dict) -> dict:
    """A pydantic JSON schema with its $defs inlined, to stand alone as an OpenAPI request body."""
    defs = schema.pop("$defs", {})

    def walk(x):
        if isinstance(x, dict):
            if "$ref" in x:
                return walk(defs[x["$ref"].rsplit("/", 1)[-1]])
            return {k: walk(v) for k, v in x.items()}
        return [walk(v) for v in x] if isinstance(x, list) else x

    return walk(schema)


# The body is read by _parse (JSON, or a JSON header and binary tensors), not by FastAPI: this documents the JSON.
INFER_EXTRA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inlined(InferRequest.model_json_schema())}},
    }
}


@router.post(
    "/models/{name}/infer",
    summary="Inference",
    description=INFER_DOC,
    responses=INFER_ERRORS,
    openapi_extra=INFER_EXTRA,
)
async def infer(name: AdapterName, request: Request, response: Response, state: AppState = Depends(get_state)):
    return await _infer(name, None, request, response, state)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference",
    description=INFER_DOC,
    responses=INFER_ERRORS,
    openapi_extra=INFER_EXTRA,
)
async def infer_version(
    name: AdapterName, version: str, request: Request, response: Response, state: AppState = Depends(get_state)
):
    return await _infer(name, version, request, response, state)


@repository.post("/index", summary="Every adapter in the store and whether it is loaded")
async def repository_index(state: AppState = Depends(get_state)):
    def work():
        out = []
        for name in state.store.names():
            info = state.store.current(name)
            if info is None:
                continue
            resident = state.lifecycle.residency(name) != "store"
            entry = {"name": name, "version": info.version, "state": "READY" if resident else "UNAVAILABLE"}
            if not resident:
                entry["reason"] = "not loaded: loads on its first request, or with .../load"
            out.append(entry)
        return out

    return await asyncio.to_thread(work)


@repository.post("/models/{name}/load", summary="Load the adapter onto the device and pin it (admin API load)")
async def repository_load(name: AdapterName, request: Request, state: AppState = Depends(get_state)):
    await admin.load(name, request, state)
    return {}


@repository.post("/models/{name}/unload", summary="Unpin the adapter and drop it from memory (admin API unload)")
async def repository_unload(name: AdapterName, request: Request, state: AppState = Depends(get_state)):
    await admin.unload(name, request, state)
    return {}


router.include_router(repository)
