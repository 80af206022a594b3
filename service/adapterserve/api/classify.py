"""POST /classify?adapter=NAME"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..engine.postprocess import rank_labels
from ..state import AppState
from .common import json_response, run_adapter
from .deps import get_state
from .middleware import metric_route
from .responses import errors
from .schemas import AdapterQuery, ClassifyRequest, LabelScore

router = APIRouter(tags=["inference"], route_class=metric_route("classify"))
INFERENCE_ERRORS = errors(400, 404, 413, 422, 429, 499, 503, 504)


@router.post(
    "/classify",
    response_model=list[list[LabelScore]],
    summary="Classify texts (or text pairs) with a classification or multi-label adapter",
    responses=INFERENCE_ERRORS,
)
async def classify(
    body: ClassifyRequest,
    request: Request,
    response: Response,
    adapter: AdapterQuery,
    state: AppState = Depends(get_state),
):
    texts, pairs = body.texts_and_pairs()
    top_k, function = body.options()

    def post_for(loaded, rows):
        head = loaded.adapter.head
        return lambda start, logits: [rank_labels(row, head.labels, head.task, top_k, function) for row in logits]

    loaded, _, ranked = await run_adapter(
        request, response, state, adapter, "classify", texts, pairs, truncate=body.truncate, post_for=post_for
    )
    return json_response(ranked, {"X-Adapter-Version": loaded.version})
