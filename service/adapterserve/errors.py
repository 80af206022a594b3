"""Domain errors. Each carries the HTTP status it maps to, so the API has one handler for all."""

from __future__ import annotations


class AdapterServeError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidAdapter(AdapterServeError):
    """The adapter folder is malformed, corrupt, or does not fit the backbone."""

    status_code = 422
    code = "invalid_adapter"


class UnsupportedAdapter(InvalidAdapter):
    """A well-formed adapter of a kind we deliberately do not serve (DoRA, AdapterHub prompt tuning, ...)."""

    code = "unsupported_adapter"


class AdapterNotFound(AdapterServeError):
    status_code = 404
    code = "adapter_not_found"


class NotFound(AdapterServeError):
    status_code = 404
    code = "not_found"


class InvalidName(AdapterServeError):
    status_code = 422
    code = "invalid_name"


class BadRequest(AdapterServeError):
    status_code = 422
    code = "bad_request"


class PayloadTooLarge(AdapterServeError):
    status_code = 413
    code = "payload_too_large"


class Overloaded(AdapterServeError):
    status_code = 429
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0, **details):
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(AdapterServeError):
    status_code = 504
    code = "deadline_exceeded"


class Unavailable(AdapterServeError):
    status_code = 503
    code = "unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class Unauthorized(AdapterServeError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AdapterServeError):
    status_code = 403
    code = "forbidden"


class Conflict(AdapterServeError):
    status_code = 409
    code = "conflict"
