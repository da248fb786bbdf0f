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
template. Other tools get the answer registered with `answer_tool`, or a minimal
input built from their schema. A request without a forced tool gets a text answer.

Tests script the next answers with `script(...)`: text only, a tool call with any
input, HTTP errors (429 with `retry-after`, 529, 500), slow answers. Each HTTP
attempt, SDK retries included, takes one scripted answer. Every request is
recorded in `requests`. All of it is thread-safe.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.server import RunningServer, serve_in_thread

MESSAGES_PATH: Final = "/v1/messages"
WRITE_EMAIL_TOOL: Final = "write_email"
PERSONAL_TOUCH: Final = (
    "It has been a while since we worked together, so I wanted to write to you personally."
)
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

    def __init__(self, *, api_keys: Collection[str] | None = None) -> None:
        self._api_keys = tuple(api_keys) if api_keys is not None else None
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._tool_responders: dict[str, ToolResponder] = {}
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[Route(MESSAGES_PATH, self._messages, methods=["POST"])],
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

    def reset(self) -> None:
        """Forget scripted answers, recorded requests and tool responders."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._tool_responders.clear()

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
        response = await self._answer(request, headers, raw, body)
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
        reply = self._next_reply()
        if isinstance(reply, SlowReply):
            if not await _wait_unless_disconnected(request, reply.delay):
                return self._error(499, "api_error", "Client closed the request")
            reply = reply.then
        if isinstance(reply, ErrorReply):
            extra = {}
            if reply.retry_after is not None:
                extra["retry-after"] = f"{reply.retry_after:g}"
            return self._error(reply.status, reply.error_type, reply.message, headers=extra)
        return self._message(body, reply)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        key = _credential(headers)
        if not key:
            return False
        if self._api_keys is None:
            return True
        return any(hmac.compare_digest(key, allowed) for allowed in self._api_keys)

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _message(
        self, body: Mapping[str, Any], reply: TextReply | ToolReply | None
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
        message = {
            "id": f"msg_standin{number:015d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(1, len(json.dumps(body)) // 4),
                "output_tokens": max(1, len(json.dumps(content)) // 4),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
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

    async def _http_error(self, request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kinds = {404: "not_found_error", 405: "invalid_request_error"}
        return self._error(status, kinds.get(status, "api_error"), str(getattr(exc, "detail", "")))


def start_anthropic_stand_in(
    *, api_keys: Collection[str] | None = None
) -> tuple[AnthropicStandIn, RunningServer]:
    """Serve a new stand-in on a loopback port; point the SDK's `base_url` at `server.url`."""
    stand_in = AnthropicStandIn(api_keys=api_keys)
    return stand_in, serve_in_thread(stand_in.app)


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
