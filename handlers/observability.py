"""Every HTTP request gets a request id and is counted: the outermost ASGI middleware.

The id is the caller's `X-Request-ID` when it looks like an id (a proxy's or a load
balancer's, so one id follows a request through them), else a new one. It is returned in
the answer's `X-Request-ID` header and held in `handlers.request_ids.REQUEST_ID`, a context
variable: the log filter of `bot.logs` adds it to every line logged while the request
runs, in the event loop and in the threads `run_in_threadpool` lends it.

Each answer is counted in `salesbot_http_requests_total` and timed in
`salesbot_http_request_duration_seconds` by route template (`/api/cards/{card_id}`), never
by raw path: a path holds ids and capability tokens.
"""

from __future__ import annotations

import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.request_ids import REQUEST_ID, request_id_from
from integrations import metrics

#: Where the arrival time of a request is kept in its ASGI scope's state (perf_counter).
RECEIVED_AT: Final = "salesbot_received_at"

_HEADER: Final = b"x-request-id"
# The label of a request no route matched (a 404 or 405 of the router).
UNMATCHED: Final = "unmatched"
# Where FastAPI keeps the route as it matched, with the prefixes of the routers it was
# included under (`fastapi.routing`; a test of nested routers keeps this name honest).
_EFFECTIVE_ROUTE: Final = "effective_route_context"
# Methods counted by name; any other (a client may send anything) is counted as OTHER.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The whole template of the route that answered (`/api/jobs/{job_id}`), or `unmatched`.

    A route of a router included in another router (`/sandbox` includes the console's
    actions) is the included route itself in `scope["route"]`, whose `path` lacks the
    prefixes it was included under ("/action"). FastAPI keeps the route as it matched, prefixes
    included, in its part of the scope: that template is preferred when present.
    """
    fastapi_state = scope.get("fastapi")
    matched = fastapi_state.get(_EFFECTIVE_ROUTE) if isinstance(fastapi_state, dict) else None
    whole = getattr(matched, "path_format", None)
    if isinstance(whole, str) and whole:
        return whole
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class ObservabilityMiddleware:
    """Assign the request id, return it, and count and time the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = None
        for name, value in scope.get("headers") or ():
            if name == _HEADER:
                incoming = value.decode("latin-1")
                break
        request_id = request_id_from(incoming)
        state = scope.setdefault("state", {})
        state[RECEIVED_AT] = started
        state["request_id"] = request_id
        status = 500  # an exception that escapes the app is answered 500 outside it

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != _HEADER]
                headers.append((_HEADER, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
            route = route_template(scope)
            method = str(scope.get("method", "GET"))
            method = method if method in _METHODS else "OTHER"
            status_class = metrics.status_class(status)
            metrics.HTTP_REQUESTS.labels(route, method, status_class).inc()
            metrics.HTTP_LATENCY.labels(route, method, status_class).observe(
                time.perf_counter() - started
            )


def received_at(scope: Scope) -> float | None:
    """When the middleware saw the request arrive (perf_counter), if it did."""
    value = (scope.get("state") or {}).get(RECEIVED_AT)
    return float(value) if isinstance(value, int | float) else None
