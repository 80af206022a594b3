"""The one error shape, its OpenAPI declarations, and the handlers that make every error use it.

Every non-2xx answer is `{"error": code, "message": what to fix, "details": {...}}`: our own errors, request
validation, Starlette's 404/405, over-limit bodies (also chunked ones, see middleware.py) and unexpected
exceptions (a 500 naming the request id, never a traceback). A route declares what it can answer with
`responses=errors(404, 422, ...)`, so the OpenAPI document lists the same statuses the code raises.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import AdapterServeError, Overloaded, Unavailable

log = logging.getLogger("adapterserve.errors")

DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid admin token",
    403: "The admin API is disabled",
    404: "Not found (unknown adapter, version or route)",
    405: "Method not allowed (the Allow header lists the methods this path answers)",
    409: "Conflict",
    413: "Request too large: body, number of inputs or input length over the limit",
    415: "Unsupported media type",
    422: "Invalid request: the message names the field and what to fix",
    429: "Overloaded: retry after Retry-After seconds",
    499: "The client closed the connection before the answer was ready",
    500: "Unexpected error: quote the request id",
    503: "Not ready, draining, or the store is unreachable: retry after Retry-After seconds",
    504: "No answer within the request timeout",
}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}
}
# Every route can answer these: body limits, the content type, the admission queue, readiness, deadlines.
COMMON = (413, 500)


class ErrorBody(BaseModel):
    error: str = Field(..., description="a stable machine-readable code", examples=["adapter_not_found"])
    message: str = Field(..., description="what went wrong and what to do about it")
    details: dict | None = Field(None, description="structured context: the field, the limit, the request id...")


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` for a route: each status (plus COMMON) with the error schema."""
    out: dict[int | str, dict] = {}
    for status in sorted({*statuses, *COMMON}):
        entry: dict = {"model": ErrorBody, "description": DESCRIPTIONS[status]}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        if status == 405:
            entry["headers"] = {"Allow": {"description": "the methods this path answers", "schema": {"type": "string"}}}
        out[status] = entry
    return out


def error_response(
    status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None
) -> JSONResponse:
    body = {"error": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(errs) -> str:
    parts = []
    for e in errs[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    return "; ".join(parts)


def _retry_after(seconds: float) -> dict:
    return {"Retry-After": str(max(1, round(seconds)))}


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route answers on this path: Starlette's own 405 names only the first route's."""
    allowed = []
    for method in METHODS:
        scope = {"type": "http", "path": request.url.path, "root_path": "", "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AdapterServeError)
    async def domain_error(request: Request, exc: AdapterServeError):
        headers = None
        if isinstance(exc, Overloaded):
            headers = _retry_after(exc.retry_after_s)
        elif isinstance(exc, Unavailable):
            headers = _retry_after(1)
        return error_response(exc.status_code, exc.code, exc.message, exc.details or None, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        return error_response(
            422,
            "validation_error",
            _validation_message(errs),
            {"errors": [{k: e.get(k) for k in ("loc", "msg", "type")} for e in errs[:20]]},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs"
        headers = exc.headers
        if exc.status_code == 405:
            allow = _allowed_methods(request)
            headers = {**(headers or {}), "Allow": allow}
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {allow}"
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # A backstop: RequestMiddleware answers the routes' unexpected errors itself. This one runs in
        # Starlette's outermost middleware, so the request-id header is added here, not by ours.
        rid = request.scope.get("state", {}).get("request_id", "")
        log_unexpected(exc, rid, request.url.path)
        return internal_error(rid, {"X-Request-ID": rid} if rid else None)


def log_unexpected(exc: BaseException, rid: str, path: str) -> None:
    log.error("unexpected error", exc_info=exc, extra={"request_id": rid, "path": path})


def internal_error(rid: str, headers: dict | None = None) -> JSONResponse:
    """The 500 of an unexpected exception: the request id to quote, never a traceback."""
    message = f"unexpected error; report it with request id {rid}"
    return error_response(500, "internal_error", message, {"request_id": rid}, headers)
