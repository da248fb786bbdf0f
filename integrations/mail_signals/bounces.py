"""Bounces, delivery reports and spam complaints.

Where the libraries answer, they decide: the RFC 3464 fields of a `message/delivery-status`
part (read by integrations/gmail/mime.py) give each recipient's `Action` and `Status`, and
flufl.bounce (GNU Mailman's detectors, `all_failures`) finds the failed recipients of the
MTA formats it knows. Our own rules, each marked "own rule" below, fill the gaps the
corpus in tests/corpus/bounces showed (`python -m bench detectors` prints the figures):

1. whether a message is a bounce at all: a DSN, `X-Failed-Recipients`, or a mail-system
   sender (MAILER-DAEMON, postmaster, "Mail Delivery System", null Return-Path) together
   with a bounce subject or failure wording, in English, German, French and Spanish;
   flufl.bounce is only asked about such messages, since some of its heuristics match
   ordinary text;
2. what flufl.bounce returns is checked: anything that is not a plausible address (a
   Message-ID, a line of JSON), our own sender address, or a mail-system address that was
   not a recipient of the original is dropped;
3. failed recipients from the bounce's own text when neither a DSN, `X-Failed-Recipients`
   nor flufl.bounce names one: DSN fields written into the text, else the addresses of the
   failure report (the part above the copy of the original) that are not the bounce's own
   parties, a sender line, a URL or a display name, else `RCPT TO:` lines, else the only
   `To:` of the copy;
4. hard or soft for recipients without a DSN `Status`: the enhanced status code (RFC 3463)
   or SMTP reply code written next to the address, else anywhere in the failure report,
   and wording for expired retries ("retry timeout exceeded", "Cannot send message for 5
   days": soft) and for delays ("will keep trying": delayed); a failure with no code and
   no such wording is taken as hard, as the MTAs that write no code mean a final failure;
5. complaints in Microsoft's own (non-ARF) feedback format, recognised by its
   `X-HmXmrOriginalRecipient` header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.message import Message
from typing import Final

from flufl.bounce import all_failures

from domain.detection import Bounce, BounceSeverity, Complaint, FailedRecipient, MessageKind
from domain.email_message import DeliveryStatusRecipient
from integrations.mail_signals._view import (
    MAX_LINE_CHARS,
    MailView,
    find_addresses,
    normalize_address,
    plausible_address,
)

# --- is it a bounce? ---------------------------------------------------------------------------

_MAILER_LOCALS: Final = frozenset(
    {
        "mailer-daemon",
        "mailerdaemon",
        "mailer_daemon",
        "mail-daemon",
        "maildaemon",
        "postmaster",
        "post_master",
        "mdaemon",
        "mail.delivery.system",
        "mail-delivery-system",
        "mailer",
        "bounce",
        "bounces",
        "sysadmin",
        "nobody",
    }
)
_MAILER_NAMES = re.compile(
    r"\b(?:mail(?:er)?[ -]?daemon|postmaster|mail delivery (?:system|subsystem|service)"
    r"|mail (?:administrator|system)|delivery (?:subsystem|system|status)|ndr administrator"
    r"|internet mail delivery|e-mail interconnect|mail deliver system|mta|message delivery)\b",
    re.IGNORECASE,
)

# Subjects bounces carry, at the start (a person's "Fwd: Undeliverable" is not one).
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:"
    r"undeliver(?:able|ed)|undelivered mail|non-?deliver(?:able|y)|not delivered"
    r"|(?:mail|message|e-?mail)? ?delivery (?:failure|failed|problem|notification|status)"
    r"|delivery (?:has )?failed|returned mail|mail (?:system error|delivery failed|not delivered)"
    r"|failure notice|delivery status notification|delayed mail|warning: could not send"
    r"|message (?:not delivered|delivery has failed|could not be delivered)"
    r"|there was an error sending|mail could not be delivered|could not send message"
    r"|unable to deliver|rejected:|error sending message|returned to sender|mail failure"
    r"|warning: message .{0,60} delayed"
    r"|unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|unzustellbare"
    r"|fehler bei der zustellung|benachrichtigung zum übermittlungsstatus"
    r"|non remis|non distribuable|échec de (?:la )?(?:remise|distribution)|message non délivré"
    r"|notification d'état de (?:la )?remise|rapport de non-remise|courrier non délivrable"
    r"|no se (?:puede|pudo) entregar|imposible entregar|no entregad[oa]|error de entrega"
    r"|notificación de estado de (?:la )?entrega|mensaje no entregado|correo devuelto"
    r"|メールエラー|配信エラー|不達"
    r")",
    re.IGNORECASE,
)

# Wording of failure reports (English, German, French, Spanish), searched in the report part.
_FAILURE_WORDS = re.compile(
    r"could ?n[o']t be (?:delivered|reached)|was not delivered|not be delivered"
    r"|delivery (?:to the following recipients? )?(?:has )?failed|undeliverable"
    r"|permanent (?:fatal )?errors?|permanent failure|fatal errors?"
    r"|user unknown|unknown user|no such (?:user|mailbox|recipient)"
    r"|mailbox (?:unavailable|is full|full)"
    r"|over quota|quota exceeded|does not exist|address rejected|recipients? (?:address )?rejected"
    r"|recipient not found|unable to deliver|failed to deliver|returned to sender"
    r"|following (?:address(?:es)?|recipients?)(?:\(s\))? (?:failed|had|were|returned|could)"
    r"|error (?:delivering|sending) your (?:mail|message)|rejected by (?:a |the )?remote"
    r"|host unknown|domain not found|no valid recipients|retry timeout exceeded"
    r"|(?:has been|is) delayed|will (?:continue to )?retry|could not deliver"
    r"|wasn't able to deliver|not able to deliver|invalid (?:user|recipient|address)"
    r"|malformed (?:recipient )?address|incorrectly constructed|not yet been delivered"
    r"|konnte nicht zugestellt werden|nicht zugestellt|unzustellbar"
    r"|no se (?:ha )?pudo entregar|no (?:ha )?podido ser entregado|no se ha podido entregar"
    r"|n'a pas pu être (?:remis|distribué|délivré)|échec de (?:la )?remise|non remis"
    r"|送信できませんでした|エラー",
    re.IGNORECASE,
)

# Where the failure report ends and the copy of the original message begins.
_ORIGINAL_MARKER = re.compile(
    r"^[ \t>-]*(?:"
    r"-+ ?(?:original message|returned message|this is a copy of the message|unsent message"
    r"|undelivered message|original mail|the original message)"
    r"|original message(?: follows| headers)?:?\s*$|returned message:?\s*$|original message follows"
    r"|message headers follow|below is a copy of the original|-+ ?original message ?-+"
    r"|bounced e-?mail:|the original message was:|\*\*\*\*\* original message|original message:"
    r"|-+original message-+|-+ ?copy of the message|-+\s*original message\s*-+|-+ ?original mail"
    r"|--- below this line is a copy|---+ ?original email|original message headers:"
    r"|------ this is a copy"
    r")",
    re.IGNORECASE | re.MULTILINE,
)

# --- status codes ------------------------------------------------------------------------------

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d])")
_SMTP_CODE = re.compile(r"(?:^|[\s(#'\"<:;=])([245][0-5]\d)(?=[ -][^\d]|$|-\d\.)", re.MULTILINE)
_EXPIRED = re.compile(
    r"retry time(?:out)? (?:exceeded|not reached)|cannot send (?:message )?for \d+ days?"
    r"|could not be delivered (?:for|within) \d+|(?:message|delivery time) (?:has )?expired"
    r"|expired after|too long in (?:the )?queue|deferred|gave up|giving up"
    r"|time(?:d)? ?out (?:during|while)|connection timed out",
    re.IGNORECASE,
)
_DELAYED = re.compile(
    r"delivery (?:has been|is) delayed|(?:has|have) not yet been delivered"
    r"|will (?:continue to |keep )?(?:re)?try"
    r"|still (?:being )?(?:retried|trying)|delivery status notification \(delay\)|delayed mail"
    r"|warning: (?:message|could not send)|no action is required on your part",
    re.IGNORECASE,
)

_DSN_FAILED: Final = ("fail", "error")
_DSN_DELAYED: Final = ("delay",)
_DSN_SUCCESS: Final = ("deliver", "relay", "expand")


def _severity_from_code(code: str | None) -> BounceSeverity | None:
    if not code:
        return None
    if code.startswith("5"):
        return BounceSeverity.HARD
    if code.startswith("4"):
        return BounceSeverity.SOFT
    return None


def _codes_in(text: str) -> tuple[str | None, str | None]:
    """Return the first enhanced status code and the first SMTP reply code in the text."""
    enhanced = _ENHANCED.search(text)
    smtp = _SMTP_CODE.search(text)
    enhanced_code = ".".join(enhanced.groups()) if enhanced else None
    if enhanced_code and enhanced_code.startswith("2"):
        enhanced_code = None
    smtp_code = smtp.group(1) if smtp and not smtp.group(1).startswith("2") else None
    return enhanced_code, smtp_code


def _judge(
    *, status: str | None, smtp_code: str | None, action: str | None, evidence: str
) -> BounceSeverity:
    """Decide hard, soft or delayed from a recipient's status, action and surrounding text."""
    action = (action or "").lower()
    if action.startswith(_DSN_DELAYED):
        return BounceSeverity.DELAYED
    by_code = _severity_from_code(status) or _severity_from_code(smtp_code)
    if by_code is not None:
        return by_code
    if _EXPIRED.search(evidence):
        return BounceSeverity.SOFT
    if _DELAYED.search(evidence):
        return BounceSeverity.DELAYED
    return BounceSeverity.HARD


# --- the report part of a bounce ----------------------------------------------------------------


def report_text(view: MailView) -> str:
    """Return the failure report: the bounce's text above the copy of the original."""
    text = view.text
    marker = _ORIGINAL_MARKER.search(text)
    if marker is not None and marker.start() > 0:
        text = text[: marker.start()]
    # A report longer than this is mostly the original pasted inline.
    return text[:20_000]


def _copied_headers_section(view: MailView) -> str:
    text = view.text
    marker = _ORIGINAL_MARKER.search(text)
    return text[marker.end() : marker.end() + 8000] if marker is not None else ""


def is_mail_system_sender(view: MailView) -> bool:
    """Tell whether the message comes from a mail system rather than a person."""
    local = view.from_address.partition("@")[0]
    if local in _MAILER_LOCALS or local.startswith(("mailer-daemon", "postmaster")):
        return True
    if view.from_name and _MAILER_NAMES.search(view.from_name):
        return True
    return_path = view.header("Return-Path")
    if return_path is not None and return_path.strip() in ("<>", "<MAILER-DAEMON>", ""):
        return True
    return not view.from_address and bool(view.header("From"))


def looks_like_bounce(view: MailView) -> bool:
    """Tell whether a message without a DSN part is a bounce (own rule 1)."""
    if view.header("X-Failed-Recipients"):
        return True
    mailer = is_mail_system_sender(view)
    subject = bool(_BOUNCE_SUBJECT.search(view.subject))
    if not mailer and not subject:
        return False  # the wording alone never makes a bounce: spare the search
    wording = bool(_FAILURE_WORDS.search(report_text(view)[:8000]))
    if mailer:
        return subject or wording
    # A person's reply may quote a bounce under a bounce-like subject; a bounce answers
    # nothing, so it has no In-Reply-To.
    return wording and not view.parsed.in_reply_to


# --- recipients -----------------------------------------------------------------------------


def _dsn_address(block: DeliveryStatusRecipient) -> str | None:
    """Return the address a DSN block reports, preferring the one we wrote to."""
    for value in (block.original_recipient, block.final_recipient):
        if not value:
            continue
        address = normalize_address(value.split(";", 1)[-1])
        if plausible_address(address):
            return address
    return None


def _from_dsn(view: MailView) -> tuple[list[FailedRecipient], bool]:
    """Return failed recipients from DSN blocks, and whether every block reports success."""
    failed: list[FailedRecipient] = []
    blocks = view.parsed.delivery_status
    successes = 0
    for block in blocks:
        action = (block.action or "").strip().lower()
        status = block.status if block.status and _ENHANCED.fullmatch(block.status) else None
        if action.startswith(_DSN_SUCCESS) or (not action and status and status[0] == "2"):
            successes += 1
            continue
        if not action.startswith(_DSN_FAILED + _DSN_DELAYED) and not (status and status[0] in "45"):
            continue
        address = _dsn_address(block)
        if address is None:
            continue
        diagnostic = (block.diagnostic_code or "")[:MAX_LINE_CHARS]
        diag_status, smtp_code = _codes_in(diagnostic)
        status = status if status and status[0] in "45" else diag_status
        failed.append(
            FailedRecipient(
                address=address,
                severity=_judge(
                    status=status, smtp_code=smtp_code, action=action, evidence=diagnostic
                ),
                status=status,
                smtp_code=smtp_code,
                diagnostic=diagnostic[:500] or None,
                found_by="dsn",
            )
        )
    return _unique(failed), bool(blocks) and successes == len(blocks)


def _excluded_addresses(view: MailView) -> set[str]:
    """Addresses that are never the failed recipient: the bounce's own parties, our sender."""
    excluded = set(view.recipient_addresses)
    if view.from_address:
        excluded.add(view.from_address)
    for embedded in view.parsed.embedded_messages:
        if embedded.from_email:
            excluded.add(normalize_address(embedded.from_email))
        if embedded.message_id:
            excluded.add(normalize_address(embedded.message_id))
    if view.parsed.message_id:
        excluded.add(normalize_address(view.parsed.message_id))
    return excluded


def _original_recipients(view: MailView) -> list[str]:
    found: list[str] = []
    for embedded in view.parsed.embedded_messages:
        for address in embedded.to:
            normal = normalize_address(address)
            if plausible_address(normal) and normal not in found:
                found.append(normal)
    return found


def _is_mailer_address(address: str) -> bool:
    return address.partition("@")[0] in _MAILER_LOCALS


def _keep(address: str, *, excluded: set[str], originals: Sequence[str]) -> bool:
    """Own rule 2: whether an address a library or rule found can be a failed recipient."""
    if not plausible_address(address) or address in excluded:
        return False
    return not (_is_mailer_address(address) and address not in originals)


_SENDER_LINE = re.compile(
    r"^[ \t>]*(?:from|sender|reply-to|return-path|mail from|original sender|envelope-from"
    r"|message-id|references|in-reply-to|x-[a-z-]+|received|to|cc|date)\s*:"
    r"|envelope[- ]sender|envelope-from|\(envelope-from|mail from:|smtp\.mailfrom",
    re.IGNORECASE,
)
_RCPT_TO = re.compile(r"rcpt to:?\s*<?([^\s<>]{1,320}@[^\s<>]{1,255})>?", re.IGNORECASE)
_FIELD_RECIPIENT = re.compile(
    r"^[ \t]*(?:final|original)-recipient:\s*(?:rfc822\s*;)?\s*<?([^\s<>;]{1,320}@[^\s<>;]{1,255})",
    re.IGNORECASE | re.MULTILINE,
)
_COPIED_TO = re.compile(r"^[ \t>]*to:\s*(.{1,500})$", re.IGNORECASE | re.MULTILINE)


def _lines_around(text: str, position: int, *, after: int = 3) -> str:
    start = text.rfind("\n", 0, position) + 1
    end = start
    for _ in range(after + 1):
        nxt = text.find("\n", end + 1)
        if nxt == -1:
            end = len(text)
            break
        end = nxt
    return text[start:end][: MAX_LINE_CHARS * 2]


def _line_at(text: str, position: int) -> str:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return text[start : end if end != -1 else len(text)][:MAX_LINE_CHARS]


def _in_url(text: str, position: int) -> bool:
    """Whether the "@" at `position` is part of a URL rather than an address."""
    start = position
    while start > 0 and position - start < 300 and not text[start - 1].isspace():
        start -= 1
    token = text[start:position]
    return "://" in token or token.lower().startswith("www.")


def _is_display_name(text: str, address_end: int) -> bool:
    """Whether an address is written as the display name of the next one ("a@b <c@d>")."""
    rest = text[address_end : address_end + 3].lstrip(" ")
    return rest.startswith("<") and "@" in text[address_end : address_end + 330].split(">", 1)[0]


def _from_text(view: MailView, excluded: set[str], originals: Sequence[str]) -> list[str]:
    """Own rule 3: failed recipients named in the bounce's text."""
    report = report_text(view)
    fields = [normalize_address(m.group(1)) for m in _FIELD_RECIPIENT.finditer(report)]
    found = [a for a in fields if _keep(a, excluded=excluded, originals=originals)]
    if not found:
        for position, address in find_addresses(report):
            normal = normalize_address(address)
            if not _keep(normal, excluded=excluded, originals=originals):
                continue
            if _in_url(report, position) or _SENDER_LINE.search(_line_at(report, position)):
                continue
            if _is_display_name(report, position + len(address) - address.index("@")):
                continue
            found.append(normal)
    if not found:
        found = [
            a
            for m in _RCPT_TO.finditer(view.text[:100_000])
            if _keep(a := normalize_address(m.group(1)), excluded=excluded, originals=originals)
        ]
    if not found:
        copied = _COPIED_TO.search(_copied_headers_section(view))
        copied_to = (
            [normalize_address(a) for _p, a in find_addresses(copied.group(1))] if copied else []
        )
        only = list(originals) or copied_to
        if len(only) == 1 and _keep(only[0], excluded=excluded - {only[0]}, originals=only):
            found = list(only)
    return list(dict.fromkeys(found))


def _from_library(
    view: MailView, excluded: set[str], originals: Sequence[str]
) -> list[tuple[str, bool]]:
    """Failed recipients by flufl.bounce: (address, permanent) pairs, checked by own rule 2."""
    message = view.full_message
    if message is None:
        return []
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector of the library raised on this message; go on without it
        view.notes.append(f"flufl.bounce failed ({type(exc).__name__})")
        return []
    found: list[tuple[str, bool]] = []
    for raw, is_permanent in [(a, True) for a in sorted(permanent)] + [
        (a, False) for a in sorted(temporary)
    ]:
        address = normalize_address(raw.decode("ascii", "replace"))
        if _keep(address, excluded=excluded, originals=originals) and address not in {
            a for a, _ in found
        }:
            found.append((address, is_permanent))
    return found


def _evidence_for(view: MailView, address: str) -> str:
    """The text that speaks about one recipient: the lines around it, else the whole report."""
    report = report_text(view)
    lowered = report.lower()
    at = lowered.find(address)
    near = _lines_around(report, at) if at != -1 else ""
    return near


def _text_recipient(
    view: MailView, address: str, found_by: str, *, temporary: bool = False
) -> FailedRecipient:
    """Own rule 4: hard or soft for a recipient named outside a DSN."""
    near = _evidence_for(view, address)
    status, smtp_code = _codes_in(near)
    report = report_text(view)
    if status is None and smtp_code is None:
        status, smtp_code = _codes_in(report)
    evidence = f"{near}\n{view.subject}\n{report[:4000]}"
    severity = _judge(
        status=status,
        smtp_code=smtp_code,
        action="delayed" if temporary else None,
        evidence=evidence,
    )
    diagnostic = " ".join(near.split())[:500] or None
    return FailedRecipient(
        address=address,
        severity=severity,
        status=status,
        smtp_code=smtp_code,
        diagnostic=diagnostic,
        found_by=found_by,
    )


def _unique(recipients: Iterable[FailedRecipient]) -> list[FailedRecipient]:
    seen: dict[str, FailedRecipient] = {}
    for recipient in recipients:
        seen.setdefault(recipient.address, recipient)
    return list(seen.values())


def _original_message_id(view: MailView) -> str | None:
    for embedded in view.parsed.embedded_messages:
        if embedded.message_id and embedded.source != "message/disposition-notification":
            return embedded.message_id
    return None


def detect_bounce(view: MailView) -> tuple[MessageKind, Bounce | None] | None:
    """Return (BOUNCE, the bounce) or (DELIVERY_REPORT, None) for a delivery report, else None."""
    dsn_failed, all_delivered = _from_dsn(view)
    is_dsn = view.report_type == "delivery-status" or bool(view.parsed.delivery_status)
    if is_dsn and all_delivered and not dsn_failed:
        return MessageKind.DELIVERY_REPORT, None
    if not is_dsn and not dsn_failed and not looks_like_bounce(view):
        return None
    excluded = _excluded_addresses(view)
    originals = _original_recipients(view)
    recipients: list[FailedRecipient] = list(dsn_failed)
    if not recipients:
        for address in _header_failed_recipients(view):
            if _keep(address, excluded=excluded - {address}, originals=originals):
                recipients.append(_text_recipient(view, address, "x-failed-recipients"))
    if not recipients:
        for address, permanent in _from_library(view, excluded, originals):
            recipients.append(
                _text_recipient(
                    view,
                    address,
                    "flufl.bounce",
                    temporary=not permanent and not _EXPIRED.search(report_text(view)),
                )
            )
    if not recipients:
        recipients = [
            _text_recipient(view, a, "text") for a in _from_text(view, excluded, originals)
        ]
    if not recipients:
        view.notes.append("bounce without a recognisable failed recipient")
    bounce = Bounce(
        recipients=tuple(_unique(recipients))[:100], original_message_id=_original_message_id(view)
    )
    return MessageKind.BOUNCE, bounce


def _header_failed_recipients(view: MailView) -> list[str]:
    found: list[str] = []
    for value in view.headers("X-Failed-Recipients"):
        for _position, address in find_addresses(value):
            normal = normalize_address(address)
            if normal not in found:
                found.append(normal)
    return found


# --- complaints ----------------------------------------------------------------------------------

_ARF_FIELDS: Final = ("feedback-type", "original-rcpt-to", "user-agent")


def _feedback_fields(message: Message | None) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    if message is None:
        return fields
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in blocks[:10]:
            if not isinstance(block, Message):
                continue
            for name, value in block.items()[:200]:
                fields.setdefault(name.strip().lower(), []).append(" ".join(str(value).split()))
        break
    return fields


def detect_complaint(view: MailView) -> Complaint | None:
    """Return the complaint if the message is a feedback-loop report (ARF or Microsoft's)."""
    is_arf = view.report_type == "feedback-report" or "Feedback-Type" in view.parsed.headers
    if is_arf:
        fields = _feedback_fields(view.full_message)
        feedback_type = (
            fields.get("feedback-type") or [view.parsed.headers.get("Feedback-Type", "")]
        )[0]
        recipients = [
            normalize_address(a)
            for value in fields.get(
                "original-rcpt-to", [view.parsed.headers.get("Original-Rcpt-To", "")]
            )
            for _p, a in find_addresses(value)
        ]
        return Complaint(
            feedback_type=feedback_type.strip().lower()[:64] or None,
            original_message_id=_original_message_id(view),
            recipients=tuple(dict.fromkeys(recipients or _original_recipients(view)))[:100],
            report_format="arf",
        )
    # Own rule 5: Microsoft's junk-mail reporting program sends the reported message as an
    # attachment marked with the reporter's address, not an ARF report. The mark counts
    # only as a header (of the report or of the attached original), never in a body.
    if b"X-HmXmrOriginalRecipient:" in view.raw[: 512 * 1024]:
        message = view.full_message
        reporters: list[str] = []
        marked = False
        for part in message.walk() if message is not None else ():
            value = part.get("X-HmXmrOriginalRecipient")
            if value is not None:
                marked = True
                reporters = [normalize_address(a) for _p, a in find_addresses(str(value))]
                break
        if not marked:
            return None
        return Complaint(
            feedback_type="abuse",
            original_message_id=_original_message_id(view),
            recipients=tuple(reporters[:100]),
            report_format="provider",
        )
    return None
