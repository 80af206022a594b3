"""One pure-ASGI middleware for every HTTP request: request id, body-size limit, metrics and a log line.

Pure ASGI (not BaseHTTPMiddleware) so the routes still see the client's disconnect.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from fastapi.routing import APIRoute

from ..errors import PayloadTooLarge
from .responses import internal_error, log_unexpected

log = logging.getLogger("adapterserve.access")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def metric_route(label: str) -> type[APIRoute]:
    """A route class whose requests are counted under `label`: routers pass it as route_class, and the
    middleware reads the label from the route Starlette matched (unmatched paths count as "other")."""
    return type(f"{label.title()}Route", (APIRoute,), {"metric_label": label})


def route_label(scope) -> str:
    return getattr(scope.get("route"), "metric_label", "other")


class RequestMiddleware:
    def __init__(self, app, get_state):
        self.app = app
        self.get_state = get_state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = self.get_state()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")
        if not REQUEST_ID_RE.match(rid):
            rid = uuid.uuid4().hex
        path = scope.get("path", "")
        started = time.monotonic()
        status = {"code": 500}
        settings = state.settings if state else None
        limit = None
        if settings is not None:
            limit = settings.max_upload_bytes if path.startswith("/admin/") else settings.max_body_bytes
        length = headers.get("content-length", "")

        over = {"limit": False, "replaced": False}

        async def send_wrapper(message):
            if over["replaced"]:
                return  # the app's own answer to a body we cut off: the 413 below went instead
            if message["type"] == "http.response.start" and over["limit"] and message["status"] != 413:
                # The body went over the limit while the app read it (chunked, no Content-Length): whatever
                # the reader made of the cut-off stream (400, 422), the answer is 413.
                over["replaced"] = True
                await self._too_large(send_wrapper_raw, limit)
                return
            await send_wrapper_raw(message)

        async def send_wrapper_raw(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        if limit is not None and length.isdigit() and int(length) > limit:
            await self._too_large(send_wrapper_raw, limit, length)
            self._record(state, scope, 413, started, rid)
            return
        received = {"n": 0}

        async def receive_wrapper():
            message = await receive()
            if message["type"] == "http.request" and limit is not None:
                received["n"] += len(message.get("body", b""))
                if received["n"] > limit:
                    over["limit"] = True
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        scope.setdefault("state", {})["request_id"] = rid
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except PayloadTooLarge:
            if status.get("sent"):
                raise
            await self._too_large(send_wrapper_raw, limit)
        except Exception as exc:
            if status.get("sent"):
                raise  # half an answer is out: only closing the connection can tell the client
            # Answered here, not re-raised: Starlette's outer handler re-raises after its 500 and uvicorn then
            # closes the keep-alive connection, which a client already sending its next request sees as a reset.
            log_unexpected(exc, rid, path)
            await internal_error(rid)(scope, receive, send_wrapper_raw)
        finally:
            self._record(state, scope, status["code"], started, rid)

    @staticmethod
    async def _too_large(send, limit, length: str | None = None) -> None:
        size = f"request body of {length} bytes" if length else "request body"
        body = json.dumps(
            {
                "error": "payload_too_large",
                "message": f"{size} exceeds the limit of {limit} bytes",
                "details": {"limit": limit},
            }
        ).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    def _record(self, state, scope, code, started, rid):
        route = route_label(scope)
        seconds = time.monotonic() - started
        st = scope.get("state", {})
        adapter = st.get("adapter")
        if state is not None and route not in ("health", "metrics"):
            label = state.metrics.adapter_label(adapter, known=bool(st.get("adapter_known"))) if adapter else "none"
            state.metrics.requests.labels(label, route, str(code)).inc()
            state.metrics.request_duration.labels(label, route).observe(seconds)
        if route in ("health", "metrics") and code < 400:
            return
        fields = {
            "request_id": rid,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "route": route,
            "adapter": adapter,
            "status": code,
            "latency_ms": round(seconds * 1000, 2),
        }
        log.info("request", extra=fields)
