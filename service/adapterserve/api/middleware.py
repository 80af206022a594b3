"""One pure-ASGI middleware for every HTTP request: request id, body-size limit, metrics and a log line.

Pure ASGI (not BaseHTTPMiddleware) so the routes still see the client's disconnect.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from ..errors import PayloadTooLarge

log = logging.getLogger("adapterserve.access")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ROUTES = {"/classify": "classify", "/tag": "tag", "/embed": "embed", "/v1/embeddings": "embed"}


def route_label(path: str) -> str:
    if path in ROUTES:
        return ROUTES[path]
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/adapters"):
        return "adapters"
    if path.startswith("/health"):
        return "health"
    return "metrics" if path == "/metrics" else "other"


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
        route = route_label(path)
        started = time.monotonic()
        status = {"code": 500}
        settings = state.settings if state else None
        limit = None
        if settings is not None:
            limit = settings.max_upload_bytes if path.startswith("/admin/") else settings.max_body_bytes
        length = headers.get("content-length", "")

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        if limit is not None and length.isdigit() and int(length) > limit:
            body = json.dumps(
                {
                    "error": "payload_too_large",
                    "message": f"request body of {length} bytes exceeds the limit of {limit}",
                }
            ).encode()
            await send_wrapper(
                {"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            self._record(state, scope, route, 413, started, rid)
        else:
            received = {"n": 0}

            async def receive_wrapper():
                message = await receive()
                if message["type"] == "http.request" and limit is not None:
                    received["n"] += len(message.get("body", b""))
                    if received["n"] > limit:
                        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                return message

            scope.setdefault("state", {})["request_id"] = rid
            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            finally:
                self._record(state, scope, route, status["code"], started, rid)

    def _record(self, state, scope, route, code, started, rid):
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
