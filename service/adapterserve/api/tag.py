"""POST /tag?adapter=NAME"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..engine.postprocess import tag
from ..state import AppState
from .classify import INFERENCE_ERRORS
from .common import run_adapter
from .deps import get_state
from .middleware import metric_route
from .schemas import AdapterQuery, Entity, TagRequest, TokenTag

router = APIRouter(tags=["inference"], route_class=metric_route("tag"))


@router.post(
    "/tag",
    response_model=list[list[Entity]] | list[list[TokenTag]] | list[Entity] | list[TokenTag],
    summary="Tag tokens (NER and similar) with a tagging adapter",
    description="One list per input. A single string sent with Hugging Face `parameters` answers one flat list, "
    "as the transformers pipeline and `InferenceClient.token_classification` expect.",
    responses=INFERENCE_ERRORS,
)
async def tag_texts(
    body: TagRequest,
    request: Request,
    response: Response,
    adapter: AdapterQuery,
    state: AppState = Depends(get_state),
):
    texts = body.texts()
    strategy, ignore = body.options()
    loaded, rows, logits = await run_adapter(
        request, response, state, adapter, "tag", texts, truncate=body.truncate, tagging=True
    )
    labels, tokenizer = loaded.adapter.labels, state.backbone.tokenizer
    out = [tag(t, enc, lg, labels, tokenizer, strategy, ignore) for t, enc, lg in zip(texts, rows, logits)]
    return out[0] if isinstance(body.inputs, str) and body.parameters is not None else out
