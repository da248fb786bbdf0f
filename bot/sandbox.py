"""Sandbox mode: with no credentials, Salesbot runs against local stand-ins on loopback.

`salesbot serve` calls `start_sandbox(settings)` when `settings.sandbox` is true: the
Slack, Google (Gmail, OAuth, Pub/Sub) and Anthropic stand-ins start in this process,
the settings are pointed at them, and a sandbox organization bound to the stand-in's
Slack workspace is created once, so every flow works end to end without the internet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console

from bot.settings import Settings
from domain.accounts import Accounts
from domain.clock import ShiftedClock, SystemClock
from sandbox.anthropic_api import start_anthropic_stand_in
from sandbox.google import GoogleStandIn, GoogleUrls, start_google_stand_in
from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT
from sandbox.server import RunningServer
from sandbox.slack_api import (
    DEFAULT_ADMIN_USER_ID,
    DEFAULT_BOT_TOKEN,
    DEFAULT_TEAM_ID,
    SlackStandIn,
    api_base_url,
    start_slack_stand_in,
)
from storage.db import make_engine, make_session_factory
from storage.uow import UnitOfWork

SANDBOX_SIGNING_SECRET = "sandbox-signing-secret-0123456789"
SANDBOX_ANTHROPIC_KEY = "sk-ant-sandbox"


@dataclass
class Sandbox:
    """The running stand-ins, the settings that point at them, and the sandbox's clock.

    `slack` and `google` are the stand-ins' live state (the console reads channels, cards and
    mailboxes from them); `clock` is the app's clock, which the console's clock control
    advances; `app_url` is where this process serves Salesbot on loopback (set by `serve`
    once it knows its port), the address signed Slack requests are posted to.
    """

    settings: Settings
    slack: SlackStandIn
    google: GoogleStandIn
    clock: ShiftedClock
    org_slug: str
    admin_user_id: str
    admin_email: str
    servers: list[RunningServer] = field(default_factory=list)
    app_url: str = ""

    def stop(self) -> None:
        """Stop every stand-in."""
        for server in self.servers:
            server.stop()


def start_sandbox(settings: Settings, *, console: Console | None = None) -> Sandbox:
    """Start the stand-ins, point the settings at them and make the sandbox organization."""
    slack, slack_server = start_slack_stand_in()
    google, google_server = start_google_stand_in()
    _, anthropic_server = start_anthropic_stand_in(api_keys=[SANDBOX_ANTHROPIC_KEY])
    admin_email = slack.user(DEFAULT_ADMIN_USER_ID).email
    if admin_email is None:
        raise RuntimeError("the Slack stand-in's admin has no email address to link")
    google.add_mailbox(admin_email)
    google.oauth.set_consenting_user(admin_email)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    overrides: dict[str, object] = {
        "SLACK_API_URL": api_base_url(slack_server),
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SANDBOX_SIGNING_SECRET,
        "GOOGLE_CLIENT_ID": SANDBOX_CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "PUBSUB_AUDIENCE": f"{base}/api/integrations/gmail/push",
        "PUBSUB_SERVICE_ACCOUNT": DEFAULT_PUSH_SERVICE_ACCOUNT,
        "PUBSUB_TOPIC": "projects/salesbot-sandbox/topics/gmail",
        "ANTHROPIC_API_KEY": SANDBOX_ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": anthropic_server.url,
        **GoogleUrls(google_server.url).as_env(),
    }
    sandboxed = settings.model_copy(update=overrides)
    org_slug = _ensure_sandbox_org(sandboxed, admin_email=admin_email)
    if console is not None:
        console.print(f"  Slack Web API stand-in : {slack_server.url}/api/")
        console.print(
            f"  Google stand-in        : {google_server.url}  (Gmail, OAuth, Pub/Sub certs)"
        )
        console.print(f"  Anthropic stand-in     : {anthropic_server.url}")
        console.print(
            f"  organization '{org_slug}' is bound to the stand-in's workspace {DEFAULT_TEAM_ID};"
            f" its admin is {admin_email}"
        )
    return Sandbox(
        settings=sandboxed,
        slack=slack,
        google=google,
        clock=ShiftedClock(),
        org_slug=org_slug,
        admin_user_id=DEFAULT_ADMIN_USER_ID,
        admin_email=admin_email,
        servers=[slack_server, google_server, anthropic_server],
    )


def _ensure_sandbox_org(settings: Settings, *, admin_email: str) -> str:
    engine = make_engine(settings.DATABASE_URL)
    try:
        sessions = make_session_factory(engine)
        accounts = Accounts(uow=lambda: UnitOfWork(sessions), clock=SystemClock())
        org = accounts.bootstrap_sandbox(
            team_id=DEFAULT_TEAM_ID,
            slug="sandbox",
            name="Sandbox Appraisals",
            admin_email=admin_email,
            admin_slack_user_id=DEFAULT_ADMIN_USER_ID,
            admin_name="Sandbox Admin",
        )
        return org.slug
    finally:
        engine.dispose()
