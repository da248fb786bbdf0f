"""Slack OAuth install in our database: installation store, state store, Bolt's whole flow."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from slack_bolt import App, BoltContext, BoltRequest
from slack_bolt.context.ack import Ack
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk.oauth.installation_store import Bot, Installation
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from integrations.crypto import SecretBox
from sandbox.slack_api import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SlackStandIn
from storage import models as m
from storage.db import make_session_factory
from storage.slack_store import DbInstallationStore, DbOAuthStateStore, bind_installation_to_org
from tests.support.accounts import org_for_slack_team
from tests.support.builders import make_org
from tests.support.slack import (
    ServedSlack,
    signed_headers,
    slash_command_body,
)

SIGNING_SECRET = "sandbox-signing-secret"
REDIRECT_URI = "https://salesbot.example.com/slack/oauth_redirect"
INSTALLED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC).timestamp() + 0.123456
LATER = INSTALLED_AT + 3600


@pytest.fixture
def box() -> SecretBox:
    return SecretBox("test-secret-key-for-slack-tokens")


@pytest.fixture
def store(session_factory: Callable[[], Session], box: SecretBox) -> DbInstallationStore:
    return DbInstallationStore(session_factory, box, client_id=DEFAULT_CLIENT_ID)


@pytest.fixture
def states(session_factory: Callable[[], Session], clock: FixedClock) -> DbOAuthStateStore:
    return DbOAuthStateStore(session_factory, expiration_seconds=600, clock=clock)


def make_installation(**overrides: Any) -> Installation:
    """Return an install of the Pinnacle Lending workspace by Maria, bot token only."""
    values: dict[str, Any] = {
        "app_id": "A0SALESBOT",
        "team_id": "T0LENDER",
        "team_name": "Pinnacle Lending",
        "bot_token": "xoxb-1111-lender-bot-token",
        "bot_id": "B0LENDERBOT",
        "bot_user_id": "U0LENDERBOT",
        "bot_scopes": ["chat:write", "commands"],
        "user_id": "U0MARIA",
        "token_type": "bot",
        "installed_at": INSTALLED_AT,
    }
    values.update(overrides)
    return Installation(**values)


def find_lender(store: DbInstallationStore, **kwargs: Any) -> Installation | None:
    return store.find_installation(enterprise_id=None, team_id="T0LENDER", **kwargs)


def find_lender_bot(store: DbInstallationStore) -> Bot | None:
    return store.find_bot(enterprise_id=None, team_id="T0LENDER")


def count_rows(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(m.SlackInstallation)) or 0


# ---- installation store ------------------------------------------------------------------------


def test_saved_installation_reads_back_with_every_field(store: DbInstallationStore) -> None:
    installation = make_installation(
        enterprise_id="E0GRID",
        enterprise_name="Pinnacle Group",
        bot_refresh_token="xoxe-1-bot-refresh",
        bot_token_expires_at=int(LATER),
        user_token="xoxp-2222-maria-user-token",
        user_scopes=["search:read"],
        user_refresh_token="xoxe-1-user-refresh",
        user_token_expires_at=int(LATER) + 60,
        incoming_webhook_url="https://hooks.slack.com/services/T0LENDER/B0HOOK/secretpart",
        incoming_webhook_channel="#reviews",
        incoming_webhook_channel_id="C0REVIEWS",
        incoming_webhook_configuration_url="https://pinnacle.slack.com/services/B0HOOK",
    )

    store.save(installation)
    found = store.find_installation(enterprise_id="E0GRID", team_id="T0LENDER")
    bot = store.find_bot(enterprise_id="E0GRID", team_id="T0LENDER")

    assert found is not None
    assert bot is not None
    assert found.to_dict() == installation.to_dict()
    assert bot.to_dict() == installation.to_bot().to_dict()


def test_latest_installation_of_a_workspace_wins_whatever_the_order_of_saving(
    store: DbInstallationStore,
) -> None:
    store.save(make_installation(bot_token="xoxb-newer", installed_at=LATER))
    store.save(make_installation(bot_token="xoxb-older", installed_at=INSTALLED_AT))

    found, bot = find_lender(store), find_lender_bot(store)

    assert found is not None
    assert bot is not None
    assert (found.bot_token, bot.bot_token) == ("xoxb-newer", "xoxb-newer")


def test_installation_of_another_workspace_is_not_found(store: DbInstallationStore) -> None:
    store.save(make_installation())

    assert store.find_installation(enterprise_id=None, team_id="T0OTHER") is None
    assert store.find_bot(enterprise_id=None, team_id="T0OTHER") is None
    assert store.find_installation(enterprise_id="E0GRID", team_id="T0LENDER") is None


def test_installation_saved_for_another_app_is_not_found(
    session_factory: Callable[[], Session], box: SecretBox, store: DbInstallationStore
) -> None:
    other_app = DbInstallationStore(session_factory, box, client_id="9999.9999")
    other_app.save(make_installation())

    assert find_lender(store) is None


def test_installer_finds_their_user_token_with_the_workspace_latest_bot(
    store: DbInstallationStore,
) -> None:
    store.save(make_installation(bot_token="xoxb-first", user_token="xoxp-maria"))
    store.save(
        make_installation(
            bot_token="xoxb-second", user_id="U0DANA", user_token=None, installed_at=LATER
        )
    )

    maria = find_lender(store, user_id="U0MARIA")
    latest = find_lender(store)

    assert maria is not None
    assert latest is not None
    assert (maria.user_id, maria.user_token, maria.bot_token) == (
        "U0MARIA",
        "xoxp-maria",
        "xoxb-second",
    )
    assert (latest.user_id, latest.user_token, latest.bot_token) == ("U0DANA", None, "xoxb-second")
    assert find_lender(store, user_id="U0NOBODY") is None


def test_org_wide_install_is_found_from_any_workspace_of_the_enterprise(
    store: DbInstallationStore, session: Session
) -> None:
    store.save(
        make_installation(
            enterprise_id="E0GRID", team_id=None, team_name=None, is_enterprise_install=True
        )
    )

    found = store.find_installation(
        enterprise_id="E0GRID", team_id="T0ANYTEAM", is_enterprise_install=True
    )
    bot = store.find_bot(enterprise_id="E0GRID", team_id="T0ANYTEAM", is_enterprise_install=True)

    assert found is not None
    assert bot is not None
    assert (found.team_id, found.is_enterprise_install, bot.bot_token) == (
        None,
        True,
        "xoxb-1111-lender-bot-token",
    )
    assert session.scalars(select(m.SlackInstallation.org_id)).all() == [None]
    assert session.scalar(select(func.count()).select_from(m.Organization)) == 0


def test_tokens_are_stored_encrypted_and_never_in_clear(
    store: DbInstallationStore, session: Session, box: SecretBox
) -> None:
    secrets = {
        "bot_token_encrypted": "xoxb-1111-lender-bot-token",
        "bot_refresh_token_encrypted": "xoxe-1-bot-refresh",
        "user_token_encrypted": "xoxp-2222-maria-user-token",
        "user_refresh_token_encrypted": "xoxe-1-user-refresh",
        "incoming_webhook_url_encrypted": "https://hooks.slack.com/services/T0/B0/secretpart",
    }
    store.save(
        make_installation(
            bot_refresh_token=secrets["bot_refresh_token_encrypted"],
            bot_token_expires_at=int(LATER),
            user_token=secrets["user_token_encrypted"],
            user_refresh_token=secrets["user_refresh_token_encrypted"],
            incoming_webhook_url=secrets["incoming_webhook_url_encrypted"],
        )
    )

    raw = session.execute(select(m.SlackInstallation.__table__)).mappings().one()
    stored = b"|".join(
        value if isinstance(value, bytes) else str(value).encode() for value in raw.values()
    )

    assert [secret for secret in secrets.values() if secret.encode() in stored] == []
    assert {column: box.decrypt_bytes(raw[column]) for column in secrets} == secrets


def test_saving_and_finding_an_installation_logs_no_token(
    store: DbInstallationStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    store.save(make_installation(user_token="xoxp-2222-maria-user-token"))
    find_lender(store, user_id="U0MARIA")
    find_lender_bot(store)
    store.delete_all(enterprise_id=None, team_id="T0LENDER")

    logged = caplog.text + json.dumps([r.__dict__ for r in caplog.records], default=str)
    assert "slack installation saved" in caplog.text
    assert ("xoxb-1111" in logged, "xoxp-2222" in logged) == (False, False)


def test_rotated_bot_token_replaces_the_one_of_its_installation(
    store: DbInstallationStore, session: Session
) -> None:
    installation = make_installation(
        bot_refresh_token="xoxe-1-old", bot_token_expires_at=int(INSTALLED_AT) + 43200
    )
    store.save(installation)
    rotated = Bot(**installation.to_bot().to_dict_for_copying())
    rotated.bot_token, rotated.bot_refresh_token = "xoxb-rotated", "xoxe-1-new"

    store.save_bot(rotated)
    found = find_lender(store)

    assert found is not None
    assert (found.bot_token, found.bot_refresh_token, found.user_id) == (
        "xoxb-rotated",
        "xoxe-1-new",
        "U0MARIA",
    )
    assert count_rows(session) == 1


def test_bot_saved_alone_is_found_as_a_bot_but_not_as_an_installation(
    store: DbInstallationStore,
) -> None:
    store.save_bot(make_installation().to_bot())

    bot = find_lender_bot(store)

    assert bot is not None
    assert (bot.bot_token, bot.bot_id, bot.bot_user_id) == (
        "xoxb-1111-lender-bot-token",
        "B0LENDERBOT",
        "U0LENDERBOT",
    )
    assert find_lender(store) is None


def test_deleted_installation_is_gone_but_the_bot_keeps_working(
    store: DbInstallationStore, session: Session
) -> None:
    store.save(make_installation(user_token="xoxp-2222-maria-user-token"))

    store.delete_installation(enterprise_id=None, team_id="T0LENDER")
    bot = find_lender_bot(store)

    assert find_lender(store) is None
    assert find_lender(store, user_id="U0MARIA") is None
    assert bot is not None
    assert bot.bot_token == "xoxb-1111-lender-bot-token"
    assert session.execute(
        select(m.SlackInstallation.installer_user_id, m.SlackInstallation.user_token_encrypted)
    ).all() == [(None, None)]


def test_deleting_one_installers_installation_keeps_the_others(
    store: DbInstallationStore,
) -> None:
    store.save(make_installation(user_token="xoxp-maria"))
    store.save(make_installation(user_id="U0DANA", user_token="xoxp-dana", installed_at=LATER))

    store.delete_installation(enterprise_id=None, team_id="T0LENDER", user_id="U0DANA")
    latest = find_lender(store)

    assert find_lender(store, user_id="U0DANA") is None
    assert latest is not None
    assert (latest.user_id, latest.user_token, latest.bot_token) == (
        "U0MARIA",
        "xoxp-maria",
        "xoxb-1111-lender-bot-token",
    )


def test_deleted_bot_leaves_no_bot_token_in_the_database(
    store: DbInstallationStore, session: Session
) -> None:
    store.save(make_installation(user_token="xoxp-maria"))
    store.save_bot(make_installation(installed_at=LATER).to_bot())

    store.delete_bot(enterprise_id=None, team_id="T0LENDER")
    found = find_lender(store)

    assert find_lender_bot(store) is None
    assert found is not None
    assert (found.bot_token, found.user_token) == (None, "xoxp-maria")
    assert session.scalars(select(m.SlackInstallation.bot_token_encrypted)).all() == [None]


def test_delete_all_removes_every_row_of_the_workspace_and_only_of_it(
    store: DbInstallationStore, session: Session
) -> None:
    store.save(make_installation())
    store.save(make_installation(user_id="U0DANA", installed_at=LATER))
    store.save(make_installation(team_id="T0OTHER", team_name="Other Appraisals"))

    store.delete_all(enterprise_id=None, team_id="T0LENDER")

    assert find_lender(store) is None
    assert find_lender_bot(store) is None
    assert session.scalars(select(m.SlackInstallation.team_id)).all() == ["T0OTHER"]


# ---- binding a workspace to an organization -----------------------------------------------------


def test_first_install_of_a_workspace_creates_and_links_an_organization(
    store: DbInstallationStore, session: Session
) -> None:
    store.save(make_installation())

    org = org_for_slack_team(session, "T0LENDER")

    assert org is not None
    assert (org.slug, org.name) == ("pinnacle-lending", "Pinnacle Lending")
    assert session.scalars(select(m.SlackInstallation.org_id)).all() == [org.id]


def test_second_install_of_the_same_workspace_reuses_its_organization(
    store: DbInstallationStore, session: Session
) -> None:
    store.save(make_installation())
    store.save(make_installation(team_name="Pinnacle Lending LLC", installed_at=LATER))

    orgs = session.scalars(select(m.Organization.id)).all()

    assert len(orgs) == 1
    assert session.scalars(select(m.SlackInstallation.org_id)).all() == [orgs[0], orgs[0]]


def test_install_binds_to_the_organization_already_linked_to_the_workspace(
    session: Session,
) -> None:
    linked = make_org(session, slug="pinnacle", name="Pinnacle", slack_team_id="T0LENDER")

    org_id = bind_installation_to_org(session, "T0LENDER", "Pinnacle Lending")

    assert org_id == linked.id
    assert session.scalar(select(func.count()).select_from(m.Organization)) == 1


def test_taken_slug_gets_the_next_free_number(session: Session) -> None:
    make_org(session, slug="pinnacle-lending")
    make_org(session, slug="pinnacle-lending-2")

    org_id = bind_installation_to_org(session, "T0LENDER", "Pinnacle Lending")

    org = session.get(m.Organization, org_id)
    assert org is not None
    assert (org.slug, org.slack_team_id) == ("pinnacle-lending-3", "T0LENDER")


def test_two_replicas_binding_the_same_workspace_at_once_share_one_organization(
    committed_engine: Engine,
) -> None:
    sessions = make_session_factory(committed_engine)

    def bind_and_commit() -> int:
        with sessions() as session:
            org_id = bind_installation_to_org(session, "T0LENDER", "Pinnacle Lending")
            session.commit()
            return org_id

    with sessions() as first, ThreadPoolExecutor(max_workers=1) as pool:
        first_id = bind_installation_to_org(first, "T0LENDER", "Pinnacle Lending")
        second = pool.submit(bind_and_commit)
        if committed_engine.dialect.name == "postgresql":
            # The second insert waits on the first's uncommitted organization; SQLite
            # makes the second transaction wait at BEGIN instead.
            wait_until(lambda: blocked_sessions(committed_engine) == 1)
        first.commit()
        second_id = second.result(timeout=30)

    with sessions() as session:
        orgs = session.execute(select(m.Organization.id, m.Organization.slack_team_id)).all()
    assert second_id == first_id
    assert orgs == [(first_id, "T0LENDER")]


def blocked_sessions(engine: Engine) -> int:
    with engine.connect() as conn:
        waiting = conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(waiting or 0)


@pytest.mark.parametrize(
    ("team_name", "slug"),
    [
        ("Évaluations Québec & Co.", "evaluations-quebec-co"),
        ("☃☃☃", "t0lender"),
        (None, "t0lender"),
        ("A" * 80, "a" * 56),
    ],
)
def test_slug_is_made_from_the_workspace_name_or_else_its_id(
    session: Session, team_name: str | None, slug: str
) -> None:
    org_id = bind_installation_to_org(session, "T0LENDER", team_name)

    assert session.scalar(select(m.Organization.slug).where(m.Organization.id == org_id)) == slug


# ---- OAuth state store ---------------------------------------------------------------------------


def test_issued_state_is_consumed_once(states: DbOAuthStateStore) -> None:
    state = states.issue()

    assert (states.consume(state), states.consume(state)) == (True, False)


def test_state_is_accepted_until_it_expires(states: DbOAuthStateStore, clock: FixedClock) -> None:
    state = states.issue()
    clock.advance(seconds=599)

    assert states.consume(state) is True


def test_expired_state_is_refused(states: DbOAuthStateStore, clock: FixedClock) -> None:
    state = states.issue()
    clock.advance(seconds=601)

    assert states.consume(state) is False


def test_state_that_was_never_issued_is_refused(states: DbOAuthStateStore) -> None:
    states.issue()

    assert states.consume("forged-state") is False


def test_issuing_a_state_purges_the_expired_ones(
    states: DbOAuthStateStore, clock: FixedClock, session: Session
) -> None:
    states.issue()
    clock.advance(seconds=601)
    fresh = states.issue()

    assert session.scalars(select(m.SlackOAuthState.state)).all() == [fresh]
    assert len(fresh) == 43


# ---- Bolt's OAuth flow end to end ---------------------------------------------------------------


@pytest.fixture
def slack(served_slack: ServedSlack) -> SlackStandIn:
    served_slack.stand_in.reset()
    served_slack.stand_in.add_team("T0LENDER", "Pinnacle Lending", domain="pinnaclelending")
    served_slack.stand_in.add_user(
        "U0MARIA", "maria", "maria@pinnaclelending.com", team_id="T0LENDER", is_admin=True
    )
    served_slack.stand_in.set_installer("U0MARIA", team_id="T0LENDER")
    return served_slack.stand_in


def bolt_get(query: str = "", cookie: str | None = None) -> BoltRequest:
    headers: dict[str, str | Sequence[str]] = {} if cookie is None else {"cookie": cookie}
    return BoltRequest(body="", query=query, headers=headers)


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def test_bolt_installs_a_workspace_through_oauth_and_authorizes_its_requests(
    committed_engine: Engine, served_slack: ServedSlack, slack: SlackStandIn, box: SecretBox
) -> None:
    sessions = make_session_factory(committed_engine)
    store = DbInstallationStore(sessions, box, client_id=DEFAULT_CLIENT_ID)
    app = App(
        signing_secret=SIGNING_SECRET,
        client=served_slack.client(token=None),
        oauth_settings=OAuthSettings(
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            scopes=["chat:write", "commands"],
            user_scopes=[],
            redirect_uri=REDIRECT_URI,
            install_page_rendering_enabled=False,
            authorization_url=f"{served_slack.server.url}/oauth/v2/authorize",
            installation_store=store,
            state_store=DbOAuthStateStore(sessions),
        ),
    )
    app.enable_token_revocation_listeners()
    seen: list[tuple[str | None, str | None, str | None]] = []

    @app.command("/campaign")
    def campaign(ack: Ack, context: BoltContext) -> None:
        seen.append((context.team_id, context.bot_user_id, context.bot_token))
        ack()

    oauth_flow = app.oauth_flow
    assert oauth_flow is not None

    # /slack/install sends the browser to Slack with a fresh state in the URL and a cookie.
    install = oauth_flow.handle_installation(bolt_get())
    authorize_url = install.headers["location"][0]
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    cookie = install.headers["set-cookie"][0].split(";")[0]
    # Slack's authorize page sends the browser back to /slack/oauth_redirect with a code.
    approved = httpx.get(authorize_url)
    callback = urlsplit(approved.headers["location"])
    # /slack/oauth_redirect exchanges the code (oauth.v2.access) and stores the install.
    done = oauth_flow.handle_callback(bolt_get(callback.query, cookie))
    replayed = oauth_flow.handle_callback(bolt_get(callback.query, cookie))

    installed = store.find_installation(enterprise_id=None, team_id="T0LENDER")
    assert installed is not None
    assert installed.bot_token is not None
    assert (install.status, approved.status_code, done.status, replayed.status) == (
        302,
        302,
        200,
        401,
    )
    assert (callback.scheme, callback.netloc, callback.path) == (
        "https",
        "salesbot.example.com",
        "/slack/oauth_redirect",
    )
    assert parse_qs(callback.query)["state"] == [state]
    # The replayed callback is refused on its state, before its code is exchanged again.
    assert "reason: invalid_state" in replayed.body
    assert len(slack.calls("oauth.v2.access")) == 1
    assert slack.token(installed.bot_token).team_id == "T0LENDER"
    assert (
        installed.app_id,
        installed.team_name,
        installed.bot_id,
        installed.bot_user_id,
        installed.bot_scopes,
        installed.user_id,
    ) == (
        "A0SANDBOXAPP",
        "Pinnacle Lending",
        "B0LENDERBOT",
        "U0LENDERBOT",
        ["chat:write", "commands"],
        "U0MARIA",
    )
    with sessions() as session:
        org = org_for_slack_team(session, "T0LENDER")
        assert org is not None
        assert org.slug == "pinnacle-lending"
        assert session.scalars(select(m.SlackOAuthState)).all() == []

    # A signed request from that workspace is authorized with the stored bot token.
    body = slash_command_body(
        "/campaign",
        "list",
        user_id="U0MARIA",
        channel_id="C0LENDERGEN",
        team_id="T0LENDER",
        trigger_id="1001.2002.abc",
    )
    response = app.dispatch(
        BoltRequest(body=body, headers=dict(signed_headers(body, signing_secret=SIGNING_SECRET)))
    )

    assert response.status == 200
    assert seen == [("T0LENDER", "U0LENDERBOT", installed.bot_token)]
    assert slack.calls("auth.test")[-1].token == installed.bot_token

    # Uninstalling the app from the workspace removes its tokens.
    event = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0LENDER",
            "api_app_id": "A0SANDBOXAPP",
            "event": {"type": "app_uninstalled"},
            "event_id": "Ev0UNINSTALL",
            "event_time": int(time.time()),
        }
    )
    headers = {
        **signed_headers(event, signing_secret=SIGNING_SECRET),
        "content-type": "application/json",
    }
    uninstalled = app.dispatch(BoltRequest(body=event, headers=dict(headers)))

    assert uninstalled.status == 200
    wait_until(lambda: store.find_installation(enterprise_id=None, team_id="T0LENDER") is None)
    assert store.find_bot(enterprise_id=None, team_id="T0LENDER") is None
