"""POST /tag?adapter=NAME"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from ..engine.postprocess import tag_entities, tag_tokens
from ..state import AppState
from ..store import validate_name
from .common import check_texts, until_disconnected
from .deps import get_state
from .schemas import Entity, TagRequest, TokenTag

router = APIRouter(tags=["inference"])


@router.post(
    "/tag",
    response_model=list[list[Entity]] | list[list[TokenTag]],
    summary="Tag tokens (NER and similar) with a tagging adapter",
)
async def tag(
    body: TagRequest,
    request: Request,
    response: Response,
    adapter: str = Query(..., description="adapter name", examples=["ner"]),
    state: AppState = Depends(get_state),
):
    request.state.adapter = validate_name(adapter)
    texts = body.texts()
    check_texts(state.settings, texts)
    deadline = state.router.deadline()

    async def work():
        loaded = await state.router.resolve(adapter, "tag")
        request.state.adapter_known = True
        rows = await state.router.tokenize(
            texts, None, body.truncate, offsets=True, reserved=loaded.adapter.reserved_positions
        )
        return loaded, rows, await state.router.run(adapter, loaded, rows, True, deadline)

    loaded, rows, logits = await until_disconnected(request, work())
    response.headers["X-Adapter-Version"] = loaded.version
    labels = loaded.adapter.labels
    if body.aggregation == "none":
        return [tag_tokens(enc, lg, labels, state.backbone.tokenizer) for enc, lg in zip(rows, logits)]
    return [tag_entities(t, enc, lg, labels) for t, enc, lg in zip(texts, rows, logits)]
