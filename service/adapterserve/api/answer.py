"""POST /answer?adapter=NAME: extractive question answering, the Hugging Face pipeline's answers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..engine.qa_spans import PIPELINE_MAX_SEQ_LEN, answers, default_stride, make_windows
from ..errors import PayloadTooLarge
from ..state import AppState
from ..store import validate_name
from .common import check_texts, until_disconnected
from .deps import get_state
from .middleware import metric_route
from .responses import errors
from .schemas import AdapterQuery, Answer, AnswerRequest

router = APIRouter(tags=["inference"], route_class=metric_route("answer"))


def _windows(tokenizer, pairs: list[tuple[str, str]], max_seq_len: int, doc_stride: int):
    return [make_windows(tokenizer, q, c, max_seq_len, doc_stride, i) for i, (q, c) in enumerate(pairs)]


@router.post(
    "/answer",
    response_model=list[Answer] | list[list[Answer]],
    summary="Answer questions from a context with a question-answering adapter (extractive spans)",
    responses=errors(400, 404, 413, 422, 429, 499, 503, 504),
)
async def answer(
    body: AnswerRequest,
    request: Request,
    response: Response,
    adapter: AdapterQuery,
    state: AppState = Depends(get_state),
):
    request.state.adapter = validate_name(adapter)
    pairs = [(x.question, x.context) for x in body.items()]
    check_texts(state.settings, [q for q, _ in pairs], [c for _, c in pairs])
    deadline = state.router.deadline()

    async def work():
        loaded = await state.router.resolve(adapter, "answer")
        request.state.adapter_known = True
        # windows as the pipeline cuts them, less the positions a prompt/prefix adapter takes
        room = state.backbone.info.max_length - loaded.adapter.reserved_positions
        max_seq_len = min(room, PIPELINE_MAX_SEQ_LEN)
        stride = default_stride(max_seq_len) if body.doc_stride is None else body.doc_stride
        windows = await state.router.tokenize_with(_windows, pairs, max_seq_len, stride)
        rows = [row for w in windows for row in w.rows]  # every window of every input: rows of one batch
        limit = state.settings.max_qa_windows
        if len(rows) > limit:  # a small doc_stride on a long context makes a window per few tokens
            raise PayloadTooLarge(
                f"the contexts make {len(rows)} windows of {max_seq_len} tokens; the limit is {limit}: raise "
                "doc_stride (the overlap), shorten the contexts, or split the request",
                windows=len(rows),
                limit=limit,
            )
        return loaded, windows, await state.router.run(adapter, loaded, rows, True, deadline)

    loaded, windows, logits = await until_disconnected(request, work())
    response.headers["X-Adapter-Version"] = loaded.version
    out, i = [], 0
    for w in windows:
        found = answers(w, logits[i : i + len(w.rows)], body.top_k, body.max_answer_len)
        i += len(w.rows)
        out.append(found if body.top_k > 1 else found[0])
    return out
