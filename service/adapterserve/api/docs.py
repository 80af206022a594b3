"""/docs (Swagger UI) and /redoc, served with their JavaScript and CSS from the package (static/, vendored from
npm: see static/README.md), so the pages work on an air-gapped cluster. FastAPI's defaults load them from a CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

from .middleware import metric_route

STATIC = Path(__file__).parent / "static"
PREFIX = "/static/docs"
router = APIRouter(include_in_schema=False, route_class=metric_route("docs"))


@router.get("/docs")
async def swagger_ui():
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="adapterserve - Swagger UI",
        swagger_js_url=f"{PREFIX}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{PREFIX}/swagger-ui/favicon-32x32.png",
    )


@router.get("/redoc")
async def redoc():
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="adapterserve - ReDoc",
        redoc_js_url=f"{PREFIX}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{PREFIX}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )


def mount_docs(app: FastAPI) -> None:
    app.mount(PREFIX, StaticFiles(directory=STATIC), name="docs-static")
    app.include_router(router)
