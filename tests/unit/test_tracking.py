"""Tracking of opens and clicks (domain/tracking.py, integrations/tracking.py): who fetched
a pixel or link, the signed tokens, the rewriting of an email's HTML, and counting."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any

import lxml.html
import pytest

from bot.logs import redact
from domain.analytics_settings import TrackingSettings
from domain.clock import FixedClock
from domain.deps import Deps
from domain.tracking import (
    OPEN_LINK_INDEX,
    PREFETCH_WINDOW,
    TOKEN_LIFETIME,
    USER_AGENT_CHARS,
    BotReason,
    HitVerdict,
    TrackClaims,
    TrackedSend,
    TrackingHit,
    TrackingHits,
    TrackingPlan,
    TrackKind,
    classify_hit,
    kept_user_agent,
    redirect_target,
    tracking_plan,
)
from integrations.crypto import LinkSigner
from integrations.gmail.compose import Unsubscribe, compose_email
from integrations.tracking import MAX_TOKEN_CHARS, HtmlTracker, TrackingTokens, is_crawler

KEY = "unit-test-secret-key-0123456789-abcdefghij"
BASE = "https://salesbot.example"
SENT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
LATER = SENT + timedelta(hours=2)
EXPIRES = datetime(2027, 11, 25, 15, 0, tzinfo=UTC)
BOTH = TrackingPlan(opens=True, clicks=True)
UNSUBSCRIBE_URL = f"{BASE}/unsubscribe/eyJjIjo3LCJvIjoxfQ.c2lnbmF0dXJl"

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/18.1 Safari/605.1.15"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
    " like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
OFFICE_CHECK = "Microsoft Office Existence Discovery"
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.4.0"


def tokens(key: str = KEY, purpose: str = "track") -> TrackingTokens:
    return TrackingTokens(LinkSigner(key, purpose=purpose))


def tracker() -> HtmlTracker:
    return HtmlTracker(tokens(), public_base_url=BASE)


def track(html: str, plan: TrackingPlan = BOTH, send_id: int = 42) -> str:
    return tracker().track(html, org_id=1, send_id=send_id, plan=plan, expires_at=EXPIRES)


# --- who fetched -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "method", "agent", "after", "expected"),
    [
        # People: browsers, webmail proxies fetching as the message is displayed, mail clients.
        (TrackKind.OPEN, "GET", CHROME, LATER, HitVerdict(False)),
        (TrackKind.CLICK, "GET", CHROME, LATER, HitVerdict(False)),
        (TrackKind.CLICK, "GET", SAFARI_MAC, LATER, HitVerdict(False)),
        (TrackKind.OPEN, "GET", SAFARI_IPHONE, LATER, HitVerdict(False)),
        (TrackKind.OPEN, "GET", GMAIL_PROXY, LATER, HitVerdict(False)),
        (TrackKind.OPEN, "GET", YAHOO_PROXY, LATER, HitVerdict(False)),
        (TrackKind.OPEN, "GET", OUTLOOK, LATER, HitVerdict(False)),
        (TrackKind.OPEN, "GET", THUNDERBIRD, LATER, HitVerdict(False)),
        # Prefetch at delivery, whoever asks, and HEAD requests.
        (TrackKind.OPEN, "GET", GMAIL_PROXY, SENT + timedelta(seconds=3), BotReason.AT_DELIVERY),
        (TrackKind.CLICK, "GET", CHROME, SENT + timedelta(seconds=9), BotReason.AT_DELIVERY),
        (TrackKind.OPEN, "GET", CHROME, None, BotReason.AT_DELIVERY),
        (TrackKind.CLICK, "HEAD", CHROME, LATER, BotReason.HEAD_REQUEST),
        (TrackKind.OPEN, "head", CHROME, LATER, BotReason.HEAD_REQUEST),
        # Apple Mail Privacy Protection fetches every image on delivery.
        (TrackKind.OPEN, "GET", "Mozilla/5.0", LATER, BotReason.APPLE_PRIVACY),
        (TrackKind.OPEN, "GET", APPLE_MAIL, LATER, BotReason.APPLE_PRIVACY),
        # Link scanners of mail security gateways.
        (TrackKind.CLICK, "GET", "Barracuda Sentinel (EE)", LATER, BotReason.LINK_SCANNER),
        (TrackKind.CLICK, "GET", "Mimecast Safe Links", LATER, BotReason.LINK_SCANNER),
        (TrackKind.CLICK, "GET", f"{CHROME} Proofpoint", LATER, BotReason.LINK_SCANNER),
        (
            TrackKind.OPEN,
            "GET",
            "Mozilla/5.0 (compatible; BingPreview/1.0b)",
            LATER,
            BotReason.LINK_SCANNER,
        ),
        (TrackKind.CLICK, "GET", OFFICE_CHECK, LATER, BotReason.LINK_SCANNER),
        (TrackKind.CLICK, "GET", OUTLOOK, LATER, BotReason.LINK_SCANNER),
        (TrackKind.CLICK, "GET", GMAIL_PROXY, LATER, BotReason.MAIL_PROXY_CLICK),
        # Crawlers and HTTP libraries (crawlerdetect), and no user agent at all.
        (TrackKind.CLICK, "GET", "python-requests/2.32.3", LATER, BotReason.CRAWLER),
        (TrackKind.OPEN, "GET", "curl/8.5.0", LATER, BotReason.CRAWLER),
        (
            TrackKind.CLICK,
            "GET",
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            LATER,
            BotReason.CRAWLER,
        ),
        (TrackKind.OPEN, "GET", "", LATER, BotReason.NO_USER_AGENT),
        (TrackKind.CLICK, "GET", None, LATER, BotReason.NO_USER_AGENT),
    ],
)
def test_who_fetched_a_pixel_or_link_is_told_apart(
    kind: TrackKind,
    method: str,
    agent: str | None,
    after: datetime | None,
    expected: HitVerdict | BotReason,
) -> None:
    verdict = classify_hit(
        kind=kind,
        method=method,
        user_agent=agent,
        sent_at=SENT if after is not None else None,
        at=after or LATER,
        is_crawler=is_crawler,
    )
    wanted = expected if isinstance(expected, HitVerdict) else HitVerdict(True, expected)
    assert verdict == wanted


def test_the_prefetch_window_ends_after_a_few_seconds() -> None:
    def at(seconds: float) -> HitVerdict:
        return classify_hit(
            kind=TrackKind.OPEN,
            method="GET",
            user_agent=CHROME,
            sent_at=SENT,
            at=SENT + timedelta(seconds=seconds),
        )

    assert PREFETCH_WINDOW == timedelta(seconds=10)
    assert at(9.9) == HitVerdict(True, BotReason.AT_DELIVERY)
    assert at(10) == HitVerdict(False)


def test_the_user_agent_is_kept_to_300_characters_without_nul() -> None:
    assert kept_user_agent("a\x00b" + "x" * 400) == "ab" + "x" * (USER_AGENT_CHARS - 2)
    assert kept_user_agent("  ") is None
    assert kept_user_agent(None) is None


# --- which sends are tracked -------------------------------------------------------------------


def test_tracking_is_off_by_default_and_only_for_campaign_emails() -> None:
    assert TrackingSettings() == TrackingSettings(opens=False, clicks=False)
    on = TrackingSettings(opens=True, clicks=True)
    assert tracking_plan(TrackingSettings(), campaign_email=True, job_id=3) is None
    assert tracking_plan(on, campaign_email=True, job_id=3) == BOTH
    # An answer to a reply (no unsubscribe footer) and a one-off email (no job).
    assert tracking_plan(on, campaign_email=False, job_id=3) is None
    assert tracking_plan(on, campaign_email=True, job_id=None) is None
    assert tracking_plan(
        TrackingSettings(clicks=True), campaign_email=True, job_id=3
    ) == TrackingPlan(opens=False, clicks=True)


# --- tokens ------------------------------------------------------------------------------------


def test_open_and_click_tokens_round_trip_and_are_the_same_for_the_same_claims() -> None:
    opened = TrackClaims(7, 42, TrackKind.OPEN, EXPIRES)
    clicked = TrackClaims(
        7, 42, TrackKind.CLICK, EXPIRES, link_index=3, url="https://pinnacle.example/a?b=1&c=2"
    )
    for claims in (opened, clicked):
        token = tokens().sign(claims)
        assert tokens().read(token) == claims
        assert tokens().sign(claims) == token
    assert tokens().read(tokens().sign(opened)) is not None
    assert opened.link_index == OPEN_LINK_INDEX


def _payload(token: str) -> dict[str, Any]:
    data = token.split(".")[0]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    return loaded


def _with_payload(token: str, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + token.split(".")[1]


def test_forged_cut_and_other_purpose_tokens_are_refused() -> None:
    claims = TrackClaims(
        7, 42, TrackKind.CLICK, EXPIRES, link_index=0, url="https://pinnacle.example/"
    )
    genuine = tokens().sign(claims)
    redirected = _with_payload(genuine, {**_payload(genuine), "u": "https://evil.example/"})
    refused = [
        tokens("another-secret-key-0123456789-abcdefghij").sign(claims),  # another key
        tokens(purpose="unsubscribe").sign(claims),  # our key, another purpose
        redirected,  # the URL changed, the signature kept
        genuine[:-3],  # cut
        genuine.replace(".", ""),
        "",
        "not-a-token",
        "....",
        "é" + genuine,
        genuine + "A" * MAX_TOKEN_CHARS,
    ]
    for token in refused:
        assert tokens().read(token) is None, token
    # An unsubscribe token, signed with our key for its own purpose, is no tracking token.
    unsubscribe = LinkSigner(KEY, purpose="unsubscribe").sign({"o": 7, "c": 9})
    assert tokens().read(unsubscribe) is None


def test_a_genuine_payload_that_is_not_a_tracking_token_is_refused() -> None:
    signer = LinkSigner(KEY, purpose="track")
    exp = int(EXPIRES.timestamp())
    for payload in [
        {"o": 7, "s": 42, "k": "x", "e": exp},
        {"o": 7, "s": 42, "k": ["o"], "e": exp},
        {"o": "7", "s": 42, "k": "o", "e": exp},
        {"o": True, "s": 42, "k": "o", "e": exp},
        {"o": 0, "s": 42, "k": "o", "e": exp},
        {"o": 7, "s": 42, "k": "o"},
        {"o": 7, "s": 42, "k": "c", "e": exp, "l": 0, "u": "javascript:alert(1)"},
        {"o": 7, "s": 42, "k": "c", "e": exp, "l": 0, "u": "https://x.example/\r\nSet-Cookie: a"},
        {"o": 7, "s": 42, "k": "c", "e": exp, "l": -2, "u": "https://x.example/"},
        {"o": 7, "s": 42, "k": "c", "e": exp, "u": "https://x.example/"},
        {"o": 7, "s": 42, "k": "o", "e": 10**20},
    ]:
        assert TrackingTokens(signer).read(signer.sign(payload)) is None, payload


def test_an_expired_token_still_reads_but_counts_no_more() -> None:
    claims = TrackClaims(7, 42, TrackKind.OPEN, EXPIRES)
    read = tokens().read(tokens().sign(claims))
    assert read is not None
    assert not read.expired(EXPIRES - timedelta(seconds=1))
    assert read.expired(EXPIRES)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://pinnacle.example/rates?a=1&b=2#x", True),
        ("HTTP://pinnacle.example", True),
        ("mailto:dana@pinnacle.example", False),
        ("javascript:alert(1)", False),
        ("//evil.example/", False),
        ("/relative", False),
        ("https://", False),
        (" https://pinnacle.example/", False),
        ("https://pinnacle.example/a b", False),
        ("https://pinnacle.example/" + "a" * 2000, False),
    ],
)
def test_a_click_is_sent_only_to_an_http_url_with_a_host(url: str, allowed: bool) -> None:
    assert (redirect_target(url) == url) is allowed


# --- the HTML of a tracked email ------------------------------------------------------------


HTML = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><style>p{margin:0}</style></head><body>"
    "<p>Hi Dana,</p>"
    "<p>Our <a href='https://pinnacle.example/rates?a=1&amp;b=2'>new rates</a> and "
    "<a href='https://lonestar.example/turn-times'>turn times</a>.</p>"
    "<p>Write to <a href='mailto:maria@lonestar.example.com'>Maria</a>, call "
    "<a href='tel:+15125550100'>us</a>, see <a href='#terms'>terms</a> or "
    "<a href='/relative'>here</a>.</p>"
    f"<p><a href='{UNSUBSCRIBE_URL}'>Stop these emails</a> "
    "<a href='https://lists.example/opt-out'>Unsubscribe</a></p>"
    "<!--[if mso]><p>Outlook</p><![endif]-->"
    "</body></html>"
)


def hrefs(html: str) -> list[str]:
    return [a.get("href") for a in lxml.html.document_fromstring(html).iter("a")]


def test_links_go_through_the_redirect_and_the_pixel_ends_the_body() -> None:
    tracked = track(HTML)

    links = hrefs(tracked)
    assert [h.startswith(f"{BASE}/t/c/") for h in links] == [True, True] + [False] * 6
    assert links[2:] == [
        "mailto:maria@lonestar.example.com",
        "tel:+15125550100",
        "#terms",
        "/relative",
        UNSUBSCRIBE_URL,
        "https://lists.example/opt-out",
    ]
    read = [tokens().read(h.removeprefix(f"{BASE}/t/c/")) for h in links[:2]]
    assert read == [
        TrackClaims(
            1,
            42,
            TrackKind.CLICK,
            EXPIRES,
            link_index=0,
            url="https://pinnacle.example/rates?a=1&b=2",
        ),
        TrackClaims(
            1, 42, TrackKind.CLICK, EXPIRES, link_index=1, url="https://lonestar.example/turn-times"
        ),
    ]
    body = lxml.html.document_fromstring(tracked).body
    pixel = body[-1]
    assert pixel.tag == "img"
    assert dict(pixel.attrib) == {
        "src": pixel.get("src"),
        "width": "1",
        "height": "1",
        "alt": "",
        "style": "display:none",
    }
    assert pixel.get("src").startswith(f"{BASE}/t/o/")
    assert pixel.get("src").endswith(".gif")
    token = pixel.get("src").removeprefix(f"{BASE}/t/o/").removesuffix(".gif")
    assert tokens().read(token) == TrackClaims(1, 42, TrackKind.OPEN, EXPIRES)
    assert tracked.startswith("<!DOCTYPE html>")
    assert "<!--[if mso]><p>Outlook</p><![endif]-->" in tracked


def test_opens_only_adds_the_pixel_and_clicks_only_rewrites_the_links() -> None:
    opens = track(HTML, TrackingPlan(opens=True, clicks=False))
    clicks = track(HTML, TrackingPlan(opens=False, clicks=True))

    assert hrefs(opens) == hrefs(HTML)
    assert f"{BASE}/t/o/" in opens
    assert f"{BASE}/t/o/" not in clicks
    assert sum(h.startswith(f"{BASE}/t/c/") for h in hrefs(clicks)) == 2


def test_a_plain_fragment_is_tracked_as_a_document() -> None:
    tracked = track('<p>See <a href="https://pinnacle.example/">this</a></p>')
    root = lxml.html.document_fromstring(tracked)
    assert [e.tag for e in root.body] == ["p", "img"]
    assert track("") == track("   ")
    assert f"{BASE}/t/o/" in track("")


def test_the_same_html_tracks_the_same_and_tracked_html_stays_as_it_is() -> None:
    tracked = track(HTML)

    assert track(HTML) == tracked
    assert track(tracked) == tracked
    assert track(HTML, send_id=43) != tracked


def test_a_composed_tracked_email_keeps_its_headers_text_and_footer_and_is_rebuilt_the_same() -> (
    None
):
    tracked = track(HTML)
    text = "Hi Dana,\n\nOur new rates: https://pinnacle.example/rates?a=1&b=2\n\nMaria"

    def compose(at: datetime) -> EmailMessage:
        raw = compose_email(
            message_id="<m1@salesbot.example>",
            date=at,
            from_email="maria@lonestar.example.com",
            from_name="María López",
            to_email="dana@pinnacle.example",
            to_name="Dana Whitfield",
            subject="Turn times",
            body_text=text,
            body_html=tracked,
            unsubscribe=Unsubscribe(url=UNSUBSCRIBE_URL, mailto="maria@lonestar.example.com"),
        )
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        return message

    first, retried = compose(SENT), compose(SENT + timedelta(minutes=7))

    def part(message: EmailMessage, subtype: str) -> str:
        found = message.get_body(preferencelist=(subtype,))
        assert found is not None
        return str(found.get_content())

    # A retry rebuilds the same email: only the Date differs.
    assert part(first, "html") == part(retried, "html")
    assert part(first, "plain") == part(retried, "plain")
    # The plain text keeps its links; List-Unsubscribe names the page itself.
    assert "https://pinnacle.example/rates?a=1&b=2" in part(first, "plain")
    assert "/t/c/" not in part(first, "plain")
    assert first["List-Unsubscribe"].startswith(f"<{UNSUBSCRIBE_URL}>")
    # The footer's unsubscribe link was already in the body: not added twice, not tracked.
    assert hrefs(part(first, "html")).count(UNSUBSCRIBE_URL) == 1


# --- counting ----------------------------------------------------------------------------------


@dataclass
class FakeTracking:
    sends: dict[tuple[int, int], TrackedSend] = field(default_factory=dict)
    hits: list[TrackingHit] = field(default_factory=list)

    def tracked_send(self, org_id: int, send_id: int) -> TrackedSend | None:
        return self.sends.get((org_id, send_id))

    def record_hit(self, hit: TrackingHit) -> None:
        self.hits.append(hit)


@dataclass
class FakeUow:
    tracking: FakeTracking
    committed: list[TrackingHit] = field(default_factory=list)

    def __enter__(self) -> FakeUow:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.tracking.hits.clear()  # what was not committed is rolled back

    def commit(self) -> None:
        self.committed.extend(self.tracking.hits)


def counting(clock: FixedClock) -> tuple[TrackingHits, FakeUow]:
    uow = FakeUow(FakeTracking({(7, 42): TrackedSend(42, 7, 1000, SENT)}))
    return TrackingHits(Deps(uow=lambda: uow, clock=clock), is_crawler=is_crawler), uow


def test_a_fetch_is_counted_with_who_fetched_and_the_agent() -> None:
    hits, uow = counting(FixedClock(LATER))
    claims = TrackClaims(7, 42, TrackKind.CLICK, EXPIRES, link_index=1, url="https://x.example/")

    assert hits.record(claims, method="GET", user_agent="curl/8.5.0") == HitVerdict(
        True, BotReason.CRAWLER
    )
    assert uow.committed == [
        TrackingHit(
            org_id=7,
            send_id=42,
            contact_id=1000,
            kind=TrackKind.CLICK,
            link_index=1,
            url="https://x.example/",
            by_bot=True,
            bot_reason=BotReason.CRAWLER,
            user_agent="curl/8.5.0",
            at=LATER,
        )
    ]


def test_an_expired_token_or_another_organizations_send_counts_nothing() -> None:
    clock = FixedClock(LATER)
    hits, uow = counting(clock)

    assert (
        hits.record(TrackClaims(8, 42, TrackKind.OPEN, EXPIRES), method="GET", user_agent=CHROME)
        is None
    )
    assert (
        hits.record(TrackClaims(7, 43, TrackKind.OPEN, EXPIRES), method="GET", user_agent=CHROME)
        is None
    )
    clock.advance(days=TOKEN_LIFETIME.days)
    expired = TrackClaims(7, 42, TrackKind.OPEN, LATER + timedelta(days=1))
    assert hits.record(expired, method="GET", user_agent=CHROME) is None
    assert uow.committed == []


def test_the_tokens_of_pixels_and_links_are_redacted_from_logs() -> None:
    pixel = f"/t/o/{tokens().sign(TrackClaims(1, 42, TrackKind.OPEN, EXPIRES))}.gif"
    link = "/t/c/" + tokens().sign(
        TrackClaims(1, 42, TrackKind.CLICK, EXPIRES, link_index=0, url="https://x.example/?a=1")
    )

    assert redact(f'"GET {pixel} HTTP/1.1" 200') == '"GET /t/o/[redacted] HTTP/1.1" 200'
    assert redact(f'"HEAD {link} HTTP/1.1" 302') == '"HEAD /t/c/[redacted] HTTP/1.1" 302'
    assert redact("GET /t/x/abc") == "GET /t/x/abc"
