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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from domain.clock import Clock
from domain.errors import ExternalServiceError, InvalidInput
from domain.inbound import PushNotice
from handlers.api.errors import error_body
from integrations.pubsub_auth import PushAuthError, PushVerifier
from storage.inbound import SqlInboundStore

log = logging.getLogger(__name__)

PUSH_PATH = "/api/integrations/gmail/push"

router = APIRouter(tags=["gmail"])


@dataclass
class GmailPushDeps:
    """What the push endpoint needs; `verifier` is None when Pub/Sub is not configured."""

    store: SqlInboundStore
    clock: Clock
    verifier: PushVerifier | None
    on_stored: Callable[[], None] = lambda: None


def parse_push_body(body: bytes) -> PushNotice:
    """Decode a Pub/Sub push body carrying a Gmail notification, or raise InvalidInput."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("push body is not JSON") from None
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
    if isinstance(history_id, bool) or history_id <= 0:
        raise InvalidInput("push data has an invalid 'historyId'", field="message.data")
    return PushNotice(
        message_id=message_id.strip(),
        email=email.strip().lower(),
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


def _refuse(status: int, code: str, message: str) -> JSONResponse:
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
        log.warning("gmail push refused", extra={"status": exc.status, "reason": exc.message})
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=headers)
    except ExternalServiceError as exc:
        # Pub/Sub retries a 503; nothing is lost while Google's certificates are unreachable.
        return _refuse(503, exc.code, exc.message)
    try:
        notice = parse_push_body(body)
    except InvalidInput as exc:
        return _refuse(400, "invalid_push", exc.message)
    stored = deps.store.store_push(notice, now=deps.clock.now())
    if stored is None:
        return _refuse(404, "unknown_mailbox", f"no Gmail account is connected for {notice.email}")
    if stored:
        deps.on_stored()
    else:
        log.info("gmail push redelivered", extra={"pubsub_message_id": notice.message_id})
    return Response(status_code=204)


@router.post(
    PUSH_PATH,
    status_code=204,
    responses={
        400: {"description": "The body is not a Gmail push"},
        401: {"description": "Missing, forged or expired push token"},
        403: {"description": "A token for another audience or service account"},
        404: {"description": "No connected mailbox for the address"},
    },
)
async def receive_gmail_push(request: Request) -> Response:
    """Store a Gmail push notification and answer at once; the sync runs in the background."""
    deps: GmailPushDeps | None = getattr(request.app.state, "gmail_push", None)
    if deps is None:
        return _refuse(503, "not_configured", "Gmail push is not wired in this app")
    body = await request.body()
    authorization = request.headers.get("authorization")
    # Token checks and the database write are blocking: keep them off the event loop.
    return await run_in_threadpool(handle_push, deps, authorization, body)
