"""POST /embed and the OpenAI-style POST /v1/embeddings: the backbone's own sentence embeddings.

These rows need no adapter and share batches with adapter rows.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..state import AppState
from .common import check_texts, until_disconnected
from .deps import get_state
from .schemas import EmbedRequest, OpenAIEmbeddingRequest

router = APIRouter(tags=["embeddings"])


async def _embed(state: AppState, request: Request, texts: list[str], truncate: bool):
    check_texts(state.settings, texts)
    deadline = state.router.deadline()

    async def work():
        rows = await state.router.tokenize(texts, None, truncate)
        return rows, await state.router.run("", None, rows, False, deadline)

    return await until_disconnected(request, work())


@router.post("/embed", response_model=list[list[float]], summary="Sentence embeddings of the backbone")
async def embed(body: EmbedRequest, request: Request, state: AppState = Depends(get_state)):
    _, vectors = await _embed(state, request, body.texts(), body.truncate)
    return [v.tolist() for v in vectors]


@router.post("/v1/embeddings", summary="OpenAI-compatible embeddings")
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request, state: AppState = Depends(get_state)):
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    rows, vectors = await _embed(state, request, texts, True)
    tokens = sum(len(r) for r in rows)
    return {
        "object": "list",
        "model": body.model or state.backbone.info.name,
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
