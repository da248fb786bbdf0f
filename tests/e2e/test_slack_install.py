"""Multi-workspace mode: install through Slack's OAuth, then the workspace can use Salesbot."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from bot.app import build_app, build_runtime
from domain.clock import FixedClock
from handlers.api.deps import Services
from sandbox.slack_api import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from storage import models as m
from storage.db import make_session_factory
from tests.support.api import make_settings
from tests.support.slack import ServedSlack, serve_slack_stand_in, signed_headers
from tests.support.slack_app import SIGNING_SECRET, running, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_slack() -> Iterator[ServedSlack]:
    with serve_slack_stand_in() as served:
        yield served


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
