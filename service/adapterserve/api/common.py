"""Helpers shared by the inference routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from fastapi import Request, Response

from ..engine.tokenize import Encoded
from ..errors import AdapterServeError, PayloadTooLarge
from ..settings import Settings
from ..snapshot import Snapshot
from ..state import AppState
from ..store import validate_name

log = logging.getLogger("adapterserve.requests")


def json_response(content, headers: dict | None = None) -> Response:
    """An answer serialised by orjson (numpy arrays included) without FastAPI's generic encoder, which walks every
    value in Python; the route's response_model still documents the shape."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json", headers=headers
    )


class ClientDisconnected(AdapterServeError):
    status_code = 499
    code = "client_closed_request"


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, coro):
    """Run coro, but if the caller hangs up first, cancel it (its queued work is dropped before compute)."""
    task = asyncio.ensure_future(coro)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    raise ClientDisconnected("the client closed the connection before the answer was ready")


def check_texts(settings: Settings, texts: list[str], pairs: list[str] | None = None) -> None:
    """Limits (413) and, only when LOG_REQUEST_TEXT is on and the level is DEBUG, the texts themselves.
    A text pair is one input (one row): it counts once toward max_inputs_per_request."""
    if settings.log_request_text and log.isEnabledFor(logging.DEBUG):
        log.debug("request texts", extra={"texts": texts[:20]})
    if len(texts) > settings.max_inputs_per_request:
        raise PayloadTooLarge(
            f"{len(texts)} inputs in one request; the limit is {settings.max_inputs_per_request}: split the request",
            inputs=len(texts),
            limit=settings.max_inputs_per_request,
        )
    for i, t in enumerate(texts):
        if pairs is not None and len(pairs[i]) > len(t):
            t = pairs[i]
        if len(t) > settings.max_input_chars:
            raise PayloadTooLarge(
                f"input {i} has {len(t)} characters; the limit is {settings.max_input_chars}",
                input=i,
                chars=len(t),
                limit=settings.max_input_chars,
            )


async def run_adapter(
    request: Request,
    response: Response,
    state: AppState,
    adapter: str,
    route: str,
    texts: list[str],
    pairs: list[str] | None = None,
    *,
    truncate: bool = True,
    tagging: bool = False,
    post_for: Callable[[Snapshot, list[Encoded]], Callable[[int, list], list]] | None = None,
) -> tuple[Snapshot, list[Encoded], list]:
    """The skeleton every adapter route shares: check limits, resolve the adapter for this route's tasks,
    tokenize, run in the batcher under the request's deadline, cancel if the caller leaves, and name the
    version that answered (X-Adapter-Version). Returns (adapter, rows, logits per row), or with `post_for`, what
    `post_for(adapter, rows)(start, logits)` made of each chunk, run on the inference thread, not the event loop."""
    request.state.adapter = validate_name(adapter)
    check_texts(state.settings, texts, pairs)
    deadline = state.router.deadline()

    async def work():
        loaded = await state.router.resolve(adapter, route)
        request.state.adapter_known = True
        # Prompt/prefix adapters take positions of the backbone's limit (reserved_positions).
        rows = await state.router.tokenize(
            texts, pairs, truncate, offsets=tagging, reserved=loaded.adapter.reserved_positions
        )
        post = None if post_for is None else post_for(loaded, rows)
        return loaded, rows, await state.router.run(adapter, loaded, rows, tagging, deadline, post=post)

    loaded, rows, logits = await until_disconnected(request, work())
    response.headers["X-Adapter-Version"] = loaded.version
    return loaded, rows, logits
