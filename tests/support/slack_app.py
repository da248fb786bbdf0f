"""Drive the real Salesbot app the way Slack does: signed commands, clicks and submissions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.app import Runtime, build_app, build_runtime
from domain.clock import Clock
from domain.ports import Mailer
from handlers.api.deps import Services
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL_ID, DEFAULT_TEAM_ID, SlackStandIn
from storage import models as m
from storage.db import make_session_factory
from tests.support.accounts import create_org, create_token, link_slack_team
from tests.support.api import make_settings
from tests.support.builders import make_client, make_contact, make_order
from tests.support.slack import ServedSlack, signed_headers

SIGNING_SECRET = "sandbox-signing-secret-for-tests"
REP = "U0MARIA01"
OTHER_REP = "U0JOSE001"
REVIEW_CHANNEL = DEFAULT_CHANNEL_ID


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll until `predicate()` is truthy (work after an ack runs in Bolt's threads)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class SlackWorld:
    """The app under test, the Slack stand-in and the org's data."""

    client: TestClient
    runtime: Runtime
    slack: SlackStandIn
    session_factory: Callable[[], Session]
    org_id: int
    campaign_id: int
    template_id: int
    contact_ids: list[int]
    api_token: str

    # --- what Slack sends ------------------------------------------------------------------

    def post(self, body: str, *, headers: dict[str, str] | None = None) -> Any:
        """POST a body to /slack/events, signed as Slack signs it unless headers are given."""
        return self.client.post(
            "/slack/events",
            content=body.encode(),
            headers=headers or signed_headers(body, signing_secret=SIGNING_SECRET),
        )

    def command(
        self,
        text: str,
        *,
        command: str = "/campaign",
        user: str = REP,
        response_url: str | None = None,
        trigger_id: str | None = None,
    ) -> Any:
        """Send a slash command; return the HTTP response (the ack)."""
        response_url = response_url or self.slack.response_url(channel=REVIEW_CHANNEL, user=user)
        body = urlencode(
            {
                "token": "deprecated",
                "team_id": DEFAULT_TEAM_ID,
                "team_domain": "sandbox-appraisals",
                "channel_id": REVIEW_CHANNEL,
                "channel_name": "general",
                "user_id": user,
                "user_name": user.lower(),
                "command": command,
                "text": text,
                "api_app_id": "A0SANDBOXAPP",
                "is_enterprise_install": "false",
                "response_url": response_url,
                "trigger_id": trigger_id or self.slack.issue_trigger_id(user_id=user),
            }
        )
        return self.post(body)

    def responses(self) -> list[str]:
        """Texts posted to response URLs (what `respond()` said), oldest first."""
        return [str(c.params.get("text", "")) for c in self.slack.calls("response_url")]

    def interaction(self, payload: dict[str, Any]) -> Any:
        """Send an interactivity payload as Slack does (form field `payload`)."""
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str = REP,
        message_ts: str | None = None,
        team: str = DEFAULT_TEAM_ID,
        container: dict[str, Any] | None = None,
    ) -> Any:
        """Click a button of a card message."""
        payload = {
            "type": "block_actions",
            "team": {"id": team, "domain": "sandbox-appraisals"},
            "user": {"id": user, "username": user.lower(), "team_id": team},
            "api_app_id": "A0SANDBOXAPP",
            "token": "deprecated",
            "trigger_id": self.slack.issue_trigger_id(user_id=user),
            "container": container
            or {"type": "message", "message_ts": message_ts or "1.0", "channel_id": REVIEW_CHANNEL},
            "channel": {"id": REVIEW_CHANNEL, "name": "general"},
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "card_actions",
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return self.interaction(payload)

    def submit(
        self,
        callback_id: str,
        values: dict[str, dict[str, Any]],
        *,
        private_metadata: str,
        user: str = REP,
    ) -> Any:
        """Submit a modal."""
        payload = {
            "type": "view_submission",
            "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox-appraisals"},
            "user": {"id": user, "username": user.lower(), "team_id": DEFAULT_TEAM_ID},
            "api_app_id": "A0SANDBOXAPP",
            "token": "deprecated",
            "trigger_id": self.slack.issue_trigger_id(user_id=user),
            "view": {
                "id": "V0EDIT",
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": values},
                "hash": "1",
            },
        }
        return self.interaction(payload)

    # --- what the app did ---------------------------------------------------------------

    def card_messages(self) -> list[Any]:
        """Card messages in the review channel, oldest first."""
        return [
            msg
            for msg in self.slack.messages(REVIEW_CHANNEL)
            if any(b.get("block_id") == "card_actions" for b in msg.blocks)
            or any(b.get("type") == "context" for b in msg.blocks)
        ]

    def button(self, message: Any, action_id: str) -> dict[str, Any]:
        """Return a button of a message by its action id."""
        for block in message.blocks:
            for element in block.get("elements", []) or []:
                if element.get("action_id") == action_id:
                    return dict(element)
        raise LookupError(f"no {action_id} button in message {message.ts}")

    def run_worker(self) -> int:
        """Run pending job tasks to completion (drafting and posting cards)."""
        return self.runtime.run_tasks_until_idle()

    def wait_for_tasks(self, job_id: int, count: int) -> None:
        """Wait until planning created `count` tasks for a job."""

        def created() -> bool:
            with self.session_factory() as s:
                return s.query(m.JobTask).filter(m.JobTask.job_id == job_id).count() == count

        wait_until(created, what=f"{count} tasks of job {job_id}")

    def latest_job_id(self) -> int:
        """Return the newest job's id."""
        with self.session_factory() as s:
            job = s.query(m.Job).order_by(m.Job.id.desc()).first()
            assert job is not None
            return job.id


@contextmanager
def slack_world(
    engine: Engine,
    served: ServedSlack,
    clock: Clock,
    *,
    contacts: int = 3,
    mailer: Mailer | None = None,
    extra_settings: dict[str, object] | None = None,
) -> Iterator[SlackWorld]:
    """Build the app on a committed database, an org bound to the stand-in's workspace."""
    slack = served.stand_in
    slack.reset()
    slack.add_user(REP, "maria", "maria@lonestar.example.com", real_name="Maria Lopez")
    slack.add_user(OTHER_REP, "jose", "jose@lonestar.example.com", real_name="Jose Ruiz")
    session_factory = make_session_factory(engine)
    now = clock.now()
    with session_factory() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        org_row = session.get(m.Organization, org.id)
        assert org_row is not None
        lender = make_client(
            session, org_row, name="Pinnacle Lending", domain="pinnacle.example.com"
        )
        make_order(session, org_row, lender, ordered_at=now - timedelta(days=143))
        contact_ids = [
            make_contact(
                session,
                org_row,
                lender,
                email=f"lo{n}@pinnacle.example.com",
                first_name=f"Dana{n}",
                last_name="Whitfield",
                title="Loan Officer",
                tags=["lender"],
            ).id
            for n in range(contacts)
        ]
        template = m.EmailTemplate(
            org_id=org.id,
            name="Win-back 1",
            category="campaign",
            subject="Turn times in {{ state }} are down, {{ first_name }}",
            body="Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days since "
            "{{ company_name }} last ordered.\n\n{{ rep_name }}",
            variables=[],
        )
        session.add(template)
        session.flush()
        campaign = m.MarketingCampaign(
            org_id=org.id,
            name="Q4 lender win-back",
            goal="reactivation",
            status="draft",
            include_tags=["lender"],
            channels=["email"],
            email_template_ids=[template.id],
            cadence_days=[0, 4, 10, 21],
            review_channel_id=REVIEW_CHANNEL,
            stale_client_days=90,
        )
        session.add(campaign)
        session.flush()
        _, api_token = create_token(session, org.id, name="test")
        session.commit()
        campaign_id, template_id = campaign.id, template.id
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        SLACK_API_URL=served.api_url,
        SLACK_BOT_TOKEN=DEFAULT_BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        **(extra_settings or {}),
    )
    services = Services(engine=engine, session_factory=session_factory, clock=clock)
    runtime = build_runtime(settings, services=services, mailer=mailer)
    app = build_app(settings, runtime=runtime, start_background=False)
    # What listeners defer past their ack runs as in production: stored, then replayed
    # by the worker's threads (the drafting and posting workers are run by the tests).
    assert runtime.slack_worker is not None
    with TestClient(app) as client, running(runtime.slack_worker):
        yield SlackWorld(
            client=client,
            runtime=runtime,
            slack=slack,
            session_factory=session_factory,
            org_id=org.id,
            campaign_id=campaign_id,
            template_id=template_id,
            contact_ids=contact_ids,
            api_token=api_token,
        )


@contextmanager
def running(worker: Any) -> Iterator[None]:
    """Run a background worker's threads for the duration of the block."""
    worker.start()
    try:
        yield
    finally:
        worker.stop()


def utc(*args: int) -> datetime:
    """A UTC datetime."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
