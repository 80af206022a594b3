"""POST /tag?adapter=NAME"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..engine.postprocess import tag
from ..state import AppState
from .classify import INFERENCE_ERRORS
from .common import json_response, run_adapter
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
    tokenizer = state.backbone.tokenizer

    def post_for(loaded, rows):
        labels = loaded.adapter.labels

        def post(start: int, logits: list) -> list:  # one chunk of rows, `start` its first row
            span = range(start, start + len(logits))
            return [tag(texts[i], rows[i], lg, labels, tokenizer, strategy, ignore) for i, lg in zip(span, logits)]

        return post

    loaded, _, out = await run_adapter(
        request, response, state, adapter, "tag", texts, truncate=body.truncate, tagging=True, post_for=post_for
    )
    out = out[0] if isinstance(body.inputs, str) and body.parameters is not None else out
    return json_response(out, {"X-Adapter-Version": loaded.version})
