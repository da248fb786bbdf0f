"""The pixel and the redirect of tracked campaign emails (public: no authentication).

`GET /t/o/{token}.gif` always answers the 43-byte transparent GIF, never cached, whatever
the token: a forged, cut or expired one records nothing, and a mail client never shows a
broken image or an error page. `GET /t/c/{token}` answers 302 to the link's URL, which
the signed token carries (a forged token cannot send anyone elsewhere: no open redirect);
an expired token still leads to its page but counts nothing; a token that is not ours
gets a small "This link is invalid" page (400). HEAD is answered the same way and counted
as a bot's. A fetch costs a signature check, a primary-key read and one upsert; the user
agent is kept (300 characters), the address never.
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.tracking import TrackClaims, TrackingHits, TrackKind, redirect_target
from integrations.tracking import TrackingTokens

log = logging.getLogger(__name__)

router = APIRouter(tags=["tracking"], include_in_schema=False)

# A 1×1 transparent GIF89a (white, fully transparent), 43 bytes.
PIXEL_GIF: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

_NEVER_CACHED: Final = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
    # The token is in the URL: the page a click lands on must not see it.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}

_INVALID_PAGE: Final = (
    "<!doctype html><html><head><meta charset='utf-8'>"
    "<meta name='viewport' content='width=device-width'>"
    "<title>This link is invalid</title></head>"
    "<body style='font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em'>"
    "<h1>This link is invalid</h1>"
    "<p>The link may have been cut or changed in transit. Open it again from the email,"
    " or copy the whole address into your browser.</p></body></html>"
)


def _claims(request: Request, token: str, kind: TrackKind) -> TrackClaims | None:
    tokens: TrackingTokens | None = getattr(request.app.state.runtime, "tracking_tokens", None)
    if tokens is None:
        return None
    claims = tokens.read(token)
    return claims if claims is not None and claims.kind == kind else None


def _count(request: Request, claims: TrackClaims) -> None:
    """Count the fetch; a failure to count is logged and never reaches the reader."""
    hits: TrackingHits | None = getattr(request.app.state.runtime, "tracking_hits", None)
    if hits is None:
        return
    try:
        hits.record(claims, method=request.method, user_agent=request.headers.get("user-agent"))
    except Exception:  # noqa: BLE001 - the pixel and the redirect answer whatever happens
        # A lost count is worth less than a broken image or a link that leads nowhere.
        log.exception(
            "tracking fetch not counted",
            extra={"org_id": claims.org_id, "email_send_id": claims.send_id},
        )


@router.api_route("/t/o/{token}.gif", methods=["GET", "HEAD"])
def pixel(token: str, request: Request) -> Response:
    """The open pixel: the transparent GIF, always; a genuine token's fetch is counted."""
    claims = _claims(request, token, TrackKind.OPEN)
    if claims is not None:
        _count(request, claims)
    return Response(PIXEL_GIF, media_type="image/gif", headers=_NEVER_CACHED)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
def click(token: str, request: Request) -> Response:
    """A tracked link: 302 to its URL (counted), or "This link is invalid" (400)."""
    claims = _claims(request, token, TrackKind.CLICK)
    target = redirect_target(claims.url or "") if claims is not None else None
    if claims is None or target is None:
        return HTMLResponse(_INVALID_PAGE, status_code=400, headers=_NEVER_CACHED)
    _count(request, claims)
    return RedirectResponse(target, status_code=302, headers=_NEVER_CACHED)


@router.api_route("/t/o/{anything:path}", methods=["GET", "HEAD"])
def not_a_pixel(anything: str) -> Response:
    """Whatever else is asked under the pixel's path: the GIF all the same, nothing counted."""
    return Response(PIXEL_GIF, media_type="image/gif", headers=_NEVER_CACHED)


@router.api_route("/t/c/{anything:path}", methods=["GET", "HEAD"])
def not_a_link(anything: str) -> Response:
    """Whatever else is asked under the links' path: "This link is invalid"."""
    return HTMLResponse(_INVALID_PAGE, status_code=400, headers=_NEVER_CACHED)
