"""create_app(settings): the lifespan builds everything heavy; routers are mounted by concern."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from . import __version__
from .api import adapters, admin, classify, embed, health, tag
from .api.middleware import RequestMiddleware
from .engine.threads import helper_pool
from .errors import AdapterServeError, Overloaded
from .replicas import start_store_watcher
from .settings import Settings, load_settings
from .state import AppState, build_state, freeze_heap, warm_up

log = logging.getLogger(__name__)


def _error_response(
    status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None
) -> JSONResponse:
    body = {"error": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(errors) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    return "; ".join(parts)


def create_app(
    settings: Settings | None = None, state_factory: Callable[[Settings], AppState] | None = None
) -> FastAPI:
    settings = settings or load_settings()
    factory = state_factory or build_state

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # asyncio.to_thread work (backbone load, adapter loads, store calls) runs torch with one thread,
        # leaving the CPU threads to the inference workers (engine/threads.py says why).
        asyncio.get_running_loop().set_default_executor(helper_pool(name="adapterserve-helper"))
        state = await asyncio.to_thread(factory, settings)
        app.state.adapterserve = state
        state.batcher.start()
        await warm_up(state)
        freeze_heap()
        start_store_watcher(state)  # other replicas' changes reach this one within store_poll_s
        state.ready = True
        log.info("ready", extra={"backbone": state.backbone.info.name, "store": state.store.url})
        try:
            yield
        finally:
            state.ready = False
            state.draining = True
            for task in state.background:
                task.cancel()
            await asyncio.gather(*state.background, return_exceptions=True)
            drained = await state.batcher.drain(settings.drain_timeout_s)
            state.router.close()
            log.info("stopped", extra={"drained": drained})

    app = FastAPI(
        title="adapterserve",
        version=__version__,
        lifespan=lifespan,
        description="Many task adapters on one frozen BERT-family backbone.",
    )
    app.state.adapterserve = None

    @app.exception_handler(AdapterServeError)
    async def domain_error(request: Request, exc: AdapterServeError):
        headers = None
        if isinstance(exc, Overloaded):
            headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
        return _error_response(exc.status_code, exc.code, exc.message, exc.details or None, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        return _error_response(
            422,
            "validation_error",
            _validation_message(errors),
            {"errors": [{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors[:20]]},
        )

    for module in (classify, tag, embed, adapters, admin, health):
        app.include_router(module.router)
    app.add_middleware(RequestMiddleware, get_state=lambda: app.state.adapterserve)
    return app
