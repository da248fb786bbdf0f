"""Connecting Gmail: consent with PKCE through google-auth-oauthlib and the OAuth stand-in.

Every test runs on SQLite and PostgreSQL, inside the test's rolled-back transaction.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.contacts import UserRole
from integrations.crypto import LinkSigner, SecretBox
from integrations.gmail.client import GMAIL_SCOPES
from sandbox.google_oauth import SCOPE_GMAIL_SEND, SCOPE_USERINFO_EMAIL
from storage import models as m
from storage.models import gmail as mg
from tests.support.accounts import create_token, ensure_user
from tests.support.api import TEST_SECRET_KEY
from tests.support.gmail_app import (
    OTHER_REP_EMAIL,
    REP_EMAIL,
    GmailWorld,
    consent_query,
    gmail_world,
    open_connect_link,
)
from tests.support.google import GoogleServer, follow_consent


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[GmailWorld]:
    with gmail_world(engine, session_factory, clock, google) as built:
        yield built


def code_exchanges(world: GmailWorld) -> list[tuple[str, str | None]]:
    return [
        (r.grant_type, r.error)
        for r in world.google.oauth.token_requests
        if r.grant_type == "authorization_code"
    ]


def test_connect_asks_google_for_offline_consent_with_pkce_s256_and_the_four_scopes(
    world: GmailWorld,
) -> None:
    query = consent_query(world.consent_url())

    assert query["client_id"] == "salesbot-sandbox.apps.googleusercontent.com"
    assert query["redirect_uri"] == "http://testserver/api/integrations/gmail/callback"
    assert query["scope"].split() == list(GMAIL_SCOPES)
    assert (query["access_type"], query["prompt"]) == ("offline", "consent")
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["login_hint"] == REP_EMAIL
    with world.session_factory() as session:
        states = session.scalars(select(mg.GmailOAuthState)).all()
    assert [(s.user_id, s.used_at) for s in states] == [(world.rep_id, None)]
    verifier = SecretBox(TEST_SECRET_KEY).decrypt_bytes(states[0].code_verifier_encrypted)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert challenge.decode().rstrip("=") == query["code_challenge"]


def test_callback_stores_tokens_encrypted_and_status_shows_the_address(
    world: GmailWorld,
) -> None:
    answer = world.connect()

    assert answer.status_code == 200
    assert f"Salesbot can now send from and read {REP_EMAIL}" in answer.text
    assert code_exchanges(world) == [("authorization_code", None)]
    grant = world.google.oauth.grants(REP_EMAIL)[0]
    account = world.account()
    assert account.user_id == world.rep_id
    assert account.refresh_token_encrypted is not None
    assert account.access_token_encrypted is not None
    refresh_token = grant.refresh_tokens[-1]
    assert refresh_token.encode() not in account.refresh_token_encrypted
    box = SecretBox(TEST_SECRET_KEY)
    assert box.decrypt_bytes(account.refresh_token_encrypted) == refresh_token
    live = [t.token for t in world.google.oauth.issued_access_tokens(REP_EMAIL)]
    assert box.decrypt_bytes(account.access_token_encrypted) == live[-1]
    status = world.client.get("/api/integrations/gmail/status", headers=world.auth())
    assert status.status_code == 200
    assert status.json() == {
        "connected": True,
        "email": REP_EMAIL,
        "status": "connected",
        "scopes": list(GMAIL_SCOPES),
        "daily_send_cap": 400,
        "min_send_interval_seconds": 5,
        "sent_last_24h": 0,
        "disconnected_at": None,
        "disconnected_reason": None,
    }


def test_slack_app_home_link_redirects_to_google_and_connects_that_user(
    world: GmailWorld,
) -> None:
    world.google.add_mailbox(OTHER_REP_EMAIL)
    world.google.oauth.set_consenting_user(OTHER_REP_EMAIL)
    link = world.gmail.gmail_connect_link(world.other_rep_id, world.org_id)

    redirect = world.client.get(
        urlsplit(link).path + "?" + urlsplit(link).query, follow_redirects=False
    )
    assert redirect.status_code == 302
    consent = redirect.headers["location"]
    assert consent.startswith(world.server.urls.auth_uri + "?")
    assert consent_query(consent)["login_hint"] == OTHER_REP_EMAIL
    location = urlsplit(follow_consent(consent))
    answer = world.client.get(f"{location.path}?{location.query}")

    assert answer.status_code == 200
    assert world.account(OTHER_REP_EMAIL).user_id == world.other_rep_id
    status = world.client.get("/api/integrations/gmail/status", headers=world.auth())
    assert status.json()["connected"] is False


def test_forged_connect_link_is_refused(world: GmailWorld) -> None:
    forged = LinkSigner("another-secret-key-0123456789-abcdefghij", purpose="gmail-connect").sign(
        {"u": world.rep_id, "o": world.org_id}
    )

    answer = world.client.get(f"/api/integrations/gmail/connect?u={forged}")

    assert answer.status_code == 400
    assert "This Gmail connection link is not valid or has expired" in answer.text
    with world.session_factory() as session:
        assert session.scalars(select(mg.GmailOAuthState)).all() == []


def test_replayed_callback_is_refused_and_exchanges_no_second_code(world: GmailWorld) -> None:
    world.google.add_mailbox(REP_EMAIL)
    world.google.oauth.set_consenting_user(REP_EMAIL)
    callback = world.callback_path(world.consent_url())

    first = world.client.get(callback)
    replayed = world.client.get(callback)

    assert first.status_code == 200
    assert replayed.status_code == 400
    assert "This Gmail connection link was already used or has expired" in replayed.text
    assert code_exchanges(world) == [("authorization_code", None)]


def test_forged_state_is_refused_before_any_code_exchange(world: GmailWorld) -> None:
    world.google.add_mailbox(REP_EMAIL)
    world.google.oauth.set_consenting_user(REP_EMAIL)
    callback = world.callback_path(world.consent_url())
    code = consent_query("http://x/?" + urlsplit(callback).query)["code"]
    forged = LinkSigner(
        "another-secret-key-0123456789-abcdefghij", purpose="gmail-oauth-state"
    ).sign({"n": "guess", "o": world.org_id, "u": world.rep_id})

    answer = world.client.get(
        "/api/integrations/gmail/callback", params={"state": forged, "code": code}
    )

    assert answer.status_code == 400
    assert "This Gmail connection link is not valid or has expired" in answer.text
    assert code_exchanges(world) == []
    with world.session_factory() as session:
        assert session.scalars(select(m.GmailAccount)).all() == []


def test_state_for_one_user_cannot_connect_another(world: GmailWorld) -> None:
    world.google.add_mailbox(REP_EMAIL)
    world.google.oauth.set_consenting_user(REP_EMAIL)
    callback = world.callback_path(world.consent_url())
    query = consent_query("http://x/?" + urlsplit(callback).query)
    signer = LinkSigner(TEST_SECRET_KEY, purpose="gmail-oauth-state")
    nonce = signer.verify(query["state"])["n"]
    swapped = signer.sign({"n": nonce, "o": world.org_id, "u": world.other_rep_id})

    answer = world.client.get(
        "/api/integrations/gmail/callback", params={"state": swapped, "code": query["code"]}
    )

    assert answer.status_code == 400
    assert code_exchanges(world) == []


def test_state_older_than_ten_minutes_is_refused(world: GmailWorld, clock: FixedClock) -> None:
    world.google.add_mailbox(REP_EMAIL)
    world.google.oauth.set_consenting_user(REP_EMAIL)
    callback = world.callback_path(world.consent_url())
    clock.advance(minutes=11)

    answer = world.client.get(callback)

    assert answer.status_code == 400
    assert "already used or has expired" in answer.text
    assert code_exchanges(world) == []


def test_consent_denied_at_google_connects_nothing(world: GmailWorld) -> None:
    world.google.add_mailbox(REP_EMAIL)
    world.google.oauth.set_consenting_user(REP_EMAIL)
    world.google.oauth.deny_consent()

    answer = world.client.get(world.callback_path(world.consent_url()))

    assert answer.status_code == 400
    assert "Gmail was not connected: Google answered “access_denied”" in answer.text
    status = world.client.get("/api/integrations/gmail/status", headers=world.auth())
    assert status.json()["connected"] is False


def test_consent_without_every_scope_is_refused_and_the_grant_revoked(world: GmailWorld) -> None:
    world.google.add_mailbox(REP_EMAIL)
    world.google.oauth.set_consenting_user(
        REP_EMAIL, granted_scopes=[SCOPE_GMAIL_SEND, SCOPE_USERINFO_EMAIL]
    )

    answer = world.client.get(world.callback_path(world.consent_url()))

    assert answer.status_code == 400
    assert "tick every box" in answer.text
    assert [g.revoked for g in world.google.oauth.grants(REP_EMAIL)] == [True]
    with world.session_factory() as session:
        assert session.scalars(select(m.GmailAccount)).all() == []


def test_disconnect_revokes_the_grant_at_google_and_deletes_the_tokens(
    world: GmailWorld,
) -> None:
    world.connect()

    answer = world.client.post("/api/integrations/gmail/disconnect", headers=world.auth())

    assert answer.status_code == 200
    assert answer.json() == {"disconnected": True, "email": REP_EMAIL, "revoked": True}
    assert [g.revoked for g in world.google.oauth.grants(REP_EMAIL)] == [True]
    account = world.account()
    assert (account.status, account.disconnected_reason) == (
        "disconnected",
        "disconnected by the rep",
    )
    assert (account.refresh_token_encrypted, account.access_token_encrypted) == (None, None)
    status = world.client.get("/api/integrations/gmail/status", headers=world.auth()).json()
    assert (status["connected"], status["disconnected_reason"]) == (
        False,
        "disconnected by the rep",
    )
    again = world.client.post("/api/integrations/gmail/disconnect", headers=world.auth())
    assert again.status_code == 404


def test_status_of_a_rep_without_a_mailbox_says_not_connected(world: GmailWorld) -> None:
    answer = world.client.get("/api/integrations/gmail/status", headers=world.auth())

    assert answer.status_code == 200
    assert answer.json()["connected"] is False
    assert answer.json()["email"] is None


def test_a_token_without_a_user_cannot_connect_gmail(world: GmailWorld) -> None:
    answer = world.client.get(
        "/api/integrations/gmail/connect", headers=world.auth(world.userless_token)
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["message"].startswith("This API token is not tied to a user")


def test_connect_without_credentials_is_unauthorized(world: GmailWorld) -> None:
    answer = world.client.get("/api/integrations/gmail/connect")

    assert answer.status_code == 401


def test_gmail_routes_answer_503_when_google_is_not_configured(
    engine: Engine, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    from tests.support.api import make_api_world

    api = make_api_world(engine, session_factory, clock)

    status = api.client.get("/api/integrations/gmail/status", headers=api.auth())
    send = api.client.post(
        "/api/email/send",
        json={"to": "dana@pinnacle.example.com", "subject": "Hi", "body_text": "Hi"},
        headers=api.auth(),
    )

    assert (status.status_code, send.status_code) == (503, 503)
    assert status.json()["error"]["message"] == (
        "Gmail is not configured on this server: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET."
    )


# --- whose mailbox a consent may connect ----------------------------------------------------

ADMIN_EMAIL = "ana@lonestar.example.com"
SHARED_EMAIL = "orders@lonestar.example.com"


def another_browser(world: GmailWorld) -> TestClient:
    """A second browser on the same app: its own cookie jar, no cookie of the rep's."""
    return TestClient(world.client.app, raise_server_exceptions=False)


def app_home_link(world: GmailWorld, user_id: int) -> str:
    """The signed link Slack's App Home shows a user, as a path and query."""
    link = urlsplit(world.gmail.gmail_connect_link(user_id, world.org_id))
    return f"{link.path}?{link.query}"


def finish_in(browser: TestClient, consent_url: str) -> str:
    """Consent at Google from a browser and land on the callback; return the page."""
    location = urlsplit(follow_consent(consent_url))
    answer = browser.get(f"{location.path}?{location.query}")
    assert answer.status_code in (200, 400), answer.text
    return html.unescape(answer.text) if answer.status_code == 400 else "connected"


def start_from_app_home(world: GmailWorld, browser: TestClient, user_id: int) -> str:
    """Open a user's App Home link in a browser; return Google's consent URL."""
    answer = browser.get(app_home_link(world, user_id), follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


def connect_from_app_home(world: GmailWorld, browser: TestClient, user_id: int, email: str) -> str:
    """Connect a user's mailbox from their App Home link in their browser."""
    world.google.add_mailbox(email)
    world.google.oauth.set_consenting_user(email)
    return finish_in(browser, start_from_app_home(world, browser, user_id))


def add_admin(world: GmailWorld) -> str:
    """Add an admin to the organization; return their API token."""
    with world.session_factory() as session:
        admin_id = ensure_user(session, world.org_id, email=ADMIN_EMAIL, role=UserRole.ADMIN)
        _, token = create_token(session, world.org_id, name="ana", user_id=admin_id)
        session.commit()
    return token


def allow(world: GmailWorld, token: str, user_email: str, address: str | None) -> object:
    return world.client.put(
        "/api/integrations/gmail/allowed-address",
        json={"user_email": user_email, "address": address},
        headers=world.auth(token),
    )


def test_a_consent_link_forwarded_to_another_browser_does_not_take_over_its_mailbox(
    world: GmailWorld,
) -> None:
    other_browser = another_browser(world)
    connect_from_app_home(world, other_browser, world.other_rep_id, OTHER_REP_EMAIL)
    before = world.account(OTHER_REP_EMAIL)
    forwarded = start_from_app_home(world, world.client, world.rep_id)
    world.google.oauth.set_consenting_user(OTHER_REP_EMAIL)

    page = finish_in(other_browser, forwarded)

    assert "This Gmail connection was started in another browser" in page
    assert "Start again from Salesbot's App Home in Slack" in page
    assert code_exchanges(world) == [("authorization_code", None)]
    after = world.account(OTHER_REP_EMAIL)
    assert (after.user_id, after.status) == (world.other_rep_id, "connected")
    assert after.refresh_token_encrypted == before.refresh_token_encrypted
    sent = world.send()
    world.drain()
    assert sent.status_code == 422
    assert world.sent(OTHER_REP_EMAIL) == []


def test_a_consent_finished_with_the_cookie_of_another_consent_is_refused(
    world: GmailWorld,
) -> None:
    world.google.add_mailbox(OTHER_REP_EMAIL)
    forwarded = world.consent_url()
    other_browser = another_browser(world)
    open_connect_link(other_browser, world.connect_link(world.other_token))
    world.google.oauth.set_consenting_user(OTHER_REP_EMAIL)

    page = finish_in(other_browser, forwarded)

    assert "This Gmail connection was started in another browser" in page
    assert code_exchanges(world) == []
    with world.session_factory() as session:
        assert session.scalars(select(m.GmailAccount)).all() == []


def test_the_connect_link_sets_an_httponly_lax_cookie_whose_hash_is_in_the_state(
    world: GmailWorld,
) -> None:
    answer = world.client.get(app_home_link(world, world.rep_id), follow_redirects=False)

    header = answer.headers["set-cookie"]
    cookie = SimpleCookie(header)["salesbot_gmail_consent"]
    assert (cookie["path"], cookie["max-age"], cookie["samesite"]) == (
        "/api/integrations/gmail",
        "600",
        "lax",
    )
    assert "HttpOnly" in header
    assert "Secure" not in header  # the test server is plain http
    state = consent_query(answer.headers["location"])["state"]
    claims = LinkSigner(TEST_SECRET_KEY, purpose="gmail-oauth-state").verify(state)
    assert claims["b"] == hashlib.sha256(cookie.value.encode()).hexdigest()


def test_the_consent_cookie_is_secure_when_salesbot_is_served_over_https(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> None:
    with gmail_world(
        engine,
        session_factory,
        clock,
        google,
        extra_settings={"PUBLIC_BASE_URL": "https://salesbot.example.com"},
    ) as built:
        answer = built.client.get(app_home_link(built, built.rep_id), follow_redirects=False)

    assert answer.status_code == 302
    assert "Secure" in answer.headers["set-cookie"]


def test_an_api_client_gets_a_link_to_open_in_the_browser_not_googles_url(
    world: GmailWorld,
) -> None:
    answer = world.client.get("/api/integrations/gmail/connect", headers=world.auth())

    assert answer.status_code == 200
    assert answer.json()["expires_in"] == 600
    link = answer.json()["authorization_url"]
    assert link.startswith("http://testserver/api/integrations/gmail/connect?u=")
    assert "set-cookie" not in answer.headers


def test_a_google_account_that_is_not_the_reps_address_is_refused_and_left_alone(
    world: GmailWorld,
) -> None:
    world.google.add_mailbox(OTHER_REP_EMAIL)
    world.google.oauth.set_consenting_user(OTHER_REP_EMAIL)

    page = finish_in(world.client, start_from_app_home(world, world.client, world.rep_id))

    assert (
        f"You signed in to Google as {OTHER_REP_EMAIL}, but your Salesbot address is"
        f" {REP_EMAIL}." in page
    )
    assert "ask an admin to allow that address first" in page
    with world.session_factory() as session:
        assert session.scalars(select(m.GmailAccount)).all() == []
    assert [g.revoked for g in world.google.oauth.grants(OTHER_REP_EMAIL)] == [False]


def test_an_address_an_admin_allowed_connects_and_the_allowance_is_recorded(
    world: GmailWorld, clock: FixedClock
) -> None:
    admin = add_admin(world)
    allowed = allow(world, admin, REP_EMAIL, SHARED_EMAIL.upper())
    world.google.add_mailbox(SHARED_EMAIL)
    world.google.oauth.set_consenting_user(SHARED_EMAIL)

    page = finish_in(world.client, world.consent_url())

    assert allowed.status_code == 200  # type: ignore[attr-defined]
    assert allowed.json() == {  # type: ignore[attr-defined]
        "user_email": REP_EMAIL,
        "address": SHARED_EMAIL,
        "allowed_by": ADMIN_EMAIL,
        "allowed_at": clock.now().isoformat(),
    }
    assert page == "connected"
    assert world.account(SHARED_EMAIL).user_id == world.rep_id
    with world.session_factory() as session:
        rep = session.get(m.User, world.rep_id)
        assert rep is not None
        assert (rep.gmail_address_allowed, rep.gmail_address_allowed_by) == (
            SHARED_EMAIL,
            ADMIN_EMAIL,
        )


def test_only_an_admin_can_allow_another_address(world: GmailWorld) -> None:
    by_rep = allow(world, world.token, REP_EMAIL, SHARED_EMAIL)
    by_integration = allow(world, world.userless_token, REP_EMAIL, SHARED_EMAIL)

    assert by_rep.status_code == 403  # type: ignore[attr-defined]
    assert by_rep.json()["error"]["message"] == (  # type: ignore[attr-defined]
        "Only an admin can let a user connect a Gmail address other than their own."
    )
    assert by_integration.status_code == 403  # type: ignore[attr-defined]
    with world.session_factory() as session:
        rep = session.get(m.User, world.rep_id)
        assert rep is not None
        assert rep.gmail_address_allowed is None


def test_an_allowance_taken_back_refuses_that_address_again(world: GmailWorld) -> None:
    admin = add_admin(world)
    allow(world, admin, REP_EMAIL, SHARED_EMAIL)
    taken_back = allow(world, admin, REP_EMAIL, None)
    world.google.add_mailbox(SHARED_EMAIL)
    world.google.oauth.set_consenting_user(SHARED_EMAIL)

    page = finish_in(world.client, world.consent_url())

    assert taken_back.json()["address"] is None  # type: ignore[attr-defined]
    assert f"You signed in to Google as {SHARED_EMAIL}" in page


def test_a_mailbox_connected_by_another_user_stays_with_them_and_the_page_says_who(
    world: GmailWorld,
) -> None:
    connect_from_app_home(world, another_browser(world), world.other_rep_id, OTHER_REP_EMAIL)
    before = world.account(OTHER_REP_EMAIL)
    allow(world, add_admin(world), REP_EMAIL, OTHER_REP_EMAIL)
    world.google.oauth.set_consenting_user(OTHER_REP_EMAIL)

    page = finish_in(world.client, start_from_app_home(world, world.client, world.rep_id))

    assert (
        f"{OTHER_REP_EMAIL} is already connected to Salesbot by Jose Ruiz, and stays with them."
        in page
    )
    assert "ask Jose Ruiz to disconnect it first" in page
    after = world.account(OTHER_REP_EMAIL)
    assert (after.user_id, after.status) == (world.other_rep_id, "connected")
    assert after.refresh_token_encrypted == before.refresh_token_encrypted
    assert [g.revoked for g in world.google.oauth.grants(OTHER_REP_EMAIL)] == [False]


def test_a_mailbox_its_user_disconnected_can_be_connected_by_the_user_it_was_allowed_for(
    world: GmailWorld,
) -> None:
    assert world.connect(OTHER_REP_EMAIL, token=world.other_token).status_code == 200
    world.client.post("/api/integrations/gmail/disconnect", headers=world.auth(world.other_token))
    allow(world, add_admin(world), REP_EMAIL, OTHER_REP_EMAIL)
    world.google.oauth.set_consenting_user(OTHER_REP_EMAIL)

    page = finish_in(world.client, world.consent_url())

    assert page == "connected"
    assert world.account(OTHER_REP_EMAIL).user_id == world.rep_id
