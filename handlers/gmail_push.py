"""`POST /api/integrations/gmail/push`: Gmail's Pub/Sub push, stored, then answered 204.

The handler checks the push's OIDC token, decodes the Pub/Sub envelope, stores one
notification row per connected mailbox of the address (keyed by the Pub/Sub message id,
so a redelivery stores nothing), commits, wakes the background processor and answers
204. The history sync runs off the request path. Refusals are 4xx with a reason in the
API's JSON error shape; they are logged with the reason, never with the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from domain.clock import Clock
from domain.errors import ExternalServiceError, InvalidInput
from domain.inbound import PushNotice
from handlers.api.errors import error_body
from integrations import metrics
from integrations.pubsub_auth import PushAuthError, PushVerifier
from storage.inbound import SqlInboundStore

log = logging.getLogger(__name__)

PUSH_PATH = "/api/integrations/gmail/push"
# Pub/Sub message ids and mailbox addresses: no spaces, no control characters.
_PRINTABLE = re.compile(r"[^\s\x00-\x1f\x7f]+")

router = APIRouter(tags=["gmail"])


class _Waiting:
    """One push waiting for the transaction that stores it."""

    def __init__(self, notice: PushNotice) -> None:
        self.notice = notice
        self.done = threading.Event()
        self.lead = False  # asked to write the next batch itself
        self.stored: int | None = None
        self.error: BaseException | None = None

    def outcome(self) -> int | None:
        if self.error is not None:
            raise self.error
        return self.stored


class PushWriter:
    """Stores pushes that arrive together in one transaction (group commit).

    A push must be committed before it is answered, and a commit waits for the disk.
    Requests that arrive while a batch is being written queue up; when it is committed,
    the first of them writes the next batch for all of them. One request never writes
    more than one batch, so no answer waits on a stream of others.
    """

    def __init__(self, store: SqlInboundStore, clock: Clock, *, max_batch: int = 200) -> None:
        self._store = store
        self._clock = clock
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._writing = False

    def store(self, notice: PushNotice) -> int | None:
        """Store a push durably; return how many rows are new, None for an unknown address."""
        waiting = _Waiting(notice)
        with self._lock:
            self._queue.append(waiting)
            leads = not self._writing
            self._writing = True
        if not leads:
            waiting.done.wait()
            if not waiting.lead:
                return waiting.outcome()
        self._write_batch()
        return waiting.outcome()

    def _write_batch(self) -> None:
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            outcomes = self._store.store_pushes([w.notice for w in batch], now=self._clock.now())
            for waiting, stored in zip(batch, outcomes, strict=True):
                waiting.stored = stored
        except Exception:  # noqa: BLE001 - one push the database refuses must not fail the rest
            for waiting in batch:
                try:
                    [waiting.stored] = self._store.store_pushes(
                        [waiting.notice], now=self._clock.now()
                    )
                except Exception as exc:  # noqa: BLE001 - answered 500, Pub/Sub retries it
                    waiting.error = exc
        with self._lock:
            following = self._queue[0] if self._queue else None
            if following is None:
                self._writing = False
            else:
                following.lead = True
        for waiting in batch:
            waiting.done.set()
        if following is not None:
            following.done.set()


@dataclass
class GmailPushDeps:
    """What the push endpoint needs; `verifier` is None when Pub/Sub is not configured."""

    store: SqlInboundStore
    clock: Clock
    verifier: PushVerifier | None
    on_stored: Callable[[], None] = lambda: None
    writer: PushWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = PushWriter(self.store, self.clock)


def parse_push_body(body: bytes) -> PushNotice:
    """Decode a Pub/Sub push body carrying a Gmail notification, or raise InvalidInput."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("push body is not JSON") from None
    except RecursionError:
        raise InvalidInput("push body is nested too deep") from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise InvalidInput("push body has no 'message' object", field="message")
    data = message.get("data")
    if not isinstance(data, str) or not data.strip():
        raise InvalidInput("push message has no 'data'", field="message.data")
    message_id = message.get("messageId") or message.get("message_id")
    if not isinstance(message_id, str) or not message_id.strip():
        raise InvalidInput("push message has no 'messageId'", field="message.messageId")
    notification = _decode_data(data)
    email = notification.get("emailAddress")
    history_id = notification.get("historyId")
    if isinstance(history_id, str) and history_id.isdigit():
        history_id = int(history_id)
    if not isinstance(email, str) or "@" not in email or not isinstance(history_id, int):
        raise InvalidInput(
            "push data is not a Gmail notification: it needs 'emailAddress' and 'historyId'",
            field="message.data",
        )
    if isinstance(history_id, bool) or not 0 < history_id < 2**63:
        raise InvalidInput("push data has an invalid 'historyId'", field="message.data")
    message_id = message_id.strip()
    email = email.strip().lower()
    if not _PRINTABLE.fullmatch(message_id) or len(message_id) > 128:
        raise InvalidInput("push message has an invalid 'messageId'", field="message.messageId")
    if not _PRINTABLE.fullmatch(email) or len(email) > 320:
        raise InvalidInput("push data has an invalid 'emailAddress'", field="message.data")
    return PushNotice(
        message_id=message_id,
        email=email,
        history_id=history_id,
        published_at=_published_at(message.get("publishTime") or message.get("publish_time")),
    )


def _decode_data(data: str) -> dict[str, Any]:
    text = data.strip()
    padded = text + "=" * (-len(text) % 4)
    raw: bytes | None = None
    for candidate in (padded, padded.replace("-", "+").replace("_", "/")):
        try:
            raw = base64.b64decode(candidate, validate=True)
            break
        except (binascii.Error, ValueError):
            continue
    if raw is None:
        raise InvalidInput("push message 'data' is not valid base64", field="message.data")
    try:
        decoded = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("push message 'data' is not JSON", field="message.data") from None
    except RecursionError:
        raise InvalidInput("push message 'data' is nested too deep", field="message.data") from None
    if not isinstance(decoded, dict):
        raise InvalidInput("push message 'data' is not a JSON object", field="message.data")
    return decoded


def _published_at(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        published = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return published if published.tzinfo is not None else None


# `salesbot_gmail_pushes_total`'s outcome of a refusal, by its status.
_REFUSED = {400: "invalid", 404: "unknown_mailbox", 503: "unavailable"}


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    metrics.GMAIL_PUSHES.labels(_REFUSED.get(status, "refused")).inc()
    log.warning("gmail push refused", extra={"status": status, "reason": message})
    return JSONResponse(error_body(code, message), status)


def handle_push(deps: GmailPushDeps, authorization: str | None, body: bytes) -> Response:
    """Check, decode and store one push; return the answer for Pub/Sub."""
    if deps.verifier is None:
        return _refuse(
            503,
            "not_configured",
            "Gmail push is not configured: set PUBSUB_AUDIENCE and PUBSUB_SERVICE_ACCOUNT",
        )
    try:
        deps.verifier.verify(authorization)
    except PushAuthError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        metrics.GMAIL_PUSHES.labels("unauthorized").inc()
        log.warning("gmail push refused", extra={"status": exc.status, "reason": exc.message})
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=headers)
    except ExternalServiceError as exc:
        # Pub/Sub retries a 503; nothing is lost while Google's certificates are unreachable.
        return _refuse(503, exc.code, exc.message)
    try:
        notice = parse_push_body(body)
    except InvalidInput as exc:
        return _refuse(400, "invalid_push", exc.message)
    try:
        stored = deps.writer.store(notice)
    except Exception:
        metrics.GMAIL_PUSHES.labels("error").inc()
        raise
    if stored is None:
        return _refuse(404, "unknown_mailbox", f"no Gmail account is connected for {notice.email}")
    metrics.GMAIL_PUSHES.labels("stored" if stored else "redelivered").inc()
    if stored:
        deps.on_stored()
    else:
        log.info("gmail push redelivered", extra={"pubsub_message_id": notice.message_id})
    return Response(status_code=204)


async def receive_gmail_push(request: Request) -> Response:
    """Store a Gmail push notification and answer at once; the sync runs in the background."""
    deps: GmailPushDeps | None = getattr(request.app.state, "gmail_push", None)
    if deps is None:
        return _refuse(503, "not_configured", "Gmail push is not wired in this app")
    body = await request.body()
    authorization = request.headers.get("authorization")
    # Token checks and the database write are blocking: keep them off the event loop.
    return await run_in_threadpool(handle_push, deps, authorization, body)


# A plain Starlette route, not a FastAPI path operation: FastAPI's per-request work
# (dependency solving, response handling) took about a sixth of a push's CPU, and this
# endpoint uses none of it. Pub/Sub reads no OpenAPI, so the route is not listed there.
# Answers: 204 stored (or a redelivery); 400 not a Gmail push; 401 a missing, forged or
# expired token; 403 a token for another audience or service account; 404 no connected
# mailbox for the address; 503 push not configured, or Google's certificates unreachable.
router.add_route(PUSH_PATH, receive_gmail_push, methods=["POST"])
