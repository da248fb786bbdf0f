"""A stand-in for the Anthropic Messages API (`POST /v1/messages`), served on loopback.

It answers the official SDK as the real API does: credentials in `x-api-key` (or
`Authorization: Bearer`, which the 2.x SDK sends for an API key) else 401
`authentication_error`; a missing `anthropic-version` header or a malformed body
400 `invalid_request_error`; otherwise a `message` object with `content`,
`stop_reason` and `usage`, and a `request-id` header.

By default a request whose `tool_choice` forces a tool gets a deterministic
`tool_use` block. For `write_email` the input is derived from the prompt: the
template found inside `<template>` (JSON) keeps its subject, and its body gains
`PERSONAL_TOUCH` after the greeting line, so tests can tell Claude's draft from the
template. `write_reply` (integrations/claude_reply.py) answers from the context in the
prompt (`written_reply`: the sender's first name, `REPLY_TOUCH`, the order facts, the
rep's signature). Other tools get the answer registered with `answer_tool`, or a minimal
input built from their schema. A request without a forced tool gets a text answer.

Tests script the next answers with `script(...)`: text only, a tool call with any
input, HTTP errors (429 with `retry-after`, 529, 500), slow answers. Each HTTP
attempt, SDK retries included, takes one scripted answer. Every request is
recorded in `requests`. All of it is thread-safe.

Classification (`classify_message`, see integrations/claude_prompts.py) answers from a
table keyed by message content: `when(substring, *replies)` answers the requests whose
user message contains `substring` with `replies` in turn (a mapping is a tool input; the
last reply keeps answering), `answer_all_with(reply)` answers every request the same way
(Claude down), and with neither a keyword reading of the email is the answer
(`keyword_classification`).

Usage is accounted as the API does: the prefix up to the last `cache_control` block
(tools, then system, then messages) is written to a cache on a first request
(`cache_creation_input_tokens`) and read by later ones with the same prefix and model
(`cache_read_input_tokens`), once that first answer has been sent; `input_tokens` are
the tokens after it. A token is four characters. A prefix shorter than
`min_cacheable_tokens` is not cached. Totals are in `usage`.

`GET /v1/models` and `GET /v1/models/{id}` answer for the models in `models`; any
other id is a 404 `not_found_error`. `response_delay` slows every Messages answer (the
bench), and `peak_in_flight` tells how many Messages requests were ever open at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.server import RunningServer, serve_in_thread

MESSAGES_PATH: Final = "/v1/messages"
MODELS_PATH: Final = "/v1/models"
WRITE_EMAIL_TOOL: Final = "write_email"
WRITE_REPLY_TOOL: Final = "write_reply"
CLASSIFY_TOOL: Final = "classify_message"
#: How long a cached prefix lives after its last use (the API's default "5m" TTL).
CACHE_TTL_SECONDS: Final = 300.0
PERSONAL_TOUCH: Final = (
    "It has been a while since we worked together, so I wanted to write to you personally."
)
#: The sentence the stand-in's `write_reply` answers carry, so tests can tell them apart.
REPLY_TOUCH: Final = "Thank you for getting back to me; I will make sure you have what you need."
DEFAULT_TEXT_ANSWER: Final = "Hello from the Anthropic stand-in."

_GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|good\s+(?:morning|afternoon|evening))\b.{0,60}$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_KNOWN_FIELDS: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "stream",
        "thinking",
        "service_tier",
        "container",
        "output_config",
        "inference_geo",
        "speed",
        "cache_control",
        "diagnostics",
        "mcp_servers",
        "context_management",
    }
)


@dataclass(frozen=True)
class TextReply:
    """Answer with text only (no tool call), as a model that ignored `tool_choice` would."""

    text: str = "I would rather explain in prose: here is a friendlier version of the email."
    stop_reason: str = "end_turn"


@dataclass(frozen=True)
class ToolReply:
    """Answer with a `tool_use` block carrying exactly `input` (valid or not)."""

    input: Mapping[str, Any]
    name: str | None = None
    stop_reason: str = "tool_use"


@dataclass(frozen=True)
class ErrorReply:
    """Answer with an HTTP error shaped like the API's (`{"type": "error", "error": ...}`)."""

    status: int
    error_type: str
    message: str
    retry_after: float | None = None

    @classmethod
    def rate_limited(cls, *, retry_after: float = 1) -> ErrorReply:
        """429 rate_limit_error with a `retry-after` header (seconds)."""
        return cls(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization.",
            retry_after,
        )

    @classmethod
    def overloaded(cls) -> ErrorReply:
        """529 overloaded_error, as the API answers when it is overloaded."""
        return cls(529, "overloaded_error", "Overloaded")

    @classmethod
    def server_error(cls) -> ErrorReply:
        """500 api_error."""
        return cls(500, "api_error", "Internal server error")


@dataclass(frozen=True)
class SlowReply:
    """Wait `delay` seconds, then answer with `then` (the default answer if None).

    The wait ends early when the client hangs up, so a timed-out test does not hold
    the server's shutdown.
    """

    delay: float
    then: TextReply | ToolReply | ErrorReply | None = None


Reply = TextReply | ToolReply | ErrorReply | SlowReply
ToolResponder = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class ModelEntry:
    """A model the Models API knows, as `GET /v1/models/{id}` describes it."""

    id: str
    display_name: str
    lifecycle: str = "active"  # "active", "deprecated" or "retired"
    created_at: str = "2025-10-01T00:00:00Z"
    retires_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The API's model object."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "lifecycle": self.lifecycle,
            "deprecated_at": None if self.lifecycle == "active" else self.created_at,
            "retires_at": self.retires_at,
        }


DEFAULT_MODELS: Final = (
    ModelEntry("claude-sonnet-4-6", "Claude Sonnet 4.6", created_at="2026-02-17T00:00:00Z"),
    ModelEntry("claude-haiku-4-5", "Claude Haiku 4.5", created_at="2025-10-15T00:00:00Z"),
    ModelEntry("claude-haiku-4-5-20251001", "Claude Haiku 4.5", created_at="2025-10-15T00:00:00Z"),
    ModelEntry("claude-opus-4-6", "Claude Opus 4.6", created_at="2026-02-05T00:00:00Z"),
    ModelEntry("claude-sonnet-4-5", "Claude Sonnet 4.5", created_at="2025-09-29T00:00:00Z"),
)


@dataclass(frozen=True)
class UsageTotals:
    """Token usage of every message answered so far, as the API reports it."""

    messages: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass
class _KeyedReplies:
    contains: str
    replies: list[Reply]
    used: int = field(default=0)

    def next(self) -> Reply:
        reply = self.replies[min(self.used, len(self.replies) - 1)]
        self.used += 1
        return reply


@dataclass
class RecordedRequest:
    """One request received on the Messages endpoint.

    It is recorded on arrival: `status` is None while the answer is being made, and
    499 when the client hung up before a slow answer was ready.
    """

    headers: dict[str, str]
    body: Any
    status: int | None = None

    @property
    def system(self) -> str:
        """The system prompt as one string."""
        system = self.body.get("system") if isinstance(self.body, dict) else None
        return _text_of(system)

    @property
    def user_text(self) -> str:
        """The text of the last user message."""
        if not isinstance(self.body, dict):
            return ""
        for message in reversed(self.body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @property
    def retry_count(self) -> int:
        """The SDK's `x-stainless-retry-count` (0 on the first attempt)."""
        return int(self.headers.get("x-stainless-retry-count", "0"))


class AnthropicStandIn:
    """The Messages API stand-in: scripted answers, recorded requests, an ASGI app."""

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        models: Collection[ModelEntry] = DEFAULT_MODELS,
        min_cacheable_tokens: int = 1024,
        response_delay: float = 0.0,
    ) -> None:
        self._api_keys = tuple(api_keys) if api_keys is not None else None
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._tool_responders: dict[str, ToolResponder] = {}
        self._keyed: list[_KeyedReplies] = []
        self._all: Reply | None = None
        self._ids = itertools.count(1)
        self._models = {model.id: model for model in models}
        self._cache: dict[str, float] = {}  # prefix key -> when it expires (monotonic)
        self._usage = UsageTotals()
        self._in_flight = 0
        self._peak_in_flight = 0
        #: Prefixes shorter than this many tokens are not cached (model minimums differ).
        self.min_cacheable_tokens = min_cacheable_tokens
        #: Seconds every Messages answer waits before it is sent (the bench's 1 s).
        self.response_delay = response_delay
        self.app = Starlette(
            routes=[
                Route(MESSAGES_PATH, self._messages, methods=["POST"]),
                Route(MODELS_PATH, self._list_models, methods=["GET"]),
                Route(MODELS_PATH + "/{model_id:path}", self._get_model, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests, one per HTTP attempt, in order."""
        with self._lock:
            self._script.extend(replies)

    def answer_tool(self, name: str, responder: ToolResponder) -> None:
        """Answer calls forced to tool `name` with `responder(request body)` as the input."""
        with self._lock:
            self._tool_responders[name] = responder

    def when(self, contains: str, *replies: Reply | Mapping[str, Any]) -> None:
        """Answer requests whose user message contains `contains` with `replies` in turn.

        A mapping is the input of a tool call; the last reply keeps answering. The first
        entry added that matches wins; `script(...)` answers go first.
        """
        if not replies:
            raise ValueError("when() needs at least one reply")
        converted = [ToolReply(reply) if isinstance(reply, Mapping) else reply for reply in replies]
        with self._lock:
            self._keyed.append(_KeyedReplies(contains, converted))

    def answer_all_with(self, reply: Reply | Mapping[str, Any] | None) -> None:
        """Answer every request with `reply` (None: back to normal), after `script(...)`."""
        with self._lock:
            self._all = ToolReply(reply) if isinstance(reply, Mapping) else reply

    def set_models(self, models: Collection[ModelEntry]) -> None:
        """Replace the models the Models API knows."""
        with self._lock:
            self._models = {model.id: model for model in models}

    @property
    def usage(self) -> UsageTotals:
        """Token totals of every message answered so far."""
        with self._lock:
            return self._usage

    @property
    def peak_in_flight(self) -> int:
        """The most Messages requests ever open at the same time."""
        with self._lock:
            return self._peak_in_flight

    def reset(self) -> None:
        """Forget scripted answers, recorded requests, tool responders, cache and usage."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._tool_responders.clear()
            self._keyed.clear()
            self._all = None
            self._cache.clear()
            self._usage = UsageTotals()
            self._peak_in_flight = self._in_flight

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """How many scripted answers are still queued."""
        with self._lock:
            return len(self._script)

    async def _messages(self, request: Request) -> JSONResponse:
        headers = {key.lower(): value for key, value in request.headers.items()}
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(headers=headers, body=body)
        with self._lock:
            self._requests.append(recorded)
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            response = await self._answer(request, headers, raw, body)
        finally:
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            recorded.status = response.status_code
        return response

    async def _answer(
        self, request: Request, headers: Mapping[str, str], raw: bytes, body: Any
    ) -> JSONResponse:
        if not self._authorized(headers):
            message = (
                "x-api-key header is required" if not _credential(headers) else "invalid x-api-key"
            )
            return self._error(401, "authentication_error", message)
        if not headers.get("anthropic-version"):
            return self._error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        if body is None:
            missing = "body: Input should be a valid JSON object" if raw else "body: Field required"
            return self._error(400, "invalid_request_error", missing)
        problem = validation_problem(body)
        if problem:
            return self._error(400, "invalid_request_error", problem)
        reply = self._next_reply(_last_user_text(body))
        cache = self._look_up_cache(body)
        if self.response_delay > 0 and not await _wait_unless_disconnected(
            request, self.response_delay
        ):
            return self._error(499, "api_error", "Client closed the request")
        if isinstance(reply, SlowReply):
            if not await _wait_unless_disconnected(request, reply.delay):
                return self._error(499, "api_error", "Client closed the request")
            reply = reply.then
        if isinstance(reply, ErrorReply):
            extra = {}
            if reply.retry_after is not None:
                extra["retry-after"] = f"{reply.retry_after:g}"
            return self._error(reply.status, reply.error_type, reply.message, headers=extra)
        return self._message(body, reply, cache)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        key = _credential(headers)
        if not key:
            return False
        if self._api_keys is None:
            return True
        return any(hmac.compare_digest(key, allowed) for allowed in self._api_keys)

    def _next_reply(self, user_text: str) -> Reply | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            for keyed in self._keyed:
                if keyed.contains in user_text:
                    return keyed.next()
            return self._all

    def _look_up_cache(self, body: Mapping[str, Any]) -> _CacheUse:
        """Split the prompt at its last cache breakpoint; say whether the prefix is cached.

        The lookup happens on arrival and the prefix is written when the answer is sent,
        as with the API: requests that arrive together before the first answer all write.
        """
        prefix, rest = _split_at_cache_breakpoint(body)
        prefix_tokens = len(prefix) // 4
        rest_tokens = max(1, len(rest) // 4)
        if not prefix or prefix_tokens < self.min_cacheable_tokens:
            return _CacheUse(key=None, prefix_tokens=0, rest_tokens=rest_tokens + prefix_tokens)
        key = hashlib.sha256(f"{body.get('model')}\0{prefix}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            expires = self._cache.get(key)
            hit = expires is not None and expires > now
            if hit:
                self._cache[key] = now + CACHE_TTL_SECONDS
        return _CacheUse(key=key, prefix_tokens=prefix_tokens, rest_tokens=rest_tokens, hit=hit)

    def _message(
        self,
        body: Mapping[str, Any],
        reply: TextReply | ToolReply | None,
        cache: _CacheUse | None = None,
    ) -> JSONResponse:
        forced = _forced_tool(body)
        content: list[dict[str, Any]]
        if isinstance(reply, TextReply):
            content = [{"type": "text", "text": reply.text}]
            stop_reason = reply.stop_reason
        elif isinstance(reply, ToolReply):
            name = reply.name or forced or _first_tool(body) or WRITE_EMAIL_TOOL
            content = [self._tool_use(name, dict(reply.input))]
            stop_reason = reply.stop_reason
        elif forced is not None:
            content = [self._tool_use(forced, self._default_tool_input(forced, body))]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": DEFAULT_TEXT_ANSWER}]
            stop_reason = "end_turn"
        number = self._next_id()
        cache = cache or self._look_up_cache(body)
        output_tokens = max(1, len(json.dumps(content)) // 4)
        created = 0 if cache.hit else cache.prefix_tokens
        read = cache.prefix_tokens if cache.hit else 0
        usage = {
            "input_tokens": cache.rest_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "service_tier": "standard",
        }
        with self._lock:
            if cache.key is not None:
                self._cache[cache.key] = time.monotonic() + CACHE_TTL_SECONDS
            totals = self._usage
            self._usage = UsageTotals(
                messages=totals.messages + 1,
                input_tokens=totals.input_tokens + cache.rest_tokens,
                output_tokens=totals.output_tokens + output_tokens,
                cache_creation_input_tokens=totals.cache_creation_input_tokens + created,
                cache_read_input_tokens=totals.cache_read_input_tokens + read,
            )
        message = {
            "id": f"msg_standin{number:015d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        return JSONResponse(message, headers={"request-id": f"req_standin{number:015d}"})

    def _tool_use(self, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "tool_use",
            "id": f"toolu_standin{self._next_id():015d}",
            "name": name,
            "input": tool_input,
        }

    def _default_tool_input(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            responder = self._tool_responders.get(name)
        if responder is not None:
            return dict(responder(body))
        if name == WRITE_EMAIL_TOOL:
            return personalised_email(_last_user_text(body))
        if name == CLASSIFY_TOOL:
            return keyword_classification(_last_user_text(body))
        if name == WRITE_REPLY_TOOL:
            return written_reply(_last_user_text(body))
        schema: Any = next(
            (
                tool.get("input_schema", {})
                for tool in body.get("tools", [])
                if tool.get("name") == name
            ),
            {},
        )
        example = example_for_schema(schema)
        return example if isinstance(example, dict) else {}

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _error(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        request_id = f"req_standin{self._next_id():015d}"
        payload = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
        return JSONResponse(
            payload, status_code=status, headers={"request-id": request_id, **(headers or {})}
        )

    async def _list_models(self, request: Request) -> JSONResponse:
        refusal = self._refuse_unauthorized(request)
        if refusal is not None:
            return refusal
        with self._lock:
            models = [model.as_json() for model in self._models.values()]
        return JSONResponse(
            {
                "data": models,
                "has_more": False,
                "first_id": models[0]["id"] if models else None,
                "last_id": models[-1]["id"] if models else None,
            }
        )

    async def _get_model(self, request: Request) -> JSONResponse:
        refusal = self._refuse_unauthorized(request)
        if refusal is not None:
            return refusal
        model_id = request.path_params["model_id"]
        with self._lock:
            model = self._models.get(model_id)
        if model is None:
            return self._error(404, "not_found_error", f"model: {model_id}")
        return JSONResponse(model.as_json())

    def _refuse_unauthorized(self, request: Request) -> JSONResponse | None:
        headers = {key.lower(): value for key, value in request.headers.items()}
        if self._authorized(headers):
            return None
        message = (
            "x-api-key header is required" if not _credential(headers) else "invalid x-api-key"
        )
        return self._error(401, "authentication_error", message)

    async def _http_error(self, request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kinds = {404: "not_found_error", 405: "invalid_request_error"}
        return self._error(status, kinds.get(status, "api_error"), str(getattr(exc, "detail", "")))


def start_anthropic_stand_in(
    *,
    api_keys: Collection[str] | None = None,
    models: Collection[ModelEntry] = DEFAULT_MODELS,
    response_delay: float = 0.0,
) -> tuple[AnthropicStandIn, RunningServer]:
    """Serve a new stand-in on a loopback port; point the SDK's `base_url` at `server.url`."""
    stand_in = AnthropicStandIn(api_keys=api_keys, models=models, response_delay=response_delay)
    return stand_in, serve_in_thread(stand_in.app, access_logger="sandbox.anthropic.access")


@dataclass(frozen=True)
class _CacheUse:
    key: str | None
    prefix_tokens: int
    rest_tokens: int
    hit: bool = False


def _split_at_cache_breakpoint(body: Mapping[str, Any]) -> tuple[str, str]:
    """Return the prompt as text, split after its last `cache_control` block.

    The order is the API's: tools, then system, then messages. Without a breakpoint the
    prefix is empty.
    """
    pieces: list[tuple[str, bool]] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            marked = "cache_control" in tool
            pieces.append(
                (json.dumps({k: v for k, v in tool.items() if k != "cache_control"}), marked)
            )
    system = body.get("system")
    if isinstance(system, str):
        pieces.append((system, False))
    elif isinstance(system, list):
        for block in system:
            if isinstance(block, dict):
                pieces.append((str(block.get("text", "")), "cache_control" in block))
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            pieces.append((content, False))
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    text = block.get("text")
                    piece = text if isinstance(text, str) else json.dumps(block)
                    pieces.append((piece, "cache_control" in block))
    last = max((i for i, (_, marked) in enumerate(pieces) if marked), default=-1)
    prefix = "".join(piece for piece, _ in pieces[: last + 1])
    rest = "".join(piece for piece, _ in pieces[last + 1 :])
    return prefix, rest


# --- the default classification: a keyword reading of the email --------------------------------

_ORDER = re.compile(r"\border\s*(?:#|no\.?|number)?\s*:?\s*#?\s*([A-Z0-9][A-Z0-9-]{2,24})", re.I)
_AMOUNT = re.compile(r"\$\s?\d{1,3}(?:,\d{3})*(?:\.\d{2})?")
_DUE = re.compile(r"\bdue(?:\s+date)?\s*:?\s*([0-9]{1,2}/[0-9]{1,2}(?:/[0-9]{2,4})?)", re.I)
_ADDRESS = re.compile(
    r"\b\d{2,6}\s+(?:[A-Z][a-z]+\s){1,3}(?:St|Street|Dr|Drive|Rd|Road|Ave|Avenue|Ln|Lane|Blvd"
    r"|Ct|Court|Way|Pl|Place|Trl|Trail|Cir|Circle)\b\.?"
    r"(?:,\s*[A-Z][A-Za-z .]+,\s*[A-Z]{2}\s*\d{5})?"
)
_RULES: Final = (
    (
        ("unsubscribe", "remove me", "stop emailing", "take me off"),
        "REMOVE",
        "negative",
        -0.5,
        "unsubscribe",
    ),
    (
        ("out of the office", "out of office", "on vacation", "automatic reply"),
        "NOTIFICATIONS",
        "neutral",
        0.0,
        "out_of_office",
    ),
    (
        ("appraisal order", "new assignment", "order #", "order number"),
        "AMC_ORDER",
        "neutral",
        0.0,
        "none",
    ),
    (
        ("reconsideration", "complaint", "unacceptable", "rebuttal"),
        "CASE",
        "negative",
        -0.6,
        "none",
    ),
    (("invoice", "payment due", "billing"), "AP", "neutral", 0.0, "none"),
    (("remittance", "payment of", "paid your invoice"), "AR", "neutral", 0.0, "none"),
    (("inspection", "lockbox", "gate code", "appointment"), "SCHEDULING", "neutral", 0.0, "none"),
    (("status", "any update", "where are we"), "STATUS", "neutral", 0.0, "none"),
    (
        ("not interested", "no thanks", "no longer"),
        "OPPORTUNITY",
        "negative",
        -0.4,
        "not_interested",
    ),
    (
        ("send me", "fee schedule", "turn times", "interested", "let's talk", "call"),
        "OPPORTUNITY",
        "positive",
        0.6,
        "interested",
    ),
)


def keyword_classification(prompt: str) -> dict[str, Any]:
    """The stand-in's `classify_message` input: a keyword reading of the <email> in `prompt`."""
    email = _tagged_json(prompt, "email")
    text = f"{email.get('subject') or ''}\n{email.get('body') or ''}"
    lowered = text.casefold()
    answer: dict[str, Any] = {
        "category": "ESCALATE",
        "confidence": 0.3,
        "sentiment": "neutral",
        "sentiment_score": 0.0,
        "intent": "none",
    }
    for words, category, sentiment, score, intent in _RULES:
        if any(word in lowered for word in words):
            answer = {
                "category": category,
                "confidence": 0.9,
                "sentiment": sentiment,
                "sentiment_score": score,
                "intent": intent,
            }
            break
    orders = list(dict.fromkeys(m.group(1) for m in _ORDER.finditer(text)))[:10]
    answer["entities"] = {
        "order_numbers": [o for o in orders if any(c.isdigit() for c in o)],
        "property_addresses": list(dict.fromkeys(m.group(0) for m in _ADDRESS.finditer(text)))[:10],
        "amounts": list(dict.fromkeys(m.group(0) for m in _AMOUNT.finditer(text)))[:10],
        "dates": list(dict.fromkeys(m.group(1) for m in _DUE.finditer(text)))[:10],
        "urgency": "rush" if "rush" in lowered else None,
    }
    answer["instructs_model"] = any(
        phrase in lowered
        for phrase in (
            "ignore all previous instructions",
            "ignore previous instructions",
            "you are now",
            "system prompt",
        )
    )
    return answer


def personalised_email(prompt: str) -> dict[str, str]:
    """Derive the stand-in's `write_email` input from the template inside `<template>`."""
    template = _tagged_json(prompt, "template")
    contact = _tagged_json(prompt, "contact_data")
    subject = str(template.get("subject") or "Checking in")
    body = str(template.get("body") or "")
    first_name = contact.get("first_name")
    lines = body.split("\n")
    if lines and _GREETING.match(lines[0].casefold()) and len(lines) > 1:
        rest = "\n".join(lines[1:]).lstrip("\n")
        personalised = f"{lines[0]}\n\n{PERSONAL_TOUCH}\n\n{rest}"
    elif body:
        personalised = f"{PERSONAL_TOUCH}\n\n{body}"
    else:
        personalised = PERSONAL_TOUCH
    who = f" for {first_name}" if isinstance(first_name, str) and first_name else ""
    return {
        "subject": subject,
        "body": personalised,
        "rationale": f"Added a personal opening line{who}; kept the template's offer and facts.",
    }


def written_reply(prompt: str) -> dict[str, Any]:
    """The stand-in's `write_reply` input, built from the context in the prompt.

    A greeting with the sender's first name, `REPLY_TOUCH`, the sentences of the order
    facts (history, then active orders, for a status question), and the rep's signature:
    every figure and date it writes is one the prompt's <facts> held.
    """
    sender = _tagged_json(prompt, "sender")
    facts = _tagged_json(prompt, "facts")
    rep = _tagged_json(prompt, "rep")
    message = _tagged_json(prompt, "message")
    first_name = sender.get("first_name")
    greeting = f"Hi {first_name}," if isinstance(first_name, str) and first_name else "Hello,"
    used = [key for key in facts if key == "order_history" or str(key).startswith("order:")]
    if message.get("category") != "STATUS":
        used = [key for key in used if key == "order_history"]
    lines = [greeting, "", REPLY_TOUCH]
    if used:
        lines += ["", " ".join(str(facts[key]) for key in used)]
    signature = str(rep.get("signature_name") or "The team")
    firm = str(rep.get("firm_name") or "")
    lines += ["", "Best regards,", signature]
    if firm and firm != signature:
        lines.append(firm)
    return {"subject": None, "body_text": "\n".join(lines), "facts_used": used}


def validation_problem(body: Any) -> str | None:
    """Return the API's complaint about a Messages request body, or None if it is valid."""
    if not isinstance(body, dict):
        return "body: Input should be a valid dictionary"
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return f"{name}: Field required"
    extra = sorted(set(body) - _KNOWN_FIELDS)
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    if body.get("stream"):
        return "stream: streaming is not supported by the stand-in"
    problem = _messages_problem(body["messages"])
    if problem:
        return problem
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not _text_blocks(system):
        return "system: Input should be a valid string or a list of text blocks"
    tools = body.get("tools")
    if tools is not None:
        problem = _tools_problem(tools)
        if problem:
            return problem
    return _tool_choice_problem(body.get("tool_choice"), tools or [])


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{index}: Input should be a valid dictionary"
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if isinstance(content, str):
            if not content and index < len(messages) - 1:
                return f"messages.{index}: all messages must have non-empty content"
        elif not isinstance(content, list) or not all(
            isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
        ):
            return f"messages.{index}.content: Input should be a valid string or list of blocks"
    if messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    return None


def _tools_problem(tools: Any) -> str | None:
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    names: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return f"tools.{index}: Input should be a valid dictionary"
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            return f"tools.{index}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
        if name in names:
            return f"tools: Tool names must be unique ({name})"
        names.add(name)
        schema = tool.get("input_schema")
        if tool.get("type") in (None, "custom") and (
            not isinstance(schema, dict) or schema.get("type") != "object"
        ):
            return f"tools.{index}.custom.input_schema.type: Input should be 'object'"
    return None


def _tool_choice_problem(choice: Any, tools: list[Any]) -> str | None:
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        return "tool_choice: Input tag does not match any of the expected tags"
    if choice["type"] == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            return "tool_choice.tool.name: Field required"
        if name not in {tool.get("name") for tool in tools}:
            return f"tool_choice: Tool '{name}' not found in provided tools"
    elif choice["type"] == "any" and not tools:
        return "tool_choice: tool_choice.type 'any' requires tools"
    return None


def example_for_schema(schema: Any) -> Any:
    """Build a minimal value that satisfies a simple JSON schema (enums take their first)."""
    if not isinstance(schema, dict):
        return None
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or list(properties)
        return {name: example_for_schema(properties.get(name, {})) for name in required}
    if kind == "array":
        return []
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    return None


def _credential(headers: Mapping[str, str]) -> str:
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _forced_tool(body: Mapping[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") == "tool":
            return str(choice["name"])
        if choice.get("type") == "any":
            return _first_tool(body)
    return None


def _first_tool(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools") or []
    return str(tools[0]["name"]) if tools else None


def _text_blocks(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
        for block in value
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _tagged_json(text: str, tag: str) -> dict[str, Any]:
    match = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", text, re.DOTALL)
    if match is None:
        return {}
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _wait_unless_disconnected(request: Request, delay: float) -> bool:
    """Wait `delay` seconds; return False as soon as the client hangs up."""
    deadline = time.monotonic() + delay
    while (remaining := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(min(0.05, remaining))
    return True
