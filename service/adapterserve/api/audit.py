"""The admin audit trail: exactly one log line per admin request, whatever its outcome.

A router-level dependency (listed before auth, so refused tokens are recorded too) that routes enrich
through `request.state.audit` (version, previous version, ...). Logger "adapterserve.audit".
"""

from __future__ import annotations

import logging

from fastapi import Request

from ..errors import AdapterServeError

log = logging.getLogger("adapterserve.audit")


async def audit_trail(request: Request):
    fields: dict = {}
    request.state.audit = fields
    outcome = "ok"
    try:
        yield fields
    except AdapterServeError as e:
        outcome = e.code
        fields["status"] = e.status_code
        raise
    except Exception:
        outcome = "internal_error"
        fields["status"] = 500
        raise
    finally:
        route = request.scope.get("route")
        log.info(
            "admin action",
            extra={
                "audit": True,
                "action": getattr(route, "name", None) or request.url.path,
                "method": request.method,
                "adapter": request.path_params.get("name"),
                "outcome": outcome,
                "client": request.client.host if request.client else None,
                "request_id": request.scope.get("state", {}).get("request_id"),
                **fields,
            },
        )
