"""POST /classify?adapter=NAME, or adapter=a,b,c (fan-out: one answer per name), or an ensemble's name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from ..adapters.ensemble import Ensemble, combine
from ..engine.fanout import parse_names, resolve_members, resolve_names
from ..engine.postprocess import rank_labels
from ..errors import BadRequest
from ..state import AppState
from ..store import NAME_PATTERN
from .common import check_texts, json_response, until_disconnected
from .deps import get_state
from .middleware import metric_route
from .responses import errors
from .schemas import ClassifyRequest, LabelScore

router = APIRouter(tags=["inference"], route_class=metric_route("classify"))
INFERENCE_ERRORS = errors(400, 404, 413, 422, 429, 499, 503, 504)
CLASSIFY_ERRORS = errors(400, 404, 409, 413, 422, 429, 499, 503, 504)  # 409: an ensemble's member is gone
FANOUT_LABEL = "*fanout*"  # never an adapter name
_NAME = NAME_PATTERN.strip("^$")
AdapterNames = Annotated[
    str,
    Query(
        description="adapter or ensemble name, or several joined by commas (fan-out)",
        pattern=rf"^{_NAME}(,{_NAME})*$",
        max_length=129 * 64,
        examples=["sentiment"],
    ),
]


def _answer(adapter, logits, top_k: int | None, function: str | None) -> list[list[dict]]:
    """What a single-name call answers, from the logits of the adapters it needs (one list per adapter)."""
    if not isinstance(adapter, Ensemble):
        return [rank_labels(row, adapter.head.labels, adapter.task, top_k, function) for row in logits[0]]
    out = []
    for per_member in zip(*logits):
        ranked = combine(adapter, list(per_member))[:top_k]
        out.append([{"label": adapter.labels[i], "score": s} for i, s in ranked])
    return out


@router.post(
    "/classify",
    response_model=list[list[LabelScore]] | dict[str, list[list[LabelScore]]],
    summary="Classify texts (or text pairs) with a classification or multi-label adapter, an ensemble, or "
    "several (adapter=a,b,c: an object keyed by name)",
    responses=CLASSIFY_ERRORS,
)
async def classify(
    body: ClassifyRequest,
    request: Request,
    response: Response,
    adapter: AdapterNames,
    state: AppState = Depends(get_state),
):
    names = parse_names(adapter, state.settings.max_fanout_adapters)
    # metrics: one label per adapter or ensemble; a fan-out is one label (not one per combination of names)
    request.state.adapter = names[0] if len(names) == 1 else FANOUT_LABEL
    texts, pairs = body.texts_and_pairs()
    top_k, function = body.options()
    check_texts(state.settings, texts, pairs)
    deadline = state.router.deadline()

    async def work():
        # the router's resolve refuses adapters of other routes' tasks (ensembles answer /classify)
        loaded = await resolve_names(lambda n: state.router.resolve(n, "classify"), names)
        request.state.adapter_known = True
        needs: dict[str, tuple] = {}  # name -> (adapter or ensemble, the adapters whose logits it needs)
        leaves = {}
        for name, entry in loaded.items():
            if isinstance(entry.adapter, Ensemble):
                if function is not None:
                    raise BadRequest(
                        f"{name!r} is an ensemble: it answers combined probabilities; drop raw_scores / "
                        "function_to_apply"
                    )
                ensemble, members = await resolve_members(state.lifecycle, name, entry.adapter)
                leaves.update(members)
                needs[name] = (ensemble, list(members))
            else:
                leaves[name] = entry
                needs[name] = (entry.adapter, [name])
        # Prompt/prefix adapters take positions of the backbone's limit: texts fit beside the widest.
        reserved = max(leaf.adapter.reserved_positions for leaf in leaves.values())
        rows = await state.router.tokenize(texts, pairs, body.truncate, reserved=reserved)
        order = sorted(leaves)  # rows grouped by adapter: one segment each
        all_rows = [r for _ in order for r in rows]
        row_adapters = [leaves[n] for n in order for _ in rows]
        out = await state.router.run(adapter, None, all_rows, False, deadline, row_adapters=row_adapters)
        per_leaf = {n: out[i * len(rows) : (i + 1) * len(rows)] for i, n in enumerate(order)}
        return loaded, needs, per_leaf

    loaded, needs, per_leaf = await until_disconnected(request, work())
    answers = {n: _answer(needs[n][0], [per_leaf[m] for m in needs[n][1]], top_k, function) for n in names}
    if len(names) == 1:
        return json_response(answers[names[0]], {"X-Adapter-Version": loaded[names[0]].version})
    return json_response(answers, {"X-Adapter-Version": ",".join(f"{n}={loaded[n].version}" for n in names)})
