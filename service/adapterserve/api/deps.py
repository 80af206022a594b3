"""Dependencies: routes reach the app state (and admin auth) only through these."""

from __future__ import annotations

import hmac

from fastapi import Request

from ..errors import Forbidden, NotFound, Unauthorized
from ..state import AppState


async def get_state(request: Request) -> AppState:
    # async: FastAPI runs a plain-def dependency in its thread pool, a thread hop per request (py-spy under load:
    # 8% of the event loop's samples; docs/runtimes.md)
    return request.app.state.adapterserve


def require_admin(request: Request) -> None:
    settings = request.app.state.adapterserve.settings
    if settings.admin_port and settings.admin_port != settings.port:
        # The admin API lives only on its own port (`serve` listens on both): elsewhere it does not exist.
        server = request.scope.get("server") or (None, None)
        if server[1] != settings.admin_port:
            raise NotFound(f"no route {request.url.path}")
    token = settings.admin_token
    if not token:
        raise Forbidden("the admin API is disabled: set ADAPTERSERVE_ADMIN_TOKEN to enable it")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <ADAPTERSERVE_ADMIN_TOKEN>'")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("invalid admin token")
