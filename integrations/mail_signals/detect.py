"""The detector pass: one raw inbound message in, one `Detection` out, never an exception.

Order matters and is fixed: complaints (an ARF report is also a multipart/report), then
bounces and delivery reports (many bounces carry `Auto-Submitted`, so they must be caught
before the auto-reply check), read receipts, challenge-response requests, auto-replies and
out-of-office; only a message none of these claims can be an unsubscribe request. Whether
the sender is one of our reps is answered for every message.

Own rule: blank lines before the header block (mbox exports, pasted messages) are skipped,
since the parser would otherwise read the whole message as a body without headers.
"""

from __future__ import annotations

import logging

from domain.detection import Detection, DetectionContext, MessageKind, clip_notes
from domain.email_message import ParsedEmail
from integrations.gmail.mime import parse_raw
from integrations.mail_signals._view import MAX_TEXT_CHARS, MailView
from integrations.mail_signals.autoreplies import detect_auto_reply, is_challenge, is_read_receipt
from integrations.mail_signals.bounces import detect_bounce, detect_complaint
from integrations.mail_signals.unsubscribe import detect_unsubscribe

log = logging.getLogger(__name__)


def detect_message(
    raw: bytes, *, context: DetectionContext, parsed: ParsedEmail | None = None
) -> Detection:
    """Run every detector on one RFC 5322 message; a malformed one yields a note, not an error.

    `parsed` is the message as `integrations.gmail.mime.parse_raw` already parsed it, when
    the caller has it; otherwise it is parsed here.
    """
    try:
        if parsed is None:
            parsed = parse_raw(raw, max_body_chars=MAX_TEXT_CHARS)
        if not parsed.from_email and not parsed.subject and raw[:1].isspace():
            # Exports (mbox, copy-paste) sometimes put blank lines before the header block,
            # which then reads as an empty header and a body; the headers start after them.
            raw = raw.lstrip(b" \t\r\n")
            parsed = parse_raw(raw, max_body_chars=MAX_TEXT_CHARS)
        view = MailView(raw=raw, parsed=parsed)
        detection = _detect(view, context)
    except Exception as exc:  # never lose a message to a detector bug: nothing detected, noted
        log.warning("detectors failed", extra={"error": type(exc).__name__})
        return Detection(notes=(f"detectors failed ({type(exc).__name__})",))
    return detection


def _detect(view: MailView, context: DetectionContext) -> Detection:
    from_own_rep = context.is_rep(view.parsed.from_email)
    kind = MessageKind.ORDINARY
    bounce = auto_reply = unsubscribe = None
    complaint = detect_complaint(view)
    found_bounce = None if complaint is not None else detect_bounce(view)
    if complaint is not None:
        kind = MessageKind.COMPLAINT
    elif found_bounce is not None:
        kind, bounce = found_bounce
    elif is_read_receipt(view):
        kind = MessageKind.READ_RECEIPT
    elif is_challenge(view):
        kind = MessageKind.CHALLENGE_RESPONSE
    elif (found_auto := detect_auto_reply(view)) is not None:
        kind, auto_reply = found_auto
    elif not from_own_rep:
        unsubscribe = detect_unsubscribe(view, context)
    return Detection(
        kind=kind,
        bounce=bounce,
        complaint=complaint,
        auto_reply=auto_reply,
        unsubscribe=unsubscribe,
        from_own_rep=from_own_rep,
        notes=clip_notes([*view.parsed.defects[:5], *view.notes]),
    )
