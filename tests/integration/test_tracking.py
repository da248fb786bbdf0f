"""Opens and clicks, on SQLite and PostgreSQL: the analytics settings API, campaign emails
sent through the real outbox to the Gmail stand-in with and without tracking, and the
pixel and redirect routes counting who fetched them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import lxml.html
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.contacts import TokenScope, UserRole
from domain.mail import OutgoingEmail, SendStatus
from domain.tracking import TrackClaims, TrackKind
from handlers.api.tracking import PIXEL_GIF
from integrations.crypto import LinkSigner
from integrations.tracking import TrackingTokens
from storage import models as m
from tests.support.accounts import create_org, create_token, ensure_user
from tests.support.api import TEST_SECRET_KEY
from tests.support.gmail_app import (
    DANA,
    RAY,
    GmailWorld,
    connected_gmail_world,
    raw_header,
    unsubscribe_url,
)
from tests.support.google import GoogleServer

SETTINGS = "/api/marketing/analytics-settings"
BASE = "http://testserver"
RATES = "https://pinnacle.example/rates?county=travis&days=5"
TURN_TIMES = "https://lonestar.example/turn-times"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
APPLE_PRIVACY = "Mozilla/5.0"
SCANNER = "Barracuda Sentinel (EE)"
HTML = (
    "<html><body><p>Hi Dana,</p>"
    f"<p>Our <a href='{RATES.replace('&', '&amp;')}'>rates</a> and "
    f'<a href="{TURN_TIMES}">turn times</a>. Questions? '
    "<a href='mailto:maria@lonestar.example.com'>Write to me</a>.</p>"
    "<p>Maria</p></body></html>"
)
TEXT = f"Hi Dana,\n\nOur rates: {RATES}\n\nMaria"


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[GmailWorld]:
    with connected_gmail_world(engine, session_factory, clock, google) as built:
        yield built


# --- helpers ---------------------------------------------------------------------------------


def org_wide(world: GmailWorld) -> dict[str, str]:
    """An organization-wide token: it acts for the whole organization, as an admin does."""
    return world.auth(world.userless_token)


def turn_tracking(world: GmailWorld, *, opens: bool = True, clicks: bool = True) -> None:
    answer = world.client.put(
        SETTINGS, json={"tracking": {"opens": opens, "clicks": clicks}}, headers=org_wide(world)
    )
    assert answer.status_code == 200, answer.text


def add_job(world: GmailWorld, org_id: int | None = None) -> int:
    with world.session_factory() as session:
        job = m.Job(org_id=org_id or world.org_id, owner_id=None, name="Win-back", status="running")
        session.add(job)
        session.commit()
        return job.id


def campaign_email(world: GmailWorld, job_id: int | None, **overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "org_id": world.org_id,
        "to_email": DANA,
        "to_name": "Dana Whitfield",
        "subject": "Turn times in Travis County are down to 5 days",
        "body_text": TEXT,
        "body_html": HTML,
        "sender_user_id": world.rep_id,
        "contact_id": world.contact_ids[DANA],
        "job_id": job_id,
        "campaign_email": True,
    }
    return OutgoingEmail(**{**values, **overrides})


def send(world: GmailWorld, email: OutgoingEmail) -> int:
    outcome = world.gmail.mailer.send(email)
    assert outcome.status == SendStatus.SENT, outcome.detail
    return outcome.email_send_id


def sent_message(world: GmailWorld, index: int = -1) -> EmailMessage:
    return world.sent()[index].message


def part(message: EmailMessage, subtype: str) -> str:
    found = message.get_body(preferencelist=(subtype,))
    assert found is not None
    return str(found.get_content())


def links(html: str) -> list[str]:
    return [str(a.get("href")) for a in lxml.html.document_fromstring(html).iter("a")]


def pixels(html: str) -> list[str]:
    root = lxml.html.document_fromstring(html)
    return [str(img.get("src")) for img in root.iter("img") if "/t/o/" in str(img.get("src"))]


def path(url: str) -> str:
    assert url.startswith(BASE + "/"), url
    return url.removeprefix(BASE)


def tracked_paths(world: GmailWorld, index: int = -1) -> tuple[str, list[str]]:
    """The pixel's path and the redirecting links' paths of a sent email."""
    html = part(sent_message(world, index), "html")
    (pixel,) = pixels(html)
    return path(pixel), [path(u) for u in links(html) if u.startswith(BASE + "/t/c/")]


def fetch(world: GmailWorld, url: str, agent: str = CHROME, method: str = "GET") -> Any:
    return world.client.request(method, url, headers={"User-Agent": agent}, follow_redirects=False)


Event = tuple[int, str, int, str | None, bool, str | None, str | None, int]


def events(world: GmailWorld) -> list[Event]:
    """(send, kind, link, url, by_bot, reason, user agent, hits) of every counted fetch."""
    e = m.EmailTrackingEvent
    with world.session_factory() as session:
        rows = session.execute(
            select(
                e.email_send_id,
                e.kind,
                e.link_index,
                e.url,
                e.by_bot,
                e.bot_reason,
                e.user_agent,
                e.hits,
            ).order_by(e.email_send_id, e.kind, e.link_index, e.by_bot)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def tracked_flag(world: GmailWorld, send_id: int) -> bool:
    with world.session_factory() as session:
        row = session.get(m.EmailSend, send_id)
        assert row is not None
        return row.tracked


def sign(claims: TrackClaims, *, key: str = TEST_SECRET_KEY, purpose: str = "track") -> str:
    return TrackingTokens(LinkSigner(key, purpose=purpose)).sign(claims)


def far_future() -> datetime:
    return datetime(2027, 12, 1, tzinfo=UTC)


# --- what goes out -----------------------------------------------------------------------------


def test_with_tracking_off_a_campaign_email_carries_no_pixel_and_its_links_stay(
    world: GmailWorld,
) -> None:
    assert world.client.get(SETTINGS, headers=world.auth()).json()["tracking"] == {
        "opens": False,
        "clicks": False,
    }

    send_id = send(world, campaign_email(world, add_job(world)))

    html = part(sent_message(world), "html")
    assert pixels(html) == []
    assert "/t/o/" not in html
    assert "/t/c/" not in html
    assert links(html) == [
        RATES,
        TURN_TIMES,
        "mailto:maria@lonestar.example.com",
        unsubscribe_url(world.org_id, world.contact_ids[DANA]),
    ]
    assert tracked_flag(world, send_id) is False


def test_with_tracking_on_the_email_in_the_mailbox_has_the_pixel_and_redirecting_links(
    world: GmailWorld,
) -> None:
    turn_tracking(world)

    send_id = send(world, campaign_email(world, add_job(world)))

    message = sent_message(world)
    html = part(message, "html")
    unsubscribe = unsubscribe_url(world.org_id, world.contact_ids[DANA])
    found = links(html)
    assert [u.startswith(f"{BASE}/t/c/") for u in found] == [True, True, False, False]
    assert found[2:] == ["mailto:maria@lonestar.example.com", unsubscribe]
    read = TrackingTokens(LinkSigner(TEST_SECRET_KEY, purpose="track"))
    claims = [read.read(u.removeprefix(f"{BASE}/t/c/")) for u in found[:2]]
    assert [(c.org_id, c.send_id, c.link_index, c.url) for c in claims if c is not None] == [
        (world.org_id, send_id, 0, RATES),
        (world.org_id, send_id, 1, TURN_TIMES),
    ]
    (pixel,) = pixels(html)
    assert f'<img src="{pixel}" width="1" height="1" alt="" style="display:none">' in html
    assert pixel.startswith(f"{BASE}/t/o/")
    assert pixel.endswith(".gif")
    # The plain text and the List-Unsubscribe header stay as they were.
    text = part(message, "plain")
    assert RATES in text
    assert "/t/" not in text
    assert raw_header(world.sent()[-1].raw, "List-Unsubscribe").startswith(
        f"List-Unsubscribe: <{unsubscribe}>"
    )
    assert tracked_flag(world, send_id) is True


def test_a_text_only_campaign_email_is_tracked_in_its_html_part_only(world: GmailWorld) -> None:
    turn_tracking(world, opens=False, clicks=True)

    send(world, campaign_email(world, add_job(world), body_html=None))

    message = sent_message(world)
    html = part(message, "html")
    assert pixels(html) == []
    assert [u.startswith(f"{BASE}/t/c/") for u in links(html)] == [True, False]
    assert RATES in part(message, "plain")


def test_answers_to_replies_and_one_off_emails_are_never_tracked(world: GmailWorld) -> None:
    turn_tracking(world)
    job_id = add_job(world)

    answer = send(world, campaign_email(world, job_id, campaign_email=False))
    one_off = send(world, campaign_email(world, None, to_email=RAY, contact_id=None))

    for index, send_id in ((0, answer), (1, one_off)):
        html = part(sent_message(world, index), "html")
        assert "/t/o/" not in html
        assert "/t/c/" not in html
        assert tracked_flag(world, send_id) is False


def stored_html(world: GmailWorld, send_id: int) -> str:
    with world.session_factory() as session:
        row = session.get(m.EmailSend, send_id)
        assert row is not None
        assert row.body_html is not None
        return row.body_html


def test_an_email_queued_for_a_retry_goes_out_with_the_tracked_body_made_when_it_was_queued(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    world.google.gmail.fail_next("messages.send", 429, "rateLimitExceeded", retry_after=120)

    queued = world.gmail.mailer.send(campaign_email(world, add_job(world)))
    made = stored_html(world, queued.email_send_id)
    clock.advance(seconds=151)
    assert world.drain() == 1

    assert queued.status == SendStatus.QUEUED
    assert stored_html(world, queued.email_send_id) == made
    html = part(sent_message(world), "html")
    unsubscribe = unsubscribe_url(world.org_id, world.contact_ids[DANA])
    assert links(html) == [*links(made), unsubscribe]
    assert pixels(html) == pixels(made)
    assert len(pixels(made)) == 1


# --- the pixel ---------------------------------------------------------------------------------


def test_a_person_fetching_the_pixel_twice_counts_one_open_with_two_hits(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    send_id = send(world, campaign_email(world, add_job(world)))
    pixel, _ = tracked_paths(world)

    clock.advance(minutes=5)
    first = fetch(world, pixel)
    clock.advance(minutes=20)
    second = fetch(world, pixel)

    for answer in (first, second):
        assert answer.status_code == 200
        assert answer.content == PIXEL_GIF
        assert len(answer.content) == 43
        assert answer.headers["content-type"] == "image/gif"
        assert "no-store" in answer.headers["cache-control"]
        assert "no-cache" in answer.headers["cache-control"]
    assert events(world) == [(send_id, "open", -1, None, False, None, CHROME, 2)]
    e = m.EmailTrackingEvent
    with world.session_factory() as session:
        first_at, last_at, contact_id = session.execute(
            select(e.first_at, e.last_at, e.contact_id)
        ).one()
    assert (last_at - first_at, contact_id) == (timedelta(minutes=20), world.contact_ids[DANA])


def test_proxies_prefetchers_and_scanners_are_counted_apart_from_people(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    job_id = add_job(world)
    dana = send(world, campaign_email(world, job_id))
    dana_pixel, dana_links = tracked_paths(world)
    ray = send(
        world, campaign_email(world, job_id, to_email=RAY, contact_id=world.contact_ids[RAY])
    )
    ray_pixel, _ = tracked_paths(world)

    # At delivery: Gmail's proxy prefetches the image, a gateway scans the first link.
    clock.advance(seconds=2)
    fetch(world, dana_pixel, GMAIL_PROXY)
    assert fetch(world, dana_links[0], SCANNER).status_code == 302
    # Later: Dana opens it in Gmail; Apple's privacy proxy fetches Ray's; a HEAD probe.
    clock.advance(minutes=10)
    fetch(world, dana_pixel, GMAIL_PROXY)
    fetch(world, ray_pixel, APPLE_PRIVACY)
    assert fetch(world, ray_pixel, CHROME, method="HEAD").status_code == 200

    assert events(world) == [
        (dana, "click", 0, RATES, True, "at_delivery", SCANNER, 1),
        (dana, "open", -1, None, False, None, GMAIL_PROXY, 1),
        (dana, "open", -1, None, True, "at_delivery", GMAIL_PROXY, 1),
        (ray, "open", -1, None, True, "apple_privacy", APPLE_PRIVACY, 2),
    ]


def test_no_user_agent_and_a_long_one_are_counted_as_such(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    send_id = send(world, campaign_email(world, add_job(world)))
    pixel, _ = tracked_paths(world)
    clock.advance(minutes=5)

    fetch(world, pixel, agent=CHROME + " x" * 400)
    fetch(world, pixel, agent="")

    kept = (CHROME + " x" * 400)[:300]
    assert events(world) == [
        (send_id, "open", -1, None, False, None, kept, 1),
        (send_id, "open", -1, None, True, "no_user_agent", None, 1),
    ]


# --- the redirect ------------------------------------------------------------------------------


def test_a_click_redirects_to_the_original_url_and_a_replay_counts_on_the_same_row(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    send_id = send(world, campaign_email(world, add_job(world)))
    _, (rates, turn_times) = tracked_paths(world)
    clock.advance(minutes=3)

    answers = [fetch(world, rates), fetch(world, rates), fetch(world, turn_times)]

    assert [(a.status_code, a.headers["location"]) for a in answers] == [
        (302, RATES),
        (302, RATES),
        (302, TURN_TIMES),
    ]
    assert answers[0].headers["referrer-policy"] == "no-referrer"
    assert events(world) == [
        (send_id, "click", 0, RATES, False, None, CHROME, 2),
        (send_id, "click", 1, TURN_TIMES, False, None, CHROME, 1),
    ]


def test_forged_and_foreign_tokens_answer_without_counting_or_redirecting_elsewhere(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    send_id = send(world, campaign_email(world, add_job(world)))
    pixel, (rates, _) = tracked_paths(world)
    clock.advance(minutes=5)
    token = rates.removeprefix("/t/c/")
    evil = TrackClaims(
        world.org_id,
        send_id,
        TrackKind.CLICK,
        far_future(),
        link_index=0,
        url="https://evil.example/",
    )
    refused_clicks = [
        "/t/c/" + sign(evil, key="another-secret-key-0123456789-abcdefghijk"),
        "/t/c/" + sign(evil, purpose="unsubscribe"),
        "/t/c/" + token[:-4],
        "/t/c/" + token.split(".")[0] + "." + sign(evil).split(".")[1],
        "/t/c/" + pixel.removeprefix("/t/o/").removesuffix(".gif"),  # an open's token
        "/t/c/not-a-token",
        "/t/c/" + "A" * 5000,
        "/t/c/",
        "/t/c/" + token + "/more",
    ]

    for url in refused_clicks:
        answer = fetch(world, url)
        assert answer.status_code == 400, url
        assert answer.headers["content-type"].startswith("text/html")
        assert "<h1>This link is invalid</h1>" in answer.text
        assert "location" not in answer.headers
        for internal in ("Traceback", "token", "signature", "InvalidInput", "evil"):
            assert internal not in answer.text
    forged = [u for u in refused_clicks if u != "/t/c/" + pixel.removeprefix("/t/o/")[:-4]]
    for url in (
        ["/t/o/" + u.removeprefix("/t/c/") + ".gif" for u in forged]
        + [
            "/t/o/.gif",
            "/t/o/" + token + ".gif",  # a click's token
            "/t/o/" + pixel.removeprefix("/t/o/")[:-4],  # the pixel's token without .gif
        ]
    ):
        answer = fetch(world, url)
        assert (answer.status_code, answer.content) == (200, PIXEL_GIF), url
    assert events(world) == []


def test_an_expired_link_still_leads_to_its_page_but_counts_nothing(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    send(world, campaign_email(world, add_job(world)))
    pixel, (rates, _) = tracked_paths(world)

    clock.advance(days=366)

    assert (fetch(world, rates).status_code, fetch(world, rates).headers["location"]) == (
        302,
        RATES,
    )
    assert fetch(world, pixel).content == PIXEL_GIF
    assert events(world) == []


def test_a_token_of_one_organization_cannot_count_for_another_organizations_send(
    world: GmailWorld, clock: FixedClock
) -> None:
    turn_tracking(world)
    ours = send(world, campaign_email(world, add_job(world)))
    with world.session_factory() as session:
        rival = create_org(session, slug="rival", name="Rival Appraisals")
        theirs = m.EmailSend(
            org_id=rival.id,
            message_id="<rival-1@testserver>",
            to_email="someone@rival.example",
            subject="Hello",
            status="sent",
            tracked=True,
            sent_at=clock.now(),
        )
        session.add(theirs)
        session.commit()
        theirs_id, rival_id = theirs.id, rival.id
    clock.advance(minutes=5)

    crossed = [
        TrackClaims(world.org_id, theirs_id, TrackKind.OPEN, far_future()),
        TrackClaims(rival_id, ours, TrackKind.OPEN, far_future()),
    ]
    for claims in crossed:
        assert fetch(world, f"/t/o/{sign(claims)}.gif").content == PIXEL_GIF
    click = TrackClaims(rival_id, ours, TrackKind.CLICK, far_future(), link_index=0, url=RATES)
    assert fetch(world, f"/t/c/{sign(click)}").status_code == 302

    assert events(world) == []


def test_the_tracking_routes_take_no_body(world: GmailWorld) -> None:
    answer = world.client.request(
        "GET", "/t/o/x.gif", content=b"x" * 2048, headers={"Content-Type": "text/plain"}
    )

    assert answer.status_code == 413


# --- the settings API --------------------------------------------------------------------------


def admin_headers(world: GmailWorld) -> dict[str, str]:
    with world.session_factory() as session:
        admin = ensure_user(
            session, world.org_id, email="ana@lonestar.example.com", role=UserRole.ADMIN
        )
        _, token = create_token(session, world.org_id, name="ana", user_id=admin)
        session.commit()
    return world.auth(token)


def test_an_admin_turns_tracking_on_and_anyone_of_the_organization_reads_it(
    world: GmailWorld,
) -> None:
    defaults = world.client.get(SETTINGS, headers=world.auth())
    assert defaults.status_code == 200
    assert defaults.json()["tracking"] == {"opens": False, "clicks": False}

    wanted = {**defaults.json(), "tracking": {"opens": True, "clicks": False}}
    saved = world.client.put(SETTINGS, json=wanted, headers=admin_headers(world))

    assert saved.status_code == 200, saved.text
    assert saved.json() == wanted
    assert world.client.get(SETTINGS, headers=world.auth()).json() == wanted
    with world.session_factory() as session:
        stored = session.scalar(
            select(m.Organization.analytics_settings).where(m.Organization.id == world.org_id)
        )
    assert stored == {"tracking": {"opens": True}}
    # Back to the defaults: nothing is stored.
    assert world.client.put(SETTINGS, json={}, headers=admin_headers(world)).json() == (
        defaults.json()
    )
    with world.session_factory() as session:
        assert (
            session.scalar(
                select(m.Organization.analytics_settings).where(m.Organization.id == world.org_id)
            )
            == {}
        )


def test_only_admins_and_organization_tokens_change_the_settings(world: GmailWorld) -> None:
    body = {"tracking": {"opens": True, "clicks": True}}
    with world.session_factory() as session:
        _, reader = create_token(session, world.org_id, name="reader", scope=TokenScope.READ)
        session.commit()

    rep = world.client.put(SETTINGS, json=body, headers=world.auth())
    read_only = world.client.put(SETTINGS, json=body, headers=world.auth(reader))
    anonymous = world.client.put(SETTINGS, json=body)

    assert rep.status_code == 403
    assert rep.json()["error"]["message"] == (
        "Only an admin can change the analytics settings; ask an admin of your organization."
    )
    assert read_only.status_code == 403
    assert anonymous.status_code == 401
    assert world.client.get(SETTINGS, headers=world.auth()).json()["tracking"] == {
        "opens": False,
        "clicks": False,
    }
    assert world.client.put(SETTINGS, json=body, headers=org_wide(world)).status_code == 200


def test_bad_json_and_unknown_fields_are_refused_with_a_clear_message(world: GmailWorld) -> None:
    headers = org_wide(world)

    unknown = world.client.put(
        SETTINGS, json={"tracking": {"opens": True, "pixel": "big"}}, headers=headers
    )
    unknown_section = world.client.put(SETTINGS, json={"trackin": {}}, headers=headers)
    wrong_type = world.client.put(SETTINGS, json={"tracking": {"opens": "maybe"}}, headers=headers)
    not_json = world.client.put(
        SETTINGS, content=b"{tracking:", headers={**headers, "Content-Type": "application/json"}
    )

    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"] == [
        {"field": "tracking.pixel", "message": "Extra inputs are not permitted"}
    ]
    assert unknown_section.status_code == 422
    assert unknown_section.json()["error"]["details"] == [
        {"field": "trackin", "message": "Extra inputs are not permitted"}
    ]
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["message"].startswith("invalid request: tracking.opens:")
    assert not_json.status_code == 422
    assert "JSON decode error" in not_json.json()["error"]["message"]
    assert world.client.get(SETTINGS, headers=headers).json()["tracking"] == {
        "opens": False,
        "clicks": False,
    }


def test_a_stored_section_this_release_does_not_know_is_kept(world: GmailWorld) -> None:
    future = {"attribution": {"window_days": 7}}
    with world.session_factory() as session:
        session.execute(
            update(m.Organization)
            .where(m.Organization.id == world.org_id)
            .values(analytics_settings={**future, "tracking": {"clicks": True}})
        )
        session.commit()

    read = world.client.get(SETTINGS, headers=world.auth())
    saved = world.client.put(SETTINGS, json={"tracking": {"opens": True}}, headers=org_wide(world))

    assert read.status_code == 200
    assert "attribution" not in read.json()
    assert read.json()["tracking"] == {"opens": False, "clicks": True}
    assert saved.json()["tracking"] == {"opens": True, "clicks": False}
    with world.session_factory() as session:
        stored = session.scalar(
            select(m.Organization.analytics_settings).where(m.Organization.id == world.org_id)
        )
    assert stored == {**future, "tracking": {"opens": True}}


def test_a_stored_section_that_no_longer_validates_reads_as_its_defaults(
    world: GmailWorld,
) -> None:
    with world.session_factory() as session:
        session.execute(
            update(m.Organization)
            .where(m.Organization.id == world.org_id)
            .values(analytics_settings={"tracking": {"opens": "sometimes"}})
        )
        session.commit()

    read = world.client.get(SETTINGS, headers=world.auth())
    send_id = send(world, campaign_email(world, add_job(world)))

    assert read.status_code == 200
    assert read.json()["tracking"] == {"opens": False, "clicks": False}
    assert tracked_flag(world, send_id) is False
