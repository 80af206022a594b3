"""POST /classify?adapter=NAME"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from ..engine.postprocess import rank_labels
from ..state import AppState
from ..store import validate_name
from .common import check_texts, until_disconnected
from .deps import get_state
from .schemas import ClassifyRequest, LabelScore

router = APIRouter(tags=["inference"])


@router.post(
    "/classify",
    response_model=list[list[LabelScore]],
    summary="Classify texts (or text pairs) with a classification or multi-label adapter",
)
async def classify(
    body: ClassifyRequest,
    request: Request,
    response: Response,
    adapter: str = Query(..., description="adapter name", examples=["sentiment"]),
    state: AppState = Depends(get_state),
):
    request.state.adapter = validate_name(adapter)
    texts, pairs = body.texts_and_pairs()
    check_texts(state.settings, texts, pairs)
    deadline = state.router.deadline()

    async def work():
        loaded = await state.router.resolve(adapter, "classify")
        request.state.adapter_known = True
        rows = await state.router.tokenize(texts, pairs, body.truncate, reserved=loaded.adapter.reserved_positions)
        return loaded, await state.router.run(adapter, loaded, rows, False, deadline)

    loaded, logits = await until_disconnected(request, work())
    response.headers["X-Adapter-Version"] = loaded.version
    head = loaded.adapter.head
    return [rank_labels(row, head.labels, head.task, body.top_k, body.raw_scores) for row in logits]
