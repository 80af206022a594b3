"""create_app(settings): the lifespan builds everything heavy; routers are mounted by concern."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import __version__
from .api import adapters, admin, answer, classify, embed, health, kserve, openai_compat, tag
from .api.docs import mount_docs
from .api.middleware import RequestMiddleware
from .api.responses import install_error_handlers
from .engine.threads import helper_pool
from .heap import freeze_heap, start_heap_freezer
from .memory import start_memory_trimmer
from .replicas import start_store_watcher
from .settings import Settings, load_settings
from .state import AppState, build_state, warm_up

log = logging.getLogger(__name__)


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
        start_memory_trimmer(state)  # resident memory stays flat under adapter churn
        start_heap_freezer(state)  # full collections stay short with many adapters loaded
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
        docs_url=None,  # served from the package by api/docs.py, not from a CDN
        redoc_url=None,
    )
    app.state.adapterserve = None

    install_error_handlers(app)
    mount_docs(app)
    for module in (classify, tag, answer, embed, openai_compat, kserve, adapters, admin, health):
        app.include_router(module.router)
    app.add_middleware(RequestMiddleware, get_state=lambda: app.state.adapterserve)
    return app
