"""OpenAI conventions: POST /v1/embeddings (float or base64) and GET /v1/models (the backbone and adapters)."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
from fastapi import APIRouter, Depends, Request

from ..state import AppState
from .common import json_response
from .deps import get_state
from .embed import EMBED_ERRORS, embed_texts
from .middleware import metric_route
from .responses import errors
from .schemas import OpenAIEmbeddingRequest, OpenAIEmbeddingResponse, OpenAIModel, OpenAIModelList

router = APIRouter(prefix="/v1", tags=["openai"], route_class=metric_route("openai"))
OWNER = "adapterserve"
STARTED = int(time.time())  # the backbone's "created": when this server process started


def _encode(vector, encoding_format: str):
    if encoding_format == "base64":
        # What the OpenAI SDK decodes: np.frombuffer(base64.b64decode(s), dtype="float32"), little-endian.
        return base64.b64encode(np.asarray(vector.float().numpy(), dtype="<f4").tobytes()).decode("ascii")
    return vector.double().numpy()  # orjson writes float64 as json would write vector.tolist()


@router.post(
    "/embeddings",
    response_model=OpenAIEmbeddingResponse,
    summary="OpenAI-compatible embeddings of the backbone",
    responses=EMBED_ERRORS,
)
async def embeddings(body: OpenAIEmbeddingRequest, request: Request, state: AppState = Depends(get_state)):
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    rows, vectors = await embed_texts(state, request, texts, True)
    tokens = sum(len(r) for r in rows)
    return json_response(
        {
            "object": "list",
            "model": body.model or state.backbone.info.name,
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.get("/models", response_model=OpenAIModelList, summary="The backbone and the adapters", responses=errors(503))
async def models(state: AppState = Depends(get_state)):
    def work():
        out = [OpenAIModel(id=state.backbone.info.name, created=STARTED, owned_by=OWNER)]
        for name in state.store.names():
            info = state.store.current(name)
            if info is not None:  # deleted while we listed
                out.append(OpenAIModel(id=name, created=int(info.created), owned_by=OWNER))
        return out

    return OpenAIModelList(data=await asyncio.to_thread(work))
