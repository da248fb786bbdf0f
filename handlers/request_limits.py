"""Limits on what a request may carry, checked before a route sees it: a body size per
route, and no NUL character in the URL.

A declared `Content-Length` over the route's limit is answered 413 at once, before a
byte of the body is read (an unauthenticated 200 MB push raised the process to 550 MB
before its 401). A chunked body, whose length is not declared, is counted as the route
reads it, and reading stops with 413 at the first chunk past the limit.

(Starlette's own RequestBodyLimitMiddleware lets the route run until it reads the body
or starts its answer, and answers a plain-text "Content Too Large"; this one refuses a
declared length before the route runs, says the limit in the API's error shape, and
closes the connection rather than receive the rest.)

A NUL character (`%00`) in the path or the query string is refused with 400: no route
takes one, and PostgreSQL text cannot hold one (a capability token or an OAuth state
with `%00` reached a query and answered 500).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
MIB = 1024 * KIB

# The largest body each route takes, by path prefix (the longest matching prefix wins).
# Each is a margin above the largest valid request: fields are capped by the request
# models, and JSON escaping can make a character six bytes.
ROUTE_LIMITS: dict[str, int] = {
    # A Pub/Sub push of a Gmail notification is under 1 KiB.
    "/api/integrations/gmail/push": 64 * KIB,
    # Slack's payloads: a modal submission with its whole view is the largest.
    "/slack/": 1 * MIB,
    # A job may list 100,000 contact ids and 10,000 addresses.
    "/api/agent/jobs": 8 * MIB,
    # Templates: a body and an HTML body of up to 100,000 characters each.
    "/api/marketing/email-templates": 2 * MIB,
    # One email: up to 200,000 characters of text and 500,000 of HTML.
    "/api/email/send": 4 * MIB,
    # The one-click unsubscribe form is a few bytes.
    "/unsubscribe/": 16 * KIB,
    # The tracking pixel and redirect take no body at all.
    "/t/": 1 * KIB,
}
DEFAULT_LIMIT = 1 * MIB


def _size(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % KIB == 0:
        return f"{limit // KIB} KiB"
    return f"{limit} bytes"


def too_large_message(limit: int) -> str:
    """Say what was refused and what the limit is."""
    return f"request body too large: this endpoint takes at most {_size(limit)}"


@dataclass(frozen=True)
class BodyLimits:
    """Limits by path prefix, and the limit of every other path."""

    by_prefix: dict[str, int]
    default: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        # Longest prefixes first, so that the most specific route's limit wins.
        ordered = dict(sorted(self.by_prefix.items(), key=lambda item: -len(item[0])))
        object.__setattr__(self, "by_prefix", ordered)

    def limit_for(self, path: str) -> int:
        """Return the limit of a request path."""
        for prefix, limit in self.by_prefix.items():
            if path.startswith(prefix):
                return limit
        return self.default


class RequestLimitMiddleware:
    """Answer 413 to a body over its route's limit, 400 to a NUL in the URL (pure ASGI:
    nothing is buffered)."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits | None = None) -> None:
        self.app = app
        self.limits = limits or BodyLimits(ROUTE_LIMITS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul(scope):
            await _refuse(send, 400, "bad_request", "the URL must not contain NUL characters")
            return
        limit = self.limits.limit_for(scope["path"])
        declared = _content_length(scope["headers"])
        if declared == "":
            await self.app(scope, _capped(receive, limit), send)
        elif not declared.isdigit():
            await _refuse(send, 400, "bad_request", "Content-Length is not a number")
        elif int(declared) > limit:
            await _refuse(send, 413, "payload_too_large", too_large_message(limit))
        else:
            # The server delivers no more than the declared length: nothing to count.
            await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"content-length":
            return value.decode("latin-1").strip()
    return ""


def _capped(receive: Receive, limit: int) -> Receive:
    """Count the body as it is read; past the limit, stop with a 413 the app answers."""
    received = 0

    async def capped_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # FastAPI passes an HTTPException from reading the body through unchanged,
                # and the app's handler answers it in the API's error format.
                raise HTTPException(413, detail=too_large_message(limit))
        return message

    return capped_receive


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The unread body is not worth receiving to keep the connection alive.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
