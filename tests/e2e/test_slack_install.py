"""Multi-workspace mode: install through Slack's OAuth, then the workspace can use Salesbot."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from bot.app import Runtime, build_app, build_runtime
from bot.settings import Settings
from bot.slack_oauth import install_link_url
from domain.clock import FixedClock
from domain.contacts import UserRole
from handlers.api.deps import Services
from sandbox.slack_api import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SlackStandIn
from storage import models as m
from storage.db import SessionFactory, make_session_factory
from tests.support.accounts import create_org, ensure_user, link_slack_team
from tests.support.api import make_settings
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import SIGNING_SECRET, running, wait_until

pytestmark = pytest.mark.slow


def test_a_workspace_installs_salesbot_and_its_commands_work(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_team("T0LENDER", "Pinnacle Lending", domain="pinnaclelending")
    slack.add_user("U0MARIA", "maria", "maria@pinnaclelending.com", team_id="T0LENDER")
    slack.set_installer("U0MARIA", team_id="T0LENDER")
    settings = make_settings(
        committed_engine.url.render_as_string(hide_password=False),
        SLACK_API_URL=served_slack.api_url,
        SLACK_CLIENT_ID=DEFAULT_CLIENT_ID,
        SLACK_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
    )
    sessions = make_session_factory(committed_engine)
    services = Services(engine=committed_engine, session_factory=sessions, clock=clock)
    runtime = build_runtime(settings, services=services)
    app = build_app(settings, runtime=runtime, start_background=False)
    # The command's answer is work deferred past the ack: the worker replays it, with
    # the installed workspace's token found by the replaying app.
    assert runtime.slack_worker is not None
    with TestClient(app, follow_redirects=False) as client, running(runtime.slack_worker):
        install = client.get("/slack/install")
        assert install.status_code == 302
        authorize = install.headers["location"]
        assert authorize.startswith(f"{served_slack.server.url}/oauth/v2/authorize?")
        approved = httpx.get(authorize)
        back = urlsplit(approved.headers["location"])
        assert back.path == "/slack/oauth_redirect"
        # Bolt's state cookie is Secure; a browser sends it back over https.
        cookie = {"cookie": install.headers["set-cookie"].split(";")[0]}
        done = client.get(f"/slack/oauth_redirect?{back.query}", headers=cookie)
        assert done.status_code == 200
        replayed = client.get(f"/slack/oauth_redirect?{back.query}", headers=cookie)
        assert replayed.status_code == 401

        with sessions() as session:
            org = session.scalars(
                select(m.Organization).where(m.Organization.slack_team_id == "T0LENDER")
            ).one()
            stored = session.scalars(select(m.SlackInstallation)).one()
            assert stored.bot_token_encrypted is not None
            assert b"xoxb" not in stored.bot_token_encrypted
        assert org.name == "Pinnacle Lending"

        body = urlencode(
            {
                "command": "/campaign",
                "text": "list",
                "team_id": "T0LENDER",
                "user_id": "U0MARIA",
                "channel_id": "C0LENDERGEN",
                "response_url": slack.response_url(
                    channel="C0LENDERGEN", user="U0MARIA", team_id="T0LENDER"
                ),
                "trigger_id": slack.issue_trigger_id(user_id="U0MARIA"),
            }
        )
        answer = client.post(
            "/slack/events",
            content=body.encode(),
            headers=signed_headers(body, signing_secret=SIGNING_SECRET),
        )
        assert answer.status_code == 200
        said = wait_until(lambda: slack.calls("response_url"), what="answer")
        assert said[0].params["text"] == (
            "No campaigns yet. Create one with `POST /api/marketing/campaigns`."
        )
        with sessions() as session:
            user = session.scalars(select(m.User).where(m.User.slack_user_id == "U0MARIA")).one()
        assert (user.org_id, user.email) == (org.id, "maria@pinnaclelending.com")
        # The installer is the admin of the organization the install made.
        assert user.role == "admin"


# --- install links, the installer as admin, cached authorizations -----------------------------


@dataclass
class OAuthWorld:
    client: TestClient
    slack: SlackStandIn
    sessions: SessionFactory
    settings: Settings
    runtime: Runtime

    def install(self, path: str = "/slack/install") -> tuple[httpx.Response, httpx.Response]:
        """Open an install page, approve on Slack's page, come back; return both answers."""
        install = self.client.get(path)
        if install.status_code != 302:
            return install, install
        approved = httpx.get(install.headers["location"])
        back = urlsplit(approved.headers["location"])
        cookie = {"cookie": install.headers["set-cookie"].split(";")[0]}
        return install, self.client.get(f"/slack/oauth_redirect?{back.query}", headers=cookie)

    def command(self, text: str, *, user: str = "U0MARIA", team: str = "T0LENDER") -> int:
        body = urlencode(
            {
                "command": "/campaign",
                "text": text,
                "team_id": team,
                "user_id": user,
                "channel_id": "C0LENDERGEN",
                "response_url": self.slack.response_url(
                    channel="C0LENDERGEN", user=user, team_id=team
                ),
                "trigger_id": self.slack.issue_trigger_id(user_id=user),
            }
        )
        answer = self.client.post(
            "/slack/events",
            content=body.encode(),
            headers=signed_headers(body, signing_secret=SIGNING_SECRET),
        )
        return answer.status_code

    def orgs(self) -> list[tuple[str, str | None]]:
        with self.sessions() as session:
            return [
                (o.slug, o.slack_team_id)
                for o in session.scalars(select(m.Organization).order_by(m.Organization.id))
            ]

    def users(self) -> list[tuple[str, str, str | None]]:
        with self.sessions() as session:
            return [
                (u.email, u.role, u.slack_user_id)
                for u in session.scalars(select(m.User).order_by(m.User.email))
            ]


@pytest.fixture
def oauth(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[OAuthWorld]:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_team("T0LENDER", "Pinnacle Lending", domain="pinnaclelending")
    slack.add_user(
        "U0MARIA", "maria", "maria@lonestar.example.com", team_id="T0LENDER", real_name="Maria"
    )
    slack.set_installer("U0MARIA", team_id="T0LENDER")
    settings = make_settings(
        committed_engine.url.render_as_string(hide_password=False),
        SLACK_API_URL=served_slack.api_url,
        SLACK_CLIENT_ID=DEFAULT_CLIENT_ID,
        SLACK_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
    )
    sessions = make_session_factory(committed_engine)
    services = Services(engine=committed_engine, session_factory=sessions, clock=clock)
    runtime = build_runtime(settings, services=services)
    app = build_app(settings, runtime=runtime, start_background=False)
    assert runtime.slack_worker is not None
    with TestClient(app, follow_redirects=False) as client, running(runtime.slack_worker):
        yield OAuthWorld(client, slack, sessions, settings, runtime)


def make_lonestar(world: OAuthWorld, *, team_id: str | None = None) -> int:
    """The organization the deployer made and imported into, with Maria as a rep."""
    with world.sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        if team_id:
            link_slack_team(session, org.id, team_id)
        ensure_user(session, org.id, email="maria@lonestar.example.com")
        session.commit()
    return org.id


def link_path(world: OAuthWorld, org_id: int, *, expires_in: int = 3600) -> str:
    url = install_link_url(world.settings, org_id, expires_in=expires_in)
    return url.removeprefix(world.settings.PUBLIC_BASE_URL)


def test_an_install_link_binds_the_workspace_to_its_organization_not_a_new_one(
    oauth: OAuthWorld,
) -> None:
    org_id = make_lonestar(oauth)

    install, done = oauth.install(link_path(oauth, org_id))

    assert (install.status_code, done.status_code) == (302, 200)
    assert "Salesbot is installed in Pinnacle Lending" in done.text
    assert oauth.orgs() == [("lonestar", "T0LENDER")]
    # Maria was a rep of the organization, which had no admin: she installed, she is admin.
    assert oauth.users() == [("maria@lonestar.example.com", "admin", "U0MARIA")]
    with oauth.sessions() as session:
        stored = session.scalars(select(m.SlackInstallation)).one()
    assert stored.org_id == org_id

    assert oauth.command("list") == 200
    said = wait_until(lambda: oauth.slack.calls("response_url"), what="answer")
    assert said[0].params["text"] == (
        "No campaigns yet. Create one with `POST /api/marketing/campaigns`."
    )


def test_the_installer_does_not_become_admin_of_an_organization_that_has_one(
    oauth: OAuthWorld,
) -> None:
    org_id = make_lonestar(oauth)
    with oauth.sessions() as session:
        ensure_user(session, org_id, email="boss@lonestar.example.com", role=UserRole.ADMIN)
        session.commit()

    _, done = oauth.install(link_path(oauth, org_id))

    assert done.status_code == 200
    assert oauth.users() == [
        ("boss@lonestar.example.com", "admin", None),
        ("maria@lonestar.example.com", "rep", None),
    ]


def test_an_installer_slack_gives_no_address_for_is_made_admin_by_their_slack_id(
    oauth: OAuthWorld,
) -> None:
    oauth.slack.add_user("U0NOMAIL", "nomail", None, team_id="T0LENDER")
    oauth.slack.set_installer("U0NOMAIL", team_id="T0LENDER")
    with oauth.sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        session.commit()

    _, done = oauth.install(link_path(oauth, org.id))

    assert done.status_code == 200
    assert oauth.users() == [("u0nomail@slack-user.invalid", "admin", "U0NOMAIL")]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda link: link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"), "not valid"),
        (lambda link: link.replace("link=", "link=x"), "not valid"),
    ],
)
def test_a_tampered_install_link_is_refused_with_a_page_and_installs_nothing(
    oauth: OAuthWorld, tamper: Callable[[str], str], reason: str
) -> None:
    org_id = make_lonestar(oauth)

    refused, _ = oauth.install(tamper(link_path(oauth, org_id)))

    assert refused.status_code == 400
    assert refused.headers["content-type"] == "text/html; charset=utf-8"
    assert f"This install link is {reason} (altered?). Nothing was installed." in refused.text
    assert "set-cookie" not in refused.headers
    with oauth.sessions() as session:
        assert session.scalars(select(m.SlackOAuthState)).all() == []
    assert oauth.orgs() == [("lonestar", None)]


def test_an_expired_install_link_is_refused_with_a_page_that_says_so(oauth: OAuthWorld) -> None:
    org_id = make_lonestar(oauth)
    refused, _ = oauth.install(link_path(oauth, org_id, expires_in=-1))
    assert refused.status_code == 400
    assert "This install link is expired. Nothing was installed." in refused.text
    assert oauth.orgs() == [("lonestar", None)]


def test_an_install_link_of_an_organization_bound_to_another_workspace_stores_nothing(
    oauth: OAuthWorld,
) -> None:
    org_id = make_lonestar(oauth, team_id="T0ELSEWHERE")

    _, done = oauth.install(link_path(oauth, org_id))

    assert done.status_code == 409
    assert "organization lonestar is already bound to Slack workspace T0ELSEWHERE" in done.text
    assert oauth.orgs() == [("lonestar", "T0ELSEWHERE")]
    assert oauth.users() == [("maria@lonestar.example.com", "rep", None)]
    with oauth.sessions() as session:
        assert session.scalars(select(m.SlackInstallation)).all() == []


def test_an_install_without_a_link_keeps_the_organization_the_workspace_is_bound_to(
    oauth: OAuthWorld,
) -> None:
    make_lonestar(oauth, team_id="T0LENDER")
    _, done = oauth.install()
    assert done.status_code == 200
    assert oauth.orgs() == [("lonestar", "T0LENDER")]
    assert oauth.users() == [("maria@lonestar.example.com", "admin", "U0MARIA")]


def test_a_burst_of_commands_asks_slack_to_authorize_the_workspace_once(
    oauth: OAuthWorld,
) -> None:
    org_id = make_lonestar(oauth)
    oauth.install(link_path(oauth, org_id))
    before = len(oauth.slack.calls("auth.test"))

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(oauth.command("list"))) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each command's answer is deferred past its ack and replayed by the worker, which
    # needs the authorization too.
    wait_until(lambda: len(oauth.slack.calls("response_url")) == 20, what="20 answers")

    assert results == [200] * 20
    assert len(oauth.slack.calls("auth.test")) - before == 1


def test_an_uninstall_event_drops_the_cached_authorization(oauth: OAuthWorld) -> None:
    org_id = make_lonestar(oauth)
    oauth.install(link_path(oauth, org_id))
    assert oauth.command("list") == 200
    before = len(oauth.slack.calls("auth.test"))

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
    oauth.client.post("/slack/events", content=event.encode(), headers=headers)
    assert oauth.command("list") == 200

    assert len(oauth.slack.calls("auth.test")) - before == 1
