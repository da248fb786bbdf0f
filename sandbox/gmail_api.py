"""Gmail API stand-in: the routes of the discovery document Salesbot uses, on in-memory mailboxes.

Served under the discovery document's paths, so that google-api-python-client
built with `client_options={"api_endpoint": <server url>/}` talks to it unchanged:

| route name                 | HTTP | path under `gmail/v1/users/{userId}/`          |
|----------------------------|------|------------------------------------------------|
| `messages.send`            | POST | `messages/send` (and `/upload/gmail/v1/...`)   |
| `messages.get`             | GET  | `messages/{id}`                                |
| `messages.list`            | GET  | `messages`                                     |
| `messages.attachments.get` | GET  | `messages/{messageId}/attachments/{id}`        |
| `history.list`             | GET  | `history`                                      |
| `threads.get`              | GET  | `threads/{id}`                                 |
| `getProfile`               | GET  | `profile`                                      |
| `watch`                    | POST | `watch`                                        |
| `stop`                     | POST | `stop`                                         |

Every call needs an access token that `GoogleOAuthStandIn` issued and that is
still live; `userId` is `me` or the token's own address; the token's scopes must
include one the discovery document lists for the method (`gmail.metadata` alone
refuses `format=full|raw` and `q`, as Gmail does). Errors have Gmail's JSON shape.

Two client quirks worth knowing (google-api-python-client 2.202):
- with `api_endpoint` set, a `media_body=` upload goes to the discovery
  document's *https* scheme on the stand-in's host and port, so against this
  plain-http server only `send(body={"raw": ...})` works end to end; the upload
  route is served for requests replayed over http.
- a `media_body=` upload *with* a `body=` builds a multipart body that the
  stdlib generator cannot encode when the message has 8-bit bytes.

History ids grow by uneven steps, as Gmail's do; a `startHistoryId` older than
the kept history answers 404 `notFound`, after `expire_history()` or once more
than `history_limit` records were kept.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import itertools
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, formataddr
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox.google_oauth import (
    SCOPE_GMAIL_METADATA,
    AccessToken,
    GoogleOAuthStandIn,
    bearer_token,
    google_api_error,
)

HistoryType = Literal["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
SendVia = Literal["json", "multipart", "media"]
DropMode = Literal["broken", "error_500"]

ROUTE_NAMES: Final = (
    "messages.send",
    "messages.get",
    "messages.list",
    "messages.attachments.get",
    "history.list",
    "threads.get",
    "getProfile",
    "watch",
    "stop",
)

# (HTTP method, path) of each route, as in the discovery document's `users` resource.
ROUTE_PATHS: Final[Mapping[str, tuple[str, str]]] = {
    "messages.send": ("POST", "gmail/v1/users/{userId}/messages/send"),
    "messages.get": ("GET", "gmail/v1/users/{userId}/messages/{id}"),
    "messages.list": ("GET", "gmail/v1/users/{userId}/messages"),
    "messages.attachments.get": (
        "GET",
        "gmail/v1/users/{userId}/messages/{messageId}/attachments/{id}",
    ),
    "history.list": ("GET", "gmail/v1/users/{userId}/history"),
    "threads.get": ("GET", "gmail/v1/users/{userId}/threads/{id}"),
    "getProfile": ("GET", "gmail/v1/users/{userId}/profile"),
    "watch": ("POST", "gmail/v1/users/{userId}/watch"),
    "stop": ("POST", "gmail/v1/users/{userId}/stop"),
}
UPLOAD_SEND_PATH: Final = "/upload/gmail/v1/users/{userId}/messages/send"

_MAIL: Final = "https://mail.google.com/"
_AUTH: Final = "https://www.googleapis.com/auth/"
_READERS: Final = frozenset(
    {_MAIL, _AUTH + "gmail.metadata", _AUTH + "gmail.modify", _AUTH + "gmail.readonly"}
)
_MESSAGE_READERS: Final = _READERS | {
    _AUTH + "gmail.addons.current.message.action",
    _AUTH + "gmail.addons.current.message.metadata",
    _AUTH + "gmail.addons.current.message.readonly",
}
# Scopes that open each method, copied from the discovery document.
METHOD_SCOPES: Final[Mapping[str, frozenset[str]]] = {
    "messages.send": frozenset(
        {
            _MAIL,
            _AUTH + "gmail.addons.current.action.compose",
            _AUTH + "gmail.compose",
            _AUTH + "gmail.modify",
            _AUTH + "gmail.send",
        }
    ),
    "messages.get": _MESSAGE_READERS,
    "messages.list": _READERS,
    "messages.attachments.get": frozenset(
        {
            _MAIL,
            _AUTH + "gmail.addons.current.message.action",
            _AUTH + "gmail.addons.current.message.readonly",
            _AUTH + "gmail.modify",
            _AUTH + "gmail.readonly",
        }
    ),
    "history.list": _READERS,
    "threads.get": _MESSAGE_READERS,
    "getProfile": _READERS | {_AUTH + "gmail.compose"},
    "watch": _READERS,
    "stop": _READERS,
}

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 500
WATCH_LIFETIME: Final = timedelta(days=7)
SNIPPET_LENGTH: Final = 200
_FIRST_MESSAGE_ID: Final = 0x19A0_0000_0000_0000
_HISTORY_BASE: Final = 1_000_000
_SPAM_TRASH: Final = frozenset({"SPAM", "TRASH"})
_QUERY_TIMEZONE: Final = "America/Los_Angeles"  # Gmail reads yyyy/mm/dd dates as PST midnight

_AUTH_ERROR_MESSAGE: Final = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_MISSING_AUTH_MESSAGE: Final = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_REASON_DEFAULTS: Final[Mapping[str, tuple[str, str]]] = {
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded"),
    "dailyLimitExceeded": ("usageLimits", "Daily Limit Exceeded"),
    "quotaExceeded": ("usageLimits", "Quota Exceeded"),
    "backendError": ("global", "Backend Error"),
    "internalError": ("global", "Internal error encountered."),
    "failedPrecondition": ("global", "Precondition check failed."),
}


# -- public records -----------------------------------------------------------------


@dataclass(frozen=True)
class StoredMessage:
    """One message of a mailbox as Gmail keeps it."""

    id: str
    thread_id: str
    label_ids: tuple[str, ...]
    internal_date_ms: int
    history_id: int
    raw: bytes
    snippet: str
    message_id_header: str | None
    seq: int

    @property
    def size_estimate(self) -> int:
        """The size Gmail reports (`sizeEstimate`): the RFC 822 size."""
        return len(self.raw)

    def parsed(self) -> EmailMessage:
        """Parse the RFC 822 bytes with the stdlib email package."""
        return _parse(self.raw)


@dataclass(frozen=True)
class HistoryRecord:
    """One change of a mailbox; `label_ids` are the labels added or removed by label changes."""

    id: int
    kind: HistoryType
    message_id: str
    thread_id: str
    message_label_ids: tuple[str, ...]
    label_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class SentMessage:
    """A message sent through the API (what the sender's mailbox keeps, Bcc included)."""

    mailbox: str
    id: str
    thread_id: str
    raw: bytes
    via: SendVia

    @property
    def message(self) -> EmailMessage:
        """The sent message parsed with the stdlib email package."""
        return _parse(self.raw)


@dataclass(frozen=True)
class WatchCall:
    """One `users.watch` call."""

    email: str
    topic_name: str
    label_ids: tuple[str, ...]
    label_filter_behavior: str | None
    history_id: int
    expiration_ms: int


@dataclass(frozen=True)
class ApiCall:
    """One request the stand-in answered; `status` None means the connection was dropped."""

    route: str
    email: str | None
    status: int | None


class GmailApiError(Exception):
    """An error answered with Gmail's JSON error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str,
        domain: str = "global",
        error_message: str | None = None,
        status_name: str | None = None,
        extra_error_fields: Mapping[str, str] | None = None,
        details: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.message = message
        self.reason = reason
        self.domain = domain
        self.error_message = error_message
        self.status_name = status_name
        self.extra_error_fields = extra_error_fields
        self.details = details
        self.headers = headers

    def response(self) -> JSONResponse:
        """Render the error as Gmail does."""
        return google_api_error(
            self.status,
            self.message,
            reason=self.reason,
            domain=self.domain,
            error_message=self.error_message,
            status_name=self.status_name,
            extra_error_fields=self.extra_error_fields,
            details=self.details,
            headers=self.headers,
        )


def _not_found() -> GmailApiError:
    return GmailApiError(404, "Requested entity was not found.", reason="notFound")


def _invalid(message: str) -> GmailApiError:
    return GmailApiError(400, message, reason="invalidArgument")


# -- mailboxes ------------------------------------------------------------------------


@dataclass
class _MailboxState:
    email: str
    send_as: frozenset[str]
    history_id: int
    oldest_start: int
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    search: dict[str, _Searchable] = field(default_factory=dict)
    history: list[HistoryRecord] = field(default_factory=list)
    watch: WatchCall | None = None
    changes: int = 0


class Mailbox:
    """A handle on one mailbox of the stand-in, for tests."""

    def __init__(self, gmail: GmailStandIn, email: str) -> None:
        self._gmail = gmail
        self.email = email

    def deliver(
        self,
        raw: bytes,
        *,
        labels: Sequence[str] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
        internal_date: datetime | None = None,
    ) -> str:
        """Deliver `raw` into this mailbox; return the new message id."""
        return self._gmail.deliver(
            self.email, raw, labels=labels, thread_id=thread_id, internal_date=internal_date
        )

    def messages(self) -> list[StoredMessage]:
        """Return the messages of this mailbox, oldest first."""
        return self._gmail.messages(self.email)

    def sent(self) -> list[SentMessage]:
        """Return the messages sent through the API from this mailbox."""
        return self._gmail.sent(self.email)

    @property
    def history_id(self) -> int:
        """The mailbox's current history id."""
        return self._gmail.history_id(self.email)

    def expire_history(self, before_history_id: int) -> None:
        """Forget history up to `before_history_id` (see `GmailStandIn.expire_history`)."""
        self._gmail.expire_history(self.email, before_history_id)


@dataclass
class _InjectedFailure:
    route: str
    status: int
    reason: str
    message: str | None
    retry_after: int | None
    email: str | None
    remaining: int


@dataclass(frozen=True)
class _Call:
    route: str
    mailbox: _MailboxState
    token: AccessToken
    query: QueryParams
    path: Mapping[str, str]
    body: bytes
    content_type: str


Handler = Callable[[_Call], dict[str, Any] | Response]


class GmailStandIn:
    """In-memory Gmail: mailboxes, messages, threads, history, watch; thread-safe."""

    def __init__(
        self,
        oauth: GoogleOAuthStandIn,
        *,
        clock: Callable[[], float] = time.time,
        history_limit: int | None = None,
    ) -> None:
        self._oauth = oauth
        self._clock = clock
        self._default_history_limit = history_limit
        self._lock = threading.RLock()
        self._ids = itertools.count(_FIRST_MESSAGE_ID)
        self._seq = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget every mailbox, sent message, watch, call and injected failure."""
        with self._lock:
            self._mailboxes: dict[str, _MailboxState] = {}
            self._sent: list[SentMessage] = []
            self._watch_calls: list[WatchCall] = []
            self._stop_calls: list[str] = []
            self._calls: list[ApiCall] = []
            self._failures: list[_InjectedFailure] = []
            self._drop_next_sends: list[DropMode] = []
            self._send_delay = 0.0
            self._history_limit = self._default_history_limit

    # -- mailboxes and mail ---------------------------------------------------------

    def add_mailbox(self, email: str, *, send_as: Iterable[str] = ()) -> Mailbox:
        """Create the mailbox of `email` (or return the existing one); `send_as` are aliases."""
        key = email.lower()
        with self._lock:
            if key not in self._mailboxes:
                base = _HISTORY_BASE * (len(self._mailboxes) + 1)
                self._mailboxes[key] = _MailboxState(
                    email=key,
                    send_as=frozenset(a.lower() for a in send_as) | {key},
                    history_id=base,
                    oldest_start=base,
                )
        return Mailbox(self, key)

    def mailbox(self, email: str) -> Mailbox:
        """Return the handle of an existing mailbox."""
        self._state(email)
        return Mailbox(self, email.lower())

    def deliver(
        self,
        to_email: str,
        raw: bytes,
        *,
        labels: Sequence[str] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
        internal_date: datetime | None = None,
    ) -> str:
        """Deliver `raw` into a mailbox as received mail; return the new message id.

        Without `thread_id`, the message joins the thread of a message of the same
        mailbox whose Message-ID its In-Reply-To or References name, like Gmail.
        """
        with self._lock:
            state = self._state(to_email)
            if thread_id is not None and not _has_thread(state, thread_id):
                raise KeyError(f"no thread {thread_id} in {state.email}")
            at_ms = int(internal_date.timestamp() * 1000) if internal_date else None
            return self._store(state, raw, labels, thread_id=thread_id, internal_date_ms=at_ms).id

    def messages(self, email: str) -> list[StoredMessage]:
        """Return the messages of a mailbox, oldest first."""
        with self._lock:
            return sorted(self._state(email).messages.values(), key=lambda m: m.seq)

    def message(self, email: str, message_id: str) -> StoredMessage:
        """Return one message of a mailbox."""
        with self._lock:
            return self._state(email).messages[message_id]

    def sent(self, email: str | None = None) -> list[SentMessage]:
        """Return the messages sent through the API (from `email`, or from anyone)."""
        with self._lock:
            return [s for s in self._sent if email is None or s.mailbox == email.lower()]

    def history(self, email: str) -> list[HistoryRecord]:
        """Return the history records a mailbox still keeps, oldest first."""
        with self._lock:
            return list(self._state(email).history)

    def history_id(self, email: str) -> int:
        """Return a mailbox's current history id."""
        with self._lock:
            return self._state(email).history_id

    def modify_labels(
        self,
        email: str,
        message_id: str,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> None:
        """Add and remove labels on a message, recording labelAdded/labelRemoved history."""
        with self._lock:
            state = self._state(email)
            message = state.messages[message_id]
            added = tuple(label for label in add if label not in message.label_ids)
            if added:
                labels = (*message.label_ids, *added)
                message = self._record(state, "labelAdded", message, labels, added)
            removed = tuple(label for label in remove if label in message.label_ids)
            if removed:
                labels = tuple(label for label in message.label_ids if label not in removed)
                self._record(state, "labelRemoved", message, labels, removed)

    def delete_message(self, email: str, message_id: str) -> None:
        """Delete a message for good, recording messageDeleted history."""
        with self._lock:
            state = self._state(email)
            message = state.messages[message_id]
            self._record(state, "messageDeleted", message, message.label_ids, ())
            del state.messages[message_id]
            del state.search[message_id]

    def expire_history(self, email: str, before_history_id: int) -> None:
        """Forget history up to `before_history_id`: an older startHistoryId then answers 404."""
        with self._lock:
            state = self._state(email)
            state.history = [r for r in state.history if r.id > before_history_id]
            state.oldest_start = max(state.oldest_start, before_history_id)

    def set_history_limit(self, records: int | None) -> None:
        """Keep at most `records` history records per mailbox (None: keep all)."""
        with self._lock:
            self._history_limit = records
            for state in self._mailboxes.values():
                self._trim_history(state)

    # -- observations and fault injection -----------------------------------------------

    @property
    def watch_calls(self) -> list[WatchCall]:
        """Every `users.watch` call answered with success."""
        with self._lock:
            return list(self._watch_calls)

    @property
    def stop_calls(self) -> list[str]:
        """The mailboxes of every `users.stop` call answered with success."""
        with self._lock:
            return list(self._stop_calls)

    @property
    def calls(self) -> list[ApiCall]:
        """Every request answered so far."""
        with self._lock:
            return list(self._calls)

    def watch_of(self, email: str) -> WatchCall | None:
        """Return the watch in force on a mailbox, or None after `stop`."""
        with self._lock:
            return self._state(email).watch

    def fail_next(
        self,
        route_name: str,
        status: int,
        reason: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
        message: str | None = None,
        email: str | None = None,
    ) -> None:
        """Answer the next `times` calls of a route with a Gmail error of this status and reason.

        Quota reasons (`rateLimitExceeded`, `userRateLimitExceeded`, `dailyLimitExceeded`,
        `quotaExceeded`) get Gmail's `usageLimits` domain; with `retry_after` (seconds) the
        answer carries a `Retry-After` header and Gmail's "Retry after <time>" message.
        """
        if route_name not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route_name!r}; routes are {', '.join(ROUTE_NAMES)}")
        with self._lock:
            self._failures.append(
                _InjectedFailure(
                    route=route_name,
                    status=status,
                    reason=reason,
                    message=message,
                    retry_after=retry_after,
                    email=email.lower() if email else None,
                    remaining=times,
                )
            )

    def accept_but_drop_connection_next_send(self, *, response: DropMode = "broken") -> None:
        """Store and deliver the next sent message, then break the answer.

        `broken`: a 200 whose body stops half-way (the client raises
        `http.client.IncompleteRead`); `error_500`: a 500 `backendError`. Either way
        the message went out, as when Gmail accepts a message and the caller crashes.
        """
        with self._lock:
            self._drop_next_sends.append(response)

    def delay_sends(self, seconds: float) -> None:
        """Hold every `messages.send` this long before taking it (a slow Gmail)."""
        with self._lock:
            self._send_delay = seconds

    # -- HTTP ---------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Return the Starlette routes of the Gmail API."""
        handlers: dict[str, Handler] = {
            "messages.send": self._send_json,
            "messages.get": self._get_message,
            "messages.list": self._list_messages,
            "messages.attachments.get": self._get_attachment,
            "history.list": self._list_history,
            "threads.get": self._get_thread,
            "getProfile": self._get_profile,
            "watch": self._watch,
            "stop": self._stop,
        }
        routes = [
            Route(
                UPLOAD_SEND_PATH,
                self._endpoint("messages.send", self._send_upload),
                methods=["POST"],
            )
        ]
        for name, (method, path) in ROUTE_PATHS.items():
            routes.append(Route("/" + path, self._endpoint(name, handlers[name]), methods=[method]))
        return routes

    def _endpoint(self, route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            if route == "messages.send" and self._send_delay:
                await asyncio.sleep(self._send_delay)
            return self._dispatch(route, request, body, handler)

        return endpoint

    def _dispatch(self, route: str, request: Request, body: bytes, handler: Handler) -> Response:
        token = bearer_token(request.headers.get("authorization"))
        record = self._oauth.authenticate(token) if token else None
        with self._lock:
            email: str | None = record.email if record else None
            try:
                if record is None:
                    raise _missing_credentials() if not token else _invalid_credentials()
                state = self._resolve_user(request.path_params["userId"], record)
                self._check_scopes(route, record, request.query_params)
                self._raise_injected_failure(route, state.email)
                call = _Call(
                    route=route,
                    mailbox=state,
                    token=record,
                    query=request.query_params,
                    path=request.path_params,
                    body=body,
                    content_type=request.headers.get("content-type", ""),
                )
                result = handler(call)
            except GmailApiError as exc:
                self._calls.append(ApiCall(route, email, exc.status))
                return exc.response()
            if isinstance(result, Response):
                dropped = isinstance(result, _DroppedConnection)
                self._calls.append(ApiCall(route, email, None if dropped else result.status_code))
                return result
            self._calls.append(ApiCall(route, email, 200))
            return JSONResponse(result, media_type="application/json; charset=UTF-8")

    # -- checks (lock held) ---------------------------------------------------------------

    def _resolve_user(self, user_id: str, token: AccessToken) -> _MailboxState:
        if user_id != "me" and user_id.lower() != token.email:
            raise GmailApiError(403, f"Delegation denied for {token.email}", reason="forbidden")
        state = self._mailboxes.get(token.email)
        if state is None:
            raise GmailApiError(
                400,
                "Mail service not enabled",
                reason="failedPrecondition",
                status_name="FAILED_PRECONDITION",
            )
        return state

    def _check_scopes(self, route: str, token: AccessToken, query: QueryParams) -> None:
        usable = set(token.scopes) & METHOD_SCOPES[route]
        if not usable:
            raise GmailApiError(
                403,
                "Request had insufficient authentication scopes.",
                reason="insufficientPermissions",
                error_message="Insufficient Permission",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                        "domain": "googleapis.com",
                        "metadata": {"service": "gmail.googleapis.com", "method": route},
                    }
                ],
            )
        if usable != {SCOPE_GMAIL_METADATA}:
            return
        fmt = query.get("format", "full")
        if route in ("messages.get", "threads.get") and fmt in ("full", "raw"):
            raise GmailApiError(
                403, f"Metadata scope doesn't allow format {fmt.upper()}", reason="forbidden"
            )
        if route == "messages.list" and query.get("q"):
            raise GmailApiError(
                403, "Metadata scope does not support 'q' parameter", reason="forbidden"
            )

    def _raise_injected_failure(self, route: str, email: str) -> None:
        for failure in self._failures:
            if failure.route != route or failure.remaining <= 0:
                continue
            if failure.email is not None and failure.email != email:
                continue
            failure.remaining -= 1
            raise _injected_error(failure, self._clock())

    # -- handlers (lock held) ---------------------------------------------------------------

    def _send_json(self, call: _Call) -> dict[str, Any] | Response:
        payload = _json_body(call.body)
        raw_value = payload.get("raw")
        if not isinstance(raw_value, str) or not raw_value:
            raise _invalid(
                "'raw' RFC822 payload message string or uploading message via /upload/* URL "
                "required"
            )
        thread_id = payload.get("threadId")
        return self._send(call, _decode_base64(raw_value), _optional_str(thread_id), "json")

    def _send_upload(self, call: _Call) -> dict[str, Any] | Response:
        upload_type = call.query.get("uploadType", "")
        if upload_type == "multipart":
            metadata, raw = _split_multipart_related(call.body, call.content_type)
            return self._send(call, raw, _optional_str(metadata.get("threadId")), "multipart")
        if upload_type == "media":
            media_type = call.content_type.split(";")[0].strip().lower()
            if not media_type.startswith("message/"):
                raise _invalid(
                    f"Media type '{media_type}' is not supported. Valid media types: [message/*]"
                )
            return self._send(call, call.body, None, "media")
        raise _invalid(
            f"uploadType={upload_type or '(none)'} is not served: the stand-in takes "
            "uploadType=multipart and uploadType=media"
        )

    def _send(
        self, call: _Call, raw: bytes, thread_id: str | None, via: SendVia
    ) -> dict[str, Any] | Response:
        state = call.mailbox
        if thread_id is not None and not _has_thread(state, thread_id):
            raise _not_found()
        raw = self._prepare_outgoing(state, raw)
        parsed = _parse(raw)
        recipients = _addresses(parsed, ("To", "Cc", "Bcc"))
        if not recipients:
            raise _invalid("Recipient address required")
        labels = ["SENT"]
        if state.email in recipients:
            labels += ["INBOX", "UNREAD"]
        stored = self._store(state, raw, labels, thread_id=thread_id, thread_by_headers=False)
        self._sent.append(SentMessage(state.email, stored.id, stored.thread_id, raw, via))
        delivered = _without_headers(raw, {"bcc"})
        for address in recipients:
            other = self._mailboxes.get(address)
            if other is not None and other is not state:
                self._store(other, delivered, ("INBOX", "UNREAD"))
        body = {"id": stored.id, "threadId": stored.thread_id, "labelIds": list(stored.label_ids)}
        if self._drop_next_sends:
            mode = self._drop_next_sends.pop(0)
            if mode == "error_500":
                raise GmailApiError(500, "Backend Error", reason="backendError")
            return _DroppedConnection(json.dumps(body).encode("utf-8"))
        return body

    def _get_message(self, call: _Call) -> dict[str, Any]:
        fmt = _format(call.query, ("minimal", "full", "raw", "metadata"))
        message = _find(call.mailbox, call.path["id"])
        return _message_resource(message, fmt, call.query.getlist("metadataHeaders"))

    def _get_thread(self, call: _Call) -> dict[str, Any]:
        fmt = _format(call.query, ("full", "metadata", "minimal"))
        thread_id = _valid_id(call.path["id"])
        messages = sorted(
            (m for m in call.mailbox.messages.values() if m.thread_id == thread_id),
            key=lambda m: (m.internal_date_ms, m.seq),
        )
        if not messages:
            raise _not_found()
        headers = call.query.getlist("metadataHeaders")
        return {
            "id": thread_id,
            "historyId": str(max(m.history_id for m in messages)),
            "messages": [_message_resource(m, fmt, headers) for m in messages],
        }

    def _get_attachment(self, call: _Call) -> dict[str, Any]:
        message = _find(call.mailbox, call.path["messageId"])
        owner, part_id = _decode_attachment_id(call.path["id"])
        if owner != message.id:
            raise _invalid("Invalid attachment token")
        for pid, part in _walk_parts(message.parsed(), ""):
            if pid == part_id and _is_attachment(part):
                data = _body_bytes(part)
                return {"size": len(data), "data": _b64url(data)}
        raise _invalid("Invalid attachment token")

    def _list_messages(self, call: _Call) -> dict[str, Any]:
        size = _page_size(call.query.get("maxResults"))
        offset = _page_offset(call.query.get("pageToken"))
        label_ids = call.query.getlist("labelIds")
        query = _compile_query(call.query.get("q", ""), now_ms=int(self._clock() * 1000))
        include_spam_trash = (
            call.query.get("includeSpamTrash", "false").lower() == "true"
            or query.reaches_spam_trash
            or bool(_SPAM_TRASH & set(label_ids))
        )
        state = call.mailbox
        newest_first = sorted(
            state.messages.values(), key=lambda m: (m.internal_date_ms, m.seq), reverse=True
        )
        matched = [
            m
            for m in newest_first
            if all(label in m.label_ids for label in label_ids)
            and (include_spam_trash or not _SPAM_TRASH & set(m.label_ids))
            and query.matches(m, state.search[m.id])
        ]
        page = matched[offset : offset + size]
        body: dict[str, Any] = {}
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + size < len(matched):
            body["nextPageToken"] = str(offset + size)
        body["resultSizeEstimate"] = len(matched)
        return body

    def _list_history(self, call: _Call) -> dict[str, Any]:
        state = call.mailbox
        start_value = call.query.get("startHistoryId")
        if not start_value:
            raise _invalid("startHistoryId is required")
        if not start_value.isdigit():
            raise _invalid("Invalid startHistoryId")
        start = int(start_value)
        if start < state.oldest_start:
            raise _not_found()
        token = call.query.get("pageToken")
        if token is not None and not token.isdigit():
            raise _invalid("Invalid pageToken")
        after = max(start, int(token)) if token is not None else start
        kinds = set(call.query.getlist("historyTypes"))
        label_id = call.query.get("labelId")
        size = _page_size(call.query.get("maxResults"))
        matched = [
            r
            for r in state.history
            if r.id > after
            and (not kinds or r.kind in kinds)
            and (label_id is None or label_id in r.message_label_ids or label_id in r.label_ids)
        ]
        body: dict[str, Any] = {}
        if matched[:size]:
            body["history"] = [_history_resource(r) for r in matched[:size]]
        if len(matched) > size:
            body["nextPageToken"] = str(matched[size - 1].id)
        body["historyId"] = str(state.history_id)
        return body

    def _get_profile(self, call: _Call) -> dict[str, Any]:
        state = call.mailbox
        return {
            "emailAddress": state.email,
            "messagesTotal": len(state.messages),
            "threadsTotal": len({m.thread_id for m in state.messages.values()}),
            "historyId": str(state.history_id),
        }

    def _watch(self, call: _Call) -> dict[str, Any]:
        payload = _json_body(call.body)
        topic = payload.get("topicName")
        if not isinstance(topic, str) or not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic):
            raise _invalid(f"Invalid topicName does not match projects/*/topics/*: {topic!r}")
        labels = payload.get("labelIds") or []
        behavior = payload.get("labelFilterBehavior") or payload.get("labelFilterAction")
        if behavior is not None and behavior not in ("include", "exclude"):
            raise _invalid(f"Invalid value at 'label_filter_behavior', {behavior!r}")
        state = call.mailbox
        expiration = int((self._clock() + WATCH_LIFETIME.total_seconds()) * 1000)
        watch = WatchCall(
            email=state.email,
            topic_name=topic,
            label_ids=tuple(str(label) for label in labels),
            label_filter_behavior=_optional_str(behavior),
            history_id=state.history_id,
            expiration_ms=expiration,
        )
        state.watch = watch
        self._watch_calls.append(watch)
        return {"historyId": str(state.history_id), "expiration": str(expiration)}

    def _stop(self, call: _Call) -> Response:
        call.mailbox.watch = None
        self._stop_calls.append(call.mailbox.email)
        return Response(status_code=204)

    # -- storage (lock held) -------------------------------------------------------------

    def _state(self, email: str) -> _MailboxState:
        state = self._mailboxes.get(email.lower())
        if state is None:
            raise KeyError(f"no mailbox for {email}; call add_mailbox({email!r}) first")
        return state

    def _store(
        self,
        state: _MailboxState,
        raw: bytes,
        labels: Sequence[str],
        *,
        thread_id: str | None = None,
        thread_by_headers: bool = True,
        internal_date_ms: int | None = None,
    ) -> StoredMessage:
        parsed = _parse(raw)
        message_id = f"{next(self._ids):x}"
        if thread_id is None and thread_by_headers:
            thread_id = _thread_by_references(state, parsed)
        stored = StoredMessage(
            id=message_id,
            thread_id=thread_id or message_id,
            label_ids=tuple(dict.fromkeys(labels)),
            internal_date_ms=internal_date_ms or int(self._clock() * 1000),
            history_id=state.history_id,
            raw=raw,
            snippet=_snippet(parsed),
            message_id_header=_first_message_id(parsed.get("Message-ID")),
            seq=next(self._seq),
        )
        state.search[message_id] = _Searchable.of(parsed)
        return self._record(state, "messageAdded", stored, stored.label_ids, ())

    def _record(
        self,
        state: _MailboxState,
        kind: HistoryType,
        message: StoredMessage,
        labels_after: tuple[str, ...],
        changed_labels: tuple[str, ...],
    ) -> StoredMessage:
        state.changes += 1
        # Gmail's history ids grow by uneven steps; never assume they are contiguous.
        state.history_id += 1 + (state.changes * 7919) % 5
        updated = replace(message, label_ids=labels_after, history_id=state.history_id)
        if kind != "messageDeleted":
            state.messages[message.id] = updated
        state.history.append(
            HistoryRecord(
                id=state.history_id,
                kind=kind,
                message_id=message.id,
                thread_id=message.thread_id,
                message_label_ids=labels_after,
                label_ids=changed_labels,
            )
        )
        self._trim_history(state)
        return updated

    def _trim_history(self, state: _MailboxState) -> None:
        limit = self._history_limit
        if limit is not None and len(state.history) > limit:
            dropped = state.history[: len(state.history) - limit]
            state.history = state.history[len(state.history) - limit :]
            state.oldest_start = max(state.oldest_start, dropped[-1].id)

    def _prepare_outgoing(self, state: _MailboxState, raw: bytes) -> bytes:
        parsed = _parse(raw)
        senders = _addresses(parsed, ("From",))
        if not senders:
            raw = _with_header(raw, "From", state.email)
        elif senders[0] not in state.send_as:
            # Gmail sends from the account (or a verified alias), whatever From says.
            name = _display_name(parsed)
            sender = formataddr((name, state.email))
            raw = _with_header(_without_headers(raw, {"from"}), "From", sender)
        if parsed.get("Message-ID") is None:
            unique = _b64url(next(self._ids).to_bytes(8, "big")).rstrip("=")
            raw = _with_header(raw, "Message-ID", f"<CAsandbox{unique}@mail.gmail.com>")
        if parsed.get("Date") is None:
            now = datetime.fromtimestamp(self._clock(), UTC)
            raw = _with_header(raw, "Date", format_datetime(now))
        return raw


# -- errors ----------------------------------------------------------------------------


def _missing_credentials() -> GmailApiError:
    return GmailApiError(
        401,
        _MISSING_AUTH_MESSAGE,
        reason="required",
        error_message="Login Required.",
        extra_error_fields={"location": "Authorization", "locationType": "header"},
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "CREDENTIALS_MISSING",
                "domain": "googleapis.com",
                "metadata": {"service": "gmail.googleapis.com"},
            }
        ],
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


def _invalid_credentials() -> GmailApiError:
    return GmailApiError(
        401,
        _AUTH_ERROR_MESSAGE,
        reason="authError",
        error_message="Invalid Credentials",
        extra_error_fields={"location": "Authorization", "locationType": "header"},
        headers={
            "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        },
    )


def _injected_error(failure: _InjectedFailure, now: float) -> GmailApiError:
    domain, default_message = _REASON_DEFAULTS.get(failure.reason, ("global", failure.reason))
    message = failure.message or default_message
    if failure.status == 429 and failure.reason == "rateLimitExceeded" and not failure.message:
        message = "User-rate limit exceeded."
    headers: dict[str, str] = {}
    if failure.retry_after is not None:
        headers["Retry-After"] = str(failure.retry_after)
        if domain == "usageLimits":
            at = datetime.fromtimestamp(now + failure.retry_after, UTC)
            message += "  Retry after " + at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            )
    return GmailApiError(
        failure.status, message, reason=failure.reason, domain=domain, headers=headers
    )


class _DroppedConnection(Response):
    """Start a 200 answer, send half its body and stop: the client sees a broken response."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content=content, status_code=200, media_type="application/json")
        self._content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json; charset=UTF-8"),
                    (b"content-length", str(len(self._content)).encode("ascii")),
                ],
            }
        )
        half = self._content[: len(self._content) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})


# -- request parsing ---------------------------------------------------------------------


def _json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _invalid(f"Invalid JSON payload received. {exc}") from None
    if not isinstance(data, dict):
        raise _invalid("Invalid JSON payload received. Expected an object.")
    return data


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _decode_base64(value: str) -> bytes:
    text = value.strip().replace("+", "-").replace("/", "_")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _invalid(f"Invalid value for ByteString: {value[:40]}") from None


def _split_multipart_related(body: bytes, content_type: str) -> tuple[dict[str, Any], bytes]:
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/related" or not isinstance(boundary, str):
        raise _invalid("uploadType=multipart needs a multipart/related body with a boundary")
    chunks = body.split(b"--" + boundary.encode("ascii"))
    parts: list[tuple[bytes, bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.removeprefix(b"\n")
        chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk.removesuffix(b"\n")
        head, _, content = _split_head(chunk)
        parts.append((head, content))
    if len(parts) != 2:
        raise _invalid("uploadType=multipart needs two parts: JSON metadata, then the message")
    return _json_body(parts[0][1]), parts[1][1]


def _format(query: QueryParams, allowed: Sequence[str]) -> str:
    fmt = query.get("format", "full")
    if fmt not in allowed:
        raise _invalid(f"Invalid value at 'format', \"{fmt}\"")
    return fmt


def _valid_id(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{1,20}", value):
        raise _invalid("Invalid id value")
    return value


def _find(state: _MailboxState, message_id: str) -> StoredMessage:
    message = state.messages.get(_valid_id(message_id))
    if message is None:
        raise _not_found()
    return message


def _has_thread(state: _MailboxState, thread_id: str) -> bool:
    return any(m.thread_id == thread_id for m in state.messages.values())


def _page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if not value.isdigit() or int(value) == 0:
        raise _invalid(f"Invalid maxResults: {value}")
    return min(int(value), MAX_PAGE_SIZE)


def _page_offset(token: str | None) -> int:
    if token is None:
        return 0
    if not token.isdigit():
        raise _invalid("Invalid pageToken")
    return int(token)


# -- RFC 822 ---------------------------------------------------------------------------------


def _parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage
    return message


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _split_head(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """Split RFC 822 bytes into header block, blank-line separator and body."""
    for newline in (b"\r\n", b"\n"):
        if raw.startswith(newline):
            return b"", newline, raw[len(newline) :]
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    if not ends:
        return raw, b"", b""
    end = min(ends)
    separator = b"\r\n\r\n" if raw[end : end + 4] == b"\r\n\r\n" else b"\n\n"
    return raw[:end], separator, raw[end + len(separator) :]


def _newline(raw: bytes) -> bytes:
    first = raw.find(b"\n")
    return b"\r\n" if first > 0 and raw[first - 1 : first] == b"\r" else b"\n"


def _with_header(raw: bytes, name: str, value: str) -> bytes:
    return f"{name}: {value}".encode() + _newline(raw) + raw


def _without_headers(raw: bytes, names: set[str]) -> bytes:
    head, separator, body = _split_head(raw)
    newline = _newline(raw)
    kept: list[bytes] = []
    dropping = False
    for line in head.split(newline):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().decode("latin-1").lower() in names
        if not dropping:
            kept.append(line)
    return newline.join(kept) + separator + body


def _addresses(message: EmailMessage, names: Sequence[str]) -> list[str]:
    found: list[str] = []
    for name in names:
        for header in message.get_all(name, []):
            for address in getattr(header, "addresses", ()):
                spec = address.addr_spec.lower()
                if spec and spec not in found:
                    found.append(spec)
    return found


def _display_name(message: EmailMessage) -> str:
    header = message.get("From")
    addresses = getattr(header, "addresses", ())
    return str(addresses[0].display_name) if addresses else ""


_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def _message_ids(value: object) -> list[str]:
    text = str(value or "")
    found = _MESSAGE_ID.findall(text)
    if not found and text.strip():
        found = [text.strip().strip("<>")]
    return found


def _first_message_id(value: object) -> str | None:
    found = _message_ids(value)
    return found[0] if found else None


def _thread_by_references(state: _MailboxState, message: EmailMessage) -> str | None:
    wanted = _message_ids(message.get("In-Reply-To")) + list(
        reversed(_message_ids(message.get("References")))
    )
    for reference in wanted:
        for stored in sorted(state.messages.values(), key=lambda m: m.seq):
            if stored.message_id_header == reference:
                return stored.thread_id
    return None


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    if part.get_content_type() == "message/rfc822" or part.get_content_maintype() == "multipart":
        return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    return []


def _child_id(parent: str, index: int) -> str:
    return str(index) if parent == "" else f"{parent}.{index}"


def _walk_parts(part: Message, part_id: str) -> Iterator[tuple[str, Message]]:
    yield part_id, part
    for index, child in enumerate(_children(part)):
        yield from _walk_parts(child, _child_id(part_id, index))


def _is_attachment(part: Message) -> bool:
    return (
        bool(part.get_filename())
        or part.get_content_disposition() == "attachment"
        or part.get_content_type() == "message/rfc822"
    )


def _body_bytes(part: Message) -> bytes:
    if not part.is_multipart():
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""
    # message/* containers: what follows the part's own headers.
    return _split_head(part.as_bytes())[2]


def _attachment_id(message_id: str, part_id: str) -> str:
    return "ANGjdJ" + base64.urlsafe_b64encode(f"{message_id}.{part_id}".encode()).decode().rstrip(
        "="
    )


def _decode_attachment_id(value: str) -> tuple[str, str]:
    if not value.startswith("ANGjdJ"):
        raise _invalid("Invalid attachment token")
    text = value[6:]
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise _invalid("Invalid attachment token") from None
    message_id, _, part_id = decoded.partition(".")
    return message_id, part_id


def _headers(part: Message) -> list[dict[str, str]]:
    return [{"name": name, "value": str(value)} for name, value in part.items()]


def _payload(part: Message, part_id: str, message_id: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": _headers(part),
    }
    children = _children(part)
    if part.get_content_maintype() == "multipart":
        node["body"] = {"size": 0}
    elif _is_attachment(part):
        node["body"] = {
            "attachmentId": _attachment_id(message_id, part_id),
            "size": len(_body_bytes(part)),
        }
    else:
        data = _body_bytes(part)
        node["body"] = {"size": len(data), "data": _b64url(data)} if data else {"size": 0}
    if children:
        node["parts"] = [
            _payload(child, _child_id(part_id, i), message_id) for i, child in enumerate(children)
        ]
    return node


def _message_resource(
    message: StoredMessage, fmt: str, metadata_headers: Sequence[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": message.id, "threadId": message.thread_id}
    if message.label_ids:
        body["labelIds"] = list(message.label_ids)
    body["snippet"] = message.snippet
    if fmt == "full":
        body["payload"] = _payload(message.parsed(), "", message.id)
    elif fmt == "metadata":
        parsed = message.parsed()
        wanted = {h.lower() for h in metadata_headers}
        headers = [h for h in _headers(parsed) if not wanted or h["name"].lower() in wanted]
        body["payload"] = {"mimeType": parsed.get_content_type(), "headers": headers}
    body["sizeEstimate"] = message.size_estimate
    body["historyId"] = str(message.history_id)
    body["internalDate"] = str(message.internal_date_ms)
    if fmt == "raw":
        body["raw"] = _b64url(message.raw)
    return body


def _history_resource(record: HistoryRecord) -> dict[str, Any]:
    brief = {"id": record.message_id, "threadId": record.thread_id}
    labelled = {**brief, "labelIds": list(record.message_label_ids)}
    body: dict[str, Any] = {"id": str(record.id), "messages": [brief]}
    if record.kind == "messageAdded":
        body["messagesAdded"] = [{"message": labelled}]
    elif record.kind == "messageDeleted":
        body["messagesDeleted"] = [{"message": brief}]
    elif record.kind == "labelAdded":
        body["labelsAdded"] = [{"message": labelled, "labelIds": list(record.label_ids)}]
    else:
        body["labelsRemoved"] = [{"message": labelled, "labelIds": list(record.label_ids)}]
    return body


def _text(part: Message) -> str:
    data = _body_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)


def _plain_and_html(message: EmailMessage) -> tuple[str | None, str | None]:
    plain = rich = None
    for _, part in _walk_parts(message, ""):
        if part.is_multipart() or _is_attachment(part):
            continue
        if plain is None and part.get_content_type() == "text/plain":
            plain = _text(part)
        elif rich is None and part.get_content_type() == "text/html":
            rich = html.unescape(_TAG.sub(" ", _text(part)))
    return plain, rich


def _snippet(message: EmailMessage) -> str:
    plain, rich = _plain_and_html(message)
    text = " ".join((plain if plain is not None else rich or "").split())[:SNIPPET_LENGTH]
    # Gmail's snippets are HTML-escaped ("it&#39;s").
    return html.escape(text, quote=True).replace("&#x27;", "&#39;")


# -- search ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Searchable:
    sender: str
    recipients: str
    cc: str
    bcc: str
    subject: str
    text: str
    has_attachment: bool

    @classmethod
    def of(cls, message: EmailMessage) -> _Searchable:
        def joined(name: str) -> str:
            return " ".join(str(h) for h in message.get_all(name, [])).lower()

        plain, rich = _plain_and_html(message)
        subject = joined("Subject")
        sender = joined("From")
        to = joined("To")
        cc = joined("Cc")
        bcc = joined("Bcc")
        body = " ".join(x for x in (plain, rich) if x).lower()
        return cls(
            sender=sender,
            recipients=" ".join((to, cc, bcc)),
            cc=cc,
            bcc=bcc,
            subject=subject,
            text=" ".join((subject, sender, to, cc, body)),
            has_attachment=any(_is_attachment(p) for _, p in _walk_parts(message, "")),
        )


Predicate = Callable[[StoredMessage, _Searchable], bool]

# Gmail operators the stand-in does not evaluate: a query using one answers 400 rather
# than silently matching something else.
_UNSUPPORTED_OPERATORS: Final = frozenset(
    {
        "list",
        "filename",
        "deliveredto",
        "category",
        "size",
        "larger",
        "smaller",
        "older",
        "newer",
        "around",
    }
)
_SUPPORTED_OPERATORS: Final = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "rfc822msgid",
        "after",
        "before",
        "newer_than",
        "older_than",
        "in",
        "label",
        "is",
        "has",
    }
)
_TOKEN = re.compile(r'\s*(?P<neg>-)?(?:(?P<op>[A-Za-z0-9_]+):)?(?P<value>"[^"]*"|[^\s"]+)')
_UNITS: Final = {"d": 86_400_000, "m": 30 * 86_400_000, "y": 365 * 86_400_000}
_IN_LABELS: Final = {
    "inbox": "INBOX",
    "sent": "SENT",
    "spam": "SPAM",
    "trash": "TRASH",
    "draft": "DRAFT",
    "drafts": "DRAFT",
    "starred": "STARRED",
    "important": "IMPORTANT",
    "chats": "CHAT",
}
_IS_LABELS: Final = {"unread": "UNREAD", "starred": "STARRED", "important": "IMPORTANT"}


@dataclass(frozen=True)
class _Query:
    clauses: tuple[Predicate, ...]
    reaches_spam_trash: bool

    def matches(self, message: StoredMessage, searchable: _Searchable) -> bool:
        return all(clause(message, searchable) for clause in self.clauses)


def _compile_query(q: str, *, now_ms: int) -> _Query:
    clauses: list[Predicate] = []
    reaches_spam_trash = False
    pending_or = False
    position = 0
    while position < len(q):
        if not q[position:].strip():
            break
        match = _TOKEN.match(q, position)
        if match is None or match.group("value")[0] in "({":
            raise _invalid(f"The Gmail stand-in does not parse this query: {q!r}")
        position = match.end()
        op = (match.group("op") or "").lower()
        value = match.group("value").strip('"')
        if not match.group("op") and not match.group("neg") and value == "OR":
            if not clauses:
                raise _invalid(f"The Gmail stand-in does not parse this query: {q!r}")
            pending_or = True
            continue
        if op in _UNSUPPORTED_OPERATORS:
            raise _invalid(f"The Gmail stand-in does not support the search operator {op}:")
        if op and op not in _SUPPORTED_OPERATORS:
            value, op = f"{match.group('op')}:{value}", ""
        if op == "in" and value.lower() in ("anywhere", "spam", "trash"):
            reaches_spam_trash = True
        clause = _clause(op, value, now_ms=now_ms)
        if match.group("neg"):
            clause = _negated(clause)
        if pending_or:
            clauses[-1] = _either(clauses[-1], clause)
            pending_or = False
        else:
            clauses.append(clause)
    return _Query(tuple(clauses), reaches_spam_trash)


def _negated(clause: Predicate) -> Predicate:
    return lambda m, s: not clause(m, s)


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda m, s: left(m, s) or right(m, s)


def _clause(op: str, value: str, *, now_ms: int) -> Predicate:
    needle = value.lower()
    if op == "":
        return lambda m, s: needle in s.text
    if op == "from":
        return lambda m, s: needle in s.sender
    if op == "to":
        return lambda m, s: needle in s.recipients
    if op == "cc":
        return lambda m, s: needle in s.cc
    if op == "bcc":
        return lambda m, s: needle in s.bcc
    if op == "subject":
        return lambda m, s: needle in s.subject
    if op == "rfc822msgid":
        wanted = value.strip().strip("<>").casefold()
        return lambda m, s: (m.message_id_header or "").casefold() == wanted
    if op in ("after", "before"):
        at = _query_date_ms(value)
        if op == "after":
            return lambda m, s: m.internal_date_ms >= at
        return lambda m, s: m.internal_date_ms < at
    if op in ("newer_than", "older_than"):
        match = re.fullmatch(r"(\d+)([dmy])", needle)
        if match is None:
            raise _invalid(f"Invalid {op} value: {value}")
        edge = now_ms - int(match.group(1)) * _UNITS[match.group(2)]
        if op == "newer_than":
            return lambda m, s: m.internal_date_ms > edge
        return lambda m, s: m.internal_date_ms < edge
    if op == "in":
        if needle == "anywhere":
            return lambda m, s: True
        label = _IN_LABELS.get(needle, value.upper())
        return lambda m, s: label in m.label_ids
    if op == "label":
        wanted_label = needle.replace("-", " ")
        return lambda m, s: any(
            label.lower().replace("-", " ") == wanted_label for label in m.label_ids
        )
    if op == "is":
        if needle == "read":
            return lambda m, s: "UNREAD" not in m.label_ids
        if needle not in _IS_LABELS:
            raise _invalid(f"The Gmail stand-in does not support is:{value}")
        flag = _IS_LABELS[needle]
        return lambda m, s: flag in m.label_ids
    if needle != "attachment":
        raise _invalid(f"The Gmail stand-in does not support has:{value}")
    return lambda m, s: s.has_attachment


def _query_date_ms(value: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    match = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", value) or re.fullmatch(
        r"(\d{1,2})/(\d{1,2})/(\d{4})", value
    )
    if match is None:
        raise _invalid(f"Invalid date in query: {value}")
    parts = [int(p) for p in match.groups()]
    year, month, day = parts if parts[0] > 31 else (parts[2], parts[0], parts[1])
    midnight = datetime(year, month, day, tzinfo=ZoneInfo(_QUERY_TIMEZONE))
    return int(midnight.timestamp() * 1000)
