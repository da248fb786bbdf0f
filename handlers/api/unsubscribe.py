"""Unsubscribe links of campaign emails: the footer link and RFC 8058 one-click.

`POST /unsubscribe/{token}` opts the contact out at once: mail providers send it with
the body `List-Unsubscribe=One-Click` when the recipient clicks "Unsubscribe", and our
confirmation page's button sends it too. `GET` only shows that page, because link
scanners and previews open links without anyone asking to leave. The token is signed
({"o": org_id, "c": contact_id}); a forged one is answered 400.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from domain.errors import InvalidInput
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


def _claims(request: Request, token: str) -> tuple[int, int] | None:
    signer: LinkSigner = request.app.state.runtime.unsubscribe_signer
    try:
        claims: dict[str, Any] = signer.verify(token)
        return int(claims["o"]), int(claims["c"])
    except (InvalidInput, KeyError, TypeError, ValueError):
        return None


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, suppression: SuppressionDep) -> HTMLResponse:
    """Show the confirmation page; nothing changes until its button is pressed."""
    found = _claims(request, token)
    if found is None:
        return _invalid_link()
    org_id, contact_id = found
    summary = suppression.contact(org_id, contact_id)
    if summary is None:
        return _page("You are unsubscribed", ["You will receive no more emails from us."])
    if summary.opted_out_at is not None:
        return _page(
            "You are already unsubscribed",
            [f"{summary.email} receives no more emails from {summary.org_name}."],
        )
    action = html.escape(f"/unsubscribe/{token}", quote=True)
    form = (
        f"<form method='post' action='{action}'>"
        "<input type='hidden' name='confirm' value='yes'>"
        "<button type='submit' style='font-size:1.1em;padding:.5em 1.5em'>Unsubscribe</button>"
        "</form>"
    )
    return _page(
        "Unsubscribe?",
        [f"Stop all emails from {summary.org_name} to {summary.email}?"],
        form=form,
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, suppression: SuppressionDep) -> HTMLResponse:
    """Opt the contact out at once (RFC 8058 one-click, or the page's button)."""
    found = _claims(request, token)
    if found is None:
        return _invalid_link()
    org_id, contact_id = found
    body = (await request.body())[:2048]
    source = "one_click" if b"List-Unsubscribe=One-Click" in body else "unsubscribe_page"
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
