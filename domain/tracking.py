"""Opens and clicks of campaign emails, for organizations that turn tracking on (issue 14).

Which sends are tracked: an organization's campaign emails (the cards of its outreach
jobs, which carry the unsubscribe footer), while its `analytics_settings.tracking` asks
for opens or clicks when the email is queued. Answers to replies and one-off emails from
the API are personal correspondence and are never tracked.

A tracked email's HTML part carries a 1×1 pixel (opens) and links through our redirect
(clicks), each with a signed token (`TrackClaims`: organization, send, kind, link index;
a click's token carries the link's URL too, so the redirect goes only where we wrote).

Each fetch is counted once per (send, kind, link, person or bot) in
`email_tracking_events`; later fetches add to `hits`. Who fetched is told apart by
`classify_hit`, a pure function of the request:

- **people**: a browser or mail client; a fetch through Gmail's image proxy
  (`GoogleImageProxy`) or Yahoo's is a person opening the email in that webmail, which
  fetches images only when a message is displayed (the common practice of mail analytics);
- **bots and prefetchers**, counted apart with their reason: a HEAD request; a fetch
  within `PREFETCH_WINDOW` of the send (delivery-time prefetch and link scanning); no user
  agent; the link scanners of mail security gateways (Microsoft Safe Links, Proofpoint,
  Mimecast, Barracuda, ...); Apple Mail Privacy Protection, which fetches every image of
  every message on delivery (its fetches cannot be told from an Apple Mail reader's, so all
  are counted apart); crawlers and HTTP libraries (the `is_crawler` test given, in
  production the crawlerdetect patterns).

Tokens expire after `TOKEN_LIFETIME`: an expired token counts nothing, but its link still
leads to its page (the signature proves we wrote that URL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from domain.analytics_settings import TrackingSettings
from domain.clock import Clock

if TYPE_CHECKING:
    from domain.deps import Deps
    from domain.ports import TrackingUnitOfWork

log = logging.getLogger(__name__)

#: The LinkSigner purpose of tracking tokens (its own key: no other token verifies).
TRACKING_PURPOSE: Final = "track"
#: How long a pixel or link counts after the email was queued.
TOKEN_LIFETIME: Final = timedelta(days=365)
#: Fetches this soon after the send are prefetches at delivery, not people.
PREFETCH_WINDOW: Final = timedelta(seconds=10)
#: What is kept of a user agent (the column's size); IP addresses are never stored.
USER_AGENT_CHARS: Final = 300
#: The link index of an open (the key is never NULL).
OPEN_LINK_INDEX: Final = -1
#: A link longer than this is left as it is (its token would make too long a URL).
MAX_TRACKED_URL_CHARS: Final = 2000


class TrackKind(StrEnum):
    """What was fetched."""

    OPEN = "open"
    CLICK = "click"


class BotReason(StrEnum):
    """Why a fetch was counted as a bot's or a prefetcher's, not a person's."""

    HEAD_REQUEST = "head_request"
    AT_DELIVERY = "at_delivery"
    NO_USER_AGENT = "no_user_agent"
    LINK_SCANNER = "link_scanner"
    APPLE_PRIVACY = "apple_privacy"
    MAIL_PROXY_CLICK = "mail_proxy_click"
    CRAWLER = "crawler"


# --- which sends are tracked ------------------------------------------------------------


@dataclass(frozen=True)
class TrackingPlan:
    """What a tracked email carries: the pixel, the redirecting links, or both."""

    opens: bool
    clicks: bool


def tracking_plan(
    settings: TrackingSettings, *, campaign_email: bool, job_id: int | None
) -> TrackingPlan | None:
    """Return what an email queued now carries; None when it is not tracked.

    Only campaign emails are tracked (a job's card with the unsubscribe footer): answers to
    replies and one-off emails are a person's correspondence.
    """
    if not campaign_email or job_id is None:
        return None
    if not (settings.opens or settings.clicks):
        return None
    return TrackingPlan(opens=settings.opens, clicks=settings.clicks)


# --- tokens -------------------------------------------------------------------------------

_KIND_CODES: Final = {TrackKind.OPEN: "o", TrackKind.CLICK: "c"}
_KINDS_BY_CODE: Final = {code: kind for kind, code in _KIND_CODES.items()}


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class TrackClaims:
    """What a pixel's or a link's token says: whose send, which link, until when."""

    org_id: int
    send_id: int
    kind: TrackKind
    expires_at: datetime
    link_index: int = OPEN_LINK_INDEX
    url: str | None = None

    def payload(self) -> dict[str, Any]:
        """The signed payload (short keys: the token is part of a URL)."""
        body: dict[str, Any] = {
            "o": self.org_id,
            "s": self.send_id,
            "k": _KIND_CODES[self.kind],
            "e": int(self.expires_at.timestamp()),
        }
        if self.kind == TrackKind.CLICK:
            body["l"] = self.link_index
            body["u"] = self.url
        return body

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TrackClaims | None:
        """Read a verified payload; None when it is not a tracking token's."""
        org_id, send_id = _whole(payload.get("o")), _whole(payload.get("s"))
        expires = _whole(payload.get("e"))
        code = payload.get("k")
        kind = _KINDS_BY_CODE.get(code) if isinstance(code, str) else None
        if org_id is None or send_id is None or expires is None or kind is None:
            return None
        if org_id <= 0 or send_id <= 0:
            return None
        try:
            expires_at = datetime.fromtimestamp(expires, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        if kind == TrackKind.OPEN:
            return cls(org_id, send_id, kind, expires_at)
        index, url = _whole(payload.get("l")), payload.get("u")
        if index is None or index < 0 or not isinstance(url, str) or redirect_target(url) is None:
            return None
        return cls(org_id, send_id, kind, expires_at, link_index=index, url=url)

    def expired(self, now: datetime) -> bool:
        """True once the token counts no more."""
        return now >= self.expires_at


def redirect_target(url: str) -> str | None:
    """Return the URL a click may be sent to: http(s) with a host, one line; else None."""
    if not url or len(url) > MAX_TRACKED_URL_CHARS or url != url.strip():
        return None
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


# --- who fetched --------------------------------------------------------------------------

# Mail security gateways that open every link of an incoming email to scan its target.
_LINK_SCANNERS: Final = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "safe links",
    "bingpreview",
    "existence discovery",  # Microsoft Office checks a link before opening it
    "symantec",
    "messagelabs",
    "trend micro",
    "trendmicro",
    "forcepoint",
    "websense",
    "sophos",
    "fortiguard",
    "fortinet",
    "ironport",
    "cisco-esa",
    "zscaler",
    "avanan",
    "cloudmark",
)
# Webmail image proxies: they fetch a message's images when a person displays it.
_MAIL_PROXIES: Final = ("googleimageproxy", "yahoomailproxy")
# Desktop mail clients that fetch images themselves as their user reads.
_MAIL_CLIENTS: Final = ("microsoft outlook", "thunderbird/")


@dataclass(frozen=True)
class HitVerdict:
    """A person's fetch (by_bot False), or a bot's with the reason."""

    by_bot: bool
    reason: BotReason | None = None


PERSON: Final = HitVerdict(by_bot=False)


def _bot(reason: BotReason) -> HitVerdict:
    return HitVerdict(by_bot=True, reason=reason)


def _apple_privacy(user_agent: str) -> bool:
    """Apple Mail's image fetches, which Mail Privacy Protection makes on delivery.

    The proxy sends a bare `Mozilla/5.0`, or Apple Mail's WebKit agent, which names no
    browser (Safari, Chrome, Firefox add their own token; Mail does not).
    """
    if user_agent == "Mozilla/5.0":
        return True
    apple_device = any(d in user_agent for d in ("Macintosh", "iPhone", "iPad"))
    browser = any(b in user_agent for b in ("Safari/", "Chrome/", "Firefox/", "CriOS/", "FxiOS/"))
    return "AppleWebKit/" in user_agent and apple_device and not browser


def classify_hit(
    *,
    kind: TrackKind,
    method: str,
    user_agent: str | None,
    sent_at: datetime | None,
    at: datetime,
    is_crawler: Callable[[str], bool] | None = None,
) -> HitVerdict:
    """Tell a person's fetch of a pixel or link from a bot's or a prefetcher's.

    `sent_at` None: the send is not recorded as sent yet (its mailbox just accepted it),
    so the fetch is a prefetch at delivery.
    """
    agent = (user_agent or "").strip()
    lowered = agent.lower()
    if method.upper() == "HEAD":
        return _bot(BotReason.HEAD_REQUEST)
    if sent_at is None or at - sent_at < PREFETCH_WINDOW:
        return _bot(BotReason.AT_DELIVERY)
    if not agent:
        return _bot(BotReason.NO_USER_AGENT)
    if any(marker in lowered for marker in _LINK_SCANNERS):
        return _bot(BotReason.LINK_SCANNER)
    if kind == TrackKind.OPEN:
        if any(proxy in lowered for proxy in _MAIL_PROXIES):
            return PERSON
        if _apple_privacy(agent):
            return _bot(BotReason.APPLE_PRIVACY)
        if any(client in lowered for client in _MAIL_CLIENTS):
            return PERSON
    else:
        if any(proxy in lowered for proxy in _MAIL_PROXIES):
            # An image proxy never follows links: whatever uses its name is not a reader.
            return _bot(BotReason.MAIL_PROXY_CLICK)
        if "microsoft office" in lowered:
            # Office fetches a link to check it before the browser opens it.
            return _bot(BotReason.LINK_SCANNER)
    if is_crawler is not None and is_crawler(agent):
        return _bot(BotReason.CRAWLER)
    return PERSON


def kept_user_agent(user_agent: str | None) -> str | None:
    """The user agent as stored: at most USER_AGENT_CHARS characters, no NUL."""
    agent = (user_agent or "").replace("\x00", "").strip()
    return agent[:USER_AGENT_CHARS] or None


# --- counting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedSend:
    """A tracked send, as counting a fetch needs it."""

    send_id: int
    org_id: int
    contact_id: int | None
    sent_at: datetime | None


@dataclass(frozen=True)
class TrackingHit:
    """One fetch to count: added to its (send, kind, link, by_bot) row."""

    org_id: int
    send_id: int
    contact_id: int | None
    kind: TrackKind
    link_index: int
    url: str | None
    by_bot: bool
    bot_reason: BotReason | None
    user_agent: str | None
    at: datetime


class TrackingHits:
    """Counts the fetches of tracked pixels and links."""

    def __init__(
        self,
        deps: Deps[TrackingUnitOfWork],
        *,
        is_crawler: Callable[[str], bool] | None = None,
    ) -> None:
        self._uow = deps.uow
        self._clock: Clock = deps.clock
        self._is_crawler = is_crawler

    def record(
        self, claims: TrackClaims, *, method: str, user_agent: str | None
    ) -> HitVerdict | None:
        """Count one fetch of a pixel or link; None when nothing is counted (the token
        expired, or it names no tracked send of its organization)."""
        now = self._clock.now()
        if claims.expired(now):
            return None
        with self._uow() as uow:
            send = uow.tracking.tracked_send(claims.org_id, claims.send_id)
            if send is None:
                return None
            verdict = classify_hit(
                kind=claims.kind,
                method=method,
                user_agent=user_agent,
                sent_at=send.sent_at,
                at=now,
                is_crawler=self._is_crawler,
            )
            uow.tracking.record_hit(
                TrackingHit(
                    org_id=send.org_id,
                    send_id=send.send_id,
                    contact_id=send.contact_id,
                    kind=claims.kind,
                    link_index=claims.link_index,
                    url=claims.url,
                    by_bot=verdict.by_bot,
                    bot_reason=verdict.reason,
                    user_agent=kept_user_agent(user_agent),
                    at=now,
                )
            )
            uow.commit()
        return verdict
