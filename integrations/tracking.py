"""Tracked emails: the signed tokens of pixels and links, the HTML rewriting, bot patterns.

`TrackingTokens` signs `domain.tracking.TrackClaims` with the LinkSigner of purpose
"track" (a key of its own: an unsubscribe or OAuth token never verifies as one) and reads
them back. `HtmlTracker` rewrites a tracked email's HTML with lxml's HTML parser: each
http(s) link of an `<a>` or `<area>` goes through `/t/c/{token}` (its URL carried in the
signed token, so the redirect goes nowhere we did not write), and a 1×1 pixel
`/t/o/{token}.gif` is added at the end of the body. Left as they are: mailto: and other
schemes, relative links and anchors, our own links (the unsubscribe page, links already
tracked), links that name unsubscribing, and links too long to carry. The same input gives
the same output, and tracked HTML is returned unchanged, so a send rebuilt for a retry is
the same email.

`is_crawler` asks the crawlerdetect patterns (a port of the maintained Crawler-Detect
list: crawlers, HTTP libraries, monitoring tools) whether a user agent is a bot's.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, Final
from urllib.parse import urlsplit

import lxml.etree
import lxml.html
from crawlerdetect import CrawlerDetect

from domain.errors import InvalidInput
from domain.tracking import (
    MAX_TRACKED_URL_CHARS,
    TrackClaims,
    TrackingPlan,
    TrackKind,
    redirect_target,
)
from integrations.crypto import LinkSigner

# The longest token the routes read: a click's carries a URL of up to 2,000 characters
# (base64 makes it 2,700), so anything longer was never made here.
MAX_TOKEN_CHARS: Final = 4096


class TrackingTokens:
    """Signs and reads the tokens of tracked pixels and links."""

    def __init__(self, signer: LinkSigner) -> None:
        self._signer = signer

    def sign(self, claims: TrackClaims) -> str:
        """Return the token of a pixel or link (the same claims give the same token)."""
        return self._signer.sign(claims.payload())

    def read(self, token: str) -> TrackClaims | None:
        """Return the claims of a genuine token, expired or not; None for anything else
        (forged, cut, another purpose's, too long)."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            return None
        try:
            payload: Any = self._signer.verify(token)
        except (InvalidInput, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(payload, dict):
            return None
        return TrackClaims.from_payload(payload)


def open_path(token: str) -> str:
    """The pixel's path."""
    return f"/t/o/{token}.gif"


def click_path(token: str) -> str:
    """The redirecting link's path."""
    return f"/t/c/{token}"


class HtmlTracker:
    """The `EmailTracker` port: adds the pixel and redirecting links to an email's HTML."""

    def __init__(self, tokens: TrackingTokens, *, public_base_url: str) -> None:
        self._tokens = tokens
        self._base = public_base_url.rstrip("/")
        own = urlsplit(self._base)
        self._own_host = (own.hostname or "").lower()
        self._own_path = own.path.rstrip("/")

    def track(
        self,
        html: str,
        *,
        org_id: int,
        send_id: int,
        plan: TrackingPlan,
        expires_at: datetime,
    ) -> str:
        """Return the HTML with the pixel (opens) and its http(s) links through the
        redirect (clicks); see the module's docstring for what stays as it is."""
        root = _parse(html)
        changed = False
        if plan.clicks:
            index = 0
            for element in root.iter("a", "area"):
                url = self._trackable(element)
                if url is None:
                    continue
                claims = TrackClaims(
                    org_id, send_id, TrackKind.CLICK, expires_at, link_index=index, url=url
                )
                element.set("href", self._base + click_path(self._tokens.sign(claims)))
                index += 1
                changed = True
        if plan.opens and not self._has_pixel(root):
            claims = TrackClaims(org_id, send_id, TrackKind.OPEN, expires_at)
            pixel = lxml.html.Element(
                "img",
                src=self._base + open_path(self._tokens.sign(claims)),
                width="1",
                height="1",
                alt="",
                style="display:none",
            )
            _body(root).append(pixel)
            changed = True
        if not changed:
            return html
        return _serialize(root, keep_doctype="<!doctype" in html[:2048].lower())

    def _own(self, url: str) -> bool:
        """Whether a URL is one of ours (the unsubscribe page, a tracked link)."""
        parts = urlsplit(url)
        return (parts.hostname or "").lower() == self._own_host and (
            parts.path == self._own_path or parts.path.startswith(self._own_path + "/")
        )

    def _trackable(self, element: lxml.html.HtmlElement) -> str | None:
        href = (element.get("href") or "").strip()
        if not href or len(href) > MAX_TRACKED_URL_CHARS:
            return None
        url = redirect_target(href)
        if url is None or self._own(url):
            return None
        if "unsubscribe" in url.lower() or "unsubscribe" in element.text_content().lower():
            # Opting out is never counted as interest, and never waits on our redirect.
            return None
        return url

    def _has_pixel(self, root: lxml.html.HtmlElement) -> bool:
        prefix = self._base + "/t/o/"
        return any((img.get("src") or "").startswith(prefix) for img in root.iter("img"))


def _parse(html: str) -> lxml.html.HtmlElement:
    """Parse an email's HTML as a whole document (a fragment gets its html and body)."""
    if not html.strip():
        return lxml.html.document_fromstring("<html><body></body></html>")
    try:
        return lxml.html.document_fromstring(html)
    except ValueError:
        # A Unicode string with an XML encoding declaration: parse its UTF-8 bytes.
        parser = lxml.html.HTMLParser(encoding="utf-8")
        return lxml.html.document_fromstring(html.encode("utf-8"), parser=parser)
    except lxml.etree.ParserError:
        # Only comments or a bare declaration: nothing to keep but the pixel's body.
        return lxml.html.document_fromstring("<html><body></body></html>")


def _body(root: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    found = root.find("body")
    if found is None:
        found = lxml.html.Element("body")
        root.append(found)
    return found


def _serialize(root: lxml.html.HtmlElement, *, keep_doctype: bool) -> str:
    doctype = root.getroottree().docinfo.doctype if keep_doctype else None
    text: str = lxml.html.tostring(root, encoding="unicode", method="html", doctype=doctype)
    return text


@lru_cache(maxsize=1)
def _detector() -> CrawlerDetect:
    return CrawlerDetect()


def is_crawler(user_agent: str) -> bool:
    """True when the user agent is a crawler's, an HTTP library's or a monitor's."""
    return bool(_detector().is_crawler(user_agent[:1000]))
