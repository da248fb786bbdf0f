"""Errors the domain raises; handlers turn them into messages a person understands."""

from __future__ import annotations


class SalesbotError(Exception):
    """Base of every error Salesbot raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(SalesbotError):
    """A thing asked for does not exist in the caller's organization."""

    code = "not_found"


class NotPermitted(SalesbotError):
    """The caller may not do this."""

    code = "forbidden"


class InvalidInput(SalesbotError):
    """Input that cannot be accepted, with the reason."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidTransition(SalesbotError):
    """A state change the state machine refuses."""

    code = "invalid_transition"


class Conflict(SalesbotError):
    """The change collides with an existing record."""

    code = "conflict"


class ExternalServiceError(SalesbotError):
    """A third-party service (Slack, Gmail, Anthropic) failed."""

    code = "external_service_error"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
