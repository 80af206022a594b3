"""POST /embed (Hugging Face / TEI conventions): the backbone's own sentence embeddings.

These rows need no adapter and share batches with adapter rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastapi import APIRouter, Depends, Request

from ..errors import BadRequest
from ..state import AppState
from .common import check_texts, json_response, until_disconnected
from .deps import get_state
from .middleware import metric_route
from .responses import errors
from .schemas import EmbedRequest

router = APIRouter(tags=["embeddings"], route_class=metric_route("embed"))
EMBED_ERRORS = errors(400, 413, 422, 429, 499, 503, 504)


async def embed_texts(state: AppState, request: Request, texts: list[str], truncate: bool):
    """(rows, vectors) for texts, under the request's deadline; cancelled if the caller leaves."""
    check_texts(state.settings, texts)
    deadline = state.router.deadline()

    async def work():
        rows = await state.router.tokenize(texts, None, truncate)
        return rows, await state.router.run("", None, rows, False, deadline)

    return await until_disconnected(request, work())


@router.post(
    "/embed", response_model=list[list[float]], summary="Sentence embeddings of the backbone", responses=EMBED_ERRORS
)
async def embed(body: EmbedRequest, request: Request, state: AppState = Depends(get_state)):
    if body.normalize is False and state.backbone.info.normalize:
        raise BadRequest(
            "this backbone's sentence-transformers config normalizes its embeddings; "
            '"normalize": false cannot be honoured: leave it out'
        )
    _, vectors = await embed_texts(state, request, body.texts(), body.truncate)
    matrix = torch.stack([torch.as_tensor(v).float() for v in vectors])
    if body.normalize:
        matrix = F.normalize(matrix, dim=-1)
    # float64, so orjson writes each value as Python's json would write v.tolist() (the same digits)
    return json_response(matrix.double().numpy())
