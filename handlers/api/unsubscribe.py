"""Unsubscribe links of campaign emails: the footer link and RFC 8058 one-click.

The token is signed ({"o": org_id, "c": contact_id, "t": email_type}); a forged one is
answered 400. "t" names the type of the email the link came in (domain/email_preferences.py);
a token without it (sent before types were kept) means "everything".

`GET` only shows a page, because link scanners and previews open links without anyone
asking to leave: the contact's current choices, "Unsubscribe from <type> only",
"Unsubscribe from everything", and "Subscribe again" for each type turned off.

`POST` acts at once:
- the RFC 8058 one-click (body `List-Unsubscribe=One-Click`, sent by mail providers when
  the recipient clicks "Unsubscribe") turns off the email's TYPE only, as a provider's
  one-click leaves the one list it was clicked in; campaign emails off stops their
  follow-ups too. With a token without a type it opts the contact out of everything;
- the page's buttons send `action=type` (that type only), `action=everything` (the global
  opt-out; the old page's `confirm=yes` means the same) or `action=resubscribe` with
  `type=<type>`.
Every change is recorded in the contact's engagement history with when and how.
"""

from __future__ import annotations

import html
import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from domain.email_preferences import (
    LABELS,
    OPTIONAL_TYPES,
    EmailPreferences,
    EmailType,
    email_type_or_none,
)
from domain.errors import InvalidInput
from domain.suppression import Suppression
from handlers.api.deps import SuppressionDep
from integrations import metrics
from integrations.crypto import LinkSigner

log = logging.getLogger(__name__)

router = APIRouter(tags=["unsubscribe"], include_in_schema=False)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


def _page(title: str, paragraphs: list[str], *, status: int = 200, form: str = "") -> HTMLResponse:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em'>"
        f"<h1>{html.escape(title)}</h1>{body}{form}</body></html>",
        status_code=status,
        headers=_HEADERS,
    )


def _invalid_link() -> HTMLResponse:
    return _page(
        "This unsubscribe link is not valid",
        [
            "The link may have been cut or changed in transit. Open the unsubscribe link of"
            " the email again, or reply to the email asking to be removed.",
        ],
        status=400,
    )


def _claims(request: Request, token: str) -> tuple[int, int, EmailType | None] | None:
    signer: LinkSigner = request.app.state.runtime.unsubscribe_signer
    try:
        claims: dict[str, Any] = signer.verify(token)
        email_type = email_type_or_none(claims.get("t"))
        if email_type == EmailType.TRANSACTIONAL:
            email_type = None  # never turned off: its link means "everything"
        return int(claims["o"]), int(claims["c"]), email_type
    except (InvalidInput, KeyError, TypeError, ValueError):
        return None


def _button(action: str, label: str, *, fields: dict[str, str] | None = None) -> str:
    hidden = "".join(
        f"<input type='hidden' name='{html.escape(k, quote=True)}'"
        f" value='{html.escape(v, quote=True)}'>"
        for k, v in {"action": action, **(fields or {})}.items()
    )
    return (
        f"{hidden}<button type='submit' style='font-size:1.1em;padding:.5em 1.5em;"
        f"margin:.3em 0'>{html.escape(label)}</button>"
    )


def _form(token: str, action: str, label: str, *, fields: dict[str, str] | None = None) -> str:
    target = html.escape(f"/unsubscribe/{token}", quote=True)
    return f"<form method='post' action='{target}'>{_button(action, label, fields=fields)}</form>"


def _choices(preferences: EmailPreferences) -> str:
    rows = "".join(
        f"<li>{html.escape(LABELS[t].capitalize())}: "
        f"{'yes' if preferences.allows(t) else '<strong>no</strong>'}</li>"
        for t in OPTIONAL_TYPES
    )
    return f"<p>What you receive from us now:</p><ul>{rows}</ul>"


def _preferences_page(
    token: str,
    email_type: EmailType | None,
    preferences: EmailPreferences,
    *,
    email: str,
    org_name: str,
    title: str = "Unsubscribe?",
    lead: list[str] | None = None,
) -> HTMLResponse:
    forms = [_choices(preferences)]
    if email_type is not None and preferences.allows(email_type):
        forms.append(_form(token, "type", f"Unsubscribe from {LABELS[email_type]} only"))
    forms.append(f"<p>{html.escape(f'Stop all emails from {org_name} to {email}?')}</p>")
    forms.append(_form(token, "everything", "Unsubscribe from everything"))
    for turned_off in sorted(preferences.turned_off, key=OPTIONAL_TYPES.index):
        forms.append(
            _form(
                token,
                "resubscribe",
                f"Subscribe again to {LABELS[turned_off]}",
                fields={"type": turned_off.value},
            )
        )
    return _page(title, lead or [], form="".join(forms))


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, suppression: SuppressionDep) -> HTMLResponse:
    """Show the contact's choices and the buttons; nothing changes until one is pressed."""
    found = _claims(request, token)
    if found is None:
        return _invalid_link()
    org_id, contact_id, email_type = found
    summary = suppression.contact(org_id, contact_id)
    preferences = suppression.email_preferences(org_id, contact_id)
    if summary is None or preferences is None:
        return _page("You are unsubscribed", ["You will receive no more emails from us."])
    if summary.opted_out_at is not None:
        return _page(
            "You are already unsubscribed",
            [f"{summary.email} receives no more emails from {summary.org_name}."],
        )
    return _preferences_page(
        token, email_type, preferences, email=summary.email, org_name=summary.org_name
    )


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, suppression: SuppressionDep) -> HTMLResponse:
    """Act at once: RFC 8058 one-click (the email's type), or the page's buttons."""
    found = _claims(request, token)
    if found is None:
        return _invalid_link()
    org_id, contact_id, email_type = found
    body = (await request.body())[:2048]
    one_click = b"List-Unsubscribe=One-Click" in body
    fields = {} if one_click else _form_fields(body)
    action = fields.get("action", "")
    source = "one_click" if one_click else "unsubscribe_page"
    if one_click and email_type is not None:
        return await _change(
            suppression, token, org_id, contact_id, {email_type: False}, source, email_type
        )
    if action == "type" and email_type is not None:
        return await _change(
            suppression, token, org_id, contact_id, {email_type: False}, source, email_type
        )
    if action == "resubscribe":
        again = email_type_or_none(fields.get("type"))
        if again is None or again == EmailType.TRANSACTIONAL:
            return _page(
                "Nothing changed",
                ["That type of email is not one you can choose. Open the link again."],
                status=400,
            )
        return await _change(
            suppression, token, org_id, contact_id, {again: True}, source, email_type
        )
    # One-click of a link without a type, the page's "everything" (and the old page's
    # confirm=yes): the global opt-out.
    return await _opt_out(suppression, org_id, contact_id, source)


async def _change(
    suppression: Suppression,
    token: str,
    org_id: int,
    contact_id: int,
    changes: dict[EmailType, bool],
    source: str,
    email_type: EmailType | None,
) -> HTMLResponse:
    summary = await run_in_threadpool(suppression.contact, org_id, contact_id)
    if summary is None:
        return _page("You are unsubscribed", ["You will receive no more emails from us."])
    if summary.opted_out_at is not None:
        return _page(
            "You are already unsubscribed",
            [f"{summary.email} receives no more emails from {summary.org_name}."],
        )
    result = await run_in_threadpool(
        lambda: suppression.change_email_preferences(org_id, contact_id, changes, source=source)
    )
    if result is None:
        return _page("You are unsubscribed", ["You will receive no more emails from us."])
    log.info(
        "contact changed email preferences",
        extra={
            "org_id": org_id,
            "contact_id": contact_id,
            "source": source,
            "changed": {t.value: v for t, v in result.changed.items()},
            "stopped_enrollments": result.stopped_enrollments,
        },
    )
    ((changed_type, subscribed),) = list(changes.items())
    title = (
        f"You will receive {LABELS[changed_type]} again"
        if subscribed
        else f"You are unsubscribed from {LABELS[changed_type]}"
    )
    lead = [
        f"{result.email} will receive no more {LABELS[changed_type]} from us."
        if not subscribed
        else f"{result.email} will receive {LABELS[changed_type]} from us again."
    ]
    return _preferences_page(
        token,
        email_type,
        result.preferences,
        email=result.email,
        org_name=summary.org_name,
        title=title,
        lead=lead,
    )


async def _opt_out(
    suppression: Suppression, org_id: int, contact_id: int, source: str
) -> HTMLResponse:
    result = await run_in_threadpool(suppression.opt_out, org_id, contact_id, source=source)
    if result is None:
        return _page("You are unsubscribed", ["You will receive no more emails from us."])
    if not result.already_opted_out:
        metrics.OPT_OUTS.labels(source).inc()
    log.info(
        "contact opted out",
        extra={
            "org_id": org_id,
            "contact_id": contact_id,
            "source": source,
            "already": result.already_opted_out,
            "stopped_enrollments": result.stopped_enrollments,
            "cancelled_sends": result.cancelled_sends,
        },
    )
    return _page(
        "You are unsubscribed",
        [f"{result.email} will receive no more emails from us. Sorry for the noise."],
    )
