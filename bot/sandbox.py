"""Sandbox mode: with no credentials, Salesbot runs against local stand-ins on loopback.

`salesbot serve` and `salesbot demo` call `start_sandbox(settings)` when `settings.sandbox`
is true: the Slack, Google (Gmail, OAuth, Pub/Sub) and Anthropic stand-ins start in this
process, the settings are pointed at them, and the sandbox organization comes up ready to
use: bound to the stand-in's Slack workspace, with the firm of `sandbox/seed.py` (reps,
clients, contacts, two years of orders, templates and a win-back campaign reviewed in
#sales-review), each rep's Gmail mailbox connected through the product's own OAuth consent
against the Google stand-in, and a fresh API token. `print_banner` then says where the
console is and what to try first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from rich.console import Console
from rich.markup import escape

from bot.gmail import build_gmail_integration
from bot.settings import Settings
from domain.accounts import Accounts
from domain.clock import ShiftedClock
from domain.contacts import TokenScope, UserRole
from domain.content import week_of
from domain.outreach.common import Actor
from domain.sending import SendLimits
from handlers.api.deps import Services
from integrations.crypto import SecretBox
from sandbox.anthropic_api import (
    CLASSIFY_TOOL,
    AnthropicStandIn,
    keyword_classification,
    start_anthropic_stand_in,
)
from sandbox.google import GoogleStandIn, GoogleUrls, start_google_stand_in
from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT
from sandbox.sample_replies import reading_for
from sandbox.seed import (
    ADMIN_SLACK_ID,
    CADENCE_DAYS,
    FIRM_NAME,
    REPS,
    REVIEW_CHANNEL_ID,
    REVIEW_CHANNEL_NAME,
    SeedReport,
    seed_firm,
)
from sandbox.seed_marketing import (
    MARKETING_CHANNEL_ID,
    MARKETING_CHANNEL_NAME,
    NEWSLETTER_NAME,
    REPUTATION_CHANNEL_ID,
    REPUTATION_CHANNEL_NAME,
    MarketingReport,
    seed_newsletter,
)
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

if TYPE_CHECKING:
    from fastapi import FastAPI

SANDBOX_SIGNING_SECRET = "sandbox-signing-secret-0123456789"
SANDBOX_ANTHROPIC_KEY = "sk-ant-sandbox"
SANDBOX_TOKEN_NAME = "sandbox"
CONSOLE_PATH = "/sandbox"
# The sandbox's mailboxes send as fast as the demo clicks: the 5 s spacing a real mailbox
# keeps against Gmail's abuse limits would only make the newcomer wait.
SANDBOX_SEND_LIMITS = SendLimits(min_send_interval_seconds=0)

if ADMIN_SLACK_ID != DEFAULT_ADMIN_USER_ID:  # the seed's admin is the stand-in's own admin
    raise RuntimeError("sandbox/seed.py's admin is not the Slack stand-in's admin")


@dataclass
class Sandbox:
    """The running stand-ins, the settings that point at them, and the sandbox's clock.

    `slack` and `google` are the stand-ins' live state (the console reads channels, cards and
    mailboxes from them); `clock` is the app's clock, which the console's clock control
    advances; `app_url` is where this process serves Salesbot on loopback (set by `serve`
    once it knows its port), the address signed Slack requests are posted to.
    `api_token` is the REST API token minted at this start (acting as the admin);
    `seed` says what the organization holds (its campaign, review channel, reps).
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
    anthropic: AnthropicStandIn | None = None
    api_token: str = ""
    seed: SeedReport | None = None
    connected_mailboxes: list[str] = field(default_factory=list)

    @property
    def console_url(self) -> str:
        """The sandbox console's address, on the loopback address the app is served at."""
        return self.app_url.rstrip("/") + CONSOLE_PATH

    def stop(self) -> None:
        """Stop every stand-in."""
        for server in self.servers:
            server.stop()


def served_at(settings: Settings, port: int) -> Settings:
    """The settings with PUBLIC_BASE_URL at the address `salesbot serve` listens on, when
    it was not set: the links Salesbot puts in emails (unsubscribe, tracking) and the OAuth
    callback must reach this process, also on a PORT other than 3000."""
    if "PUBLIC_BASE_URL" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})


def start_sandbox(
    settings: Settings, *, console: Console | None = None, clock: ShiftedClock | None = None
) -> Sandbox:
    """Start the stand-ins, point the settings at them and make the sandbox organization
    ready: its firm seeded (once), its reps' mailboxes connected and a fresh API token."""
    slack, slack_server = start_slack_stand_in()
    google, google_server = start_google_stand_in()
    anthropic, anthropic_server = start_anthropic_stand_in(api_keys=[SANDBOX_ANTHROPIC_KEY])
    servers = [slack_server, google_server, anthropic_server]
    try:
        return _ready(
            settings,
            slack=slack,
            google=google,
            anthropic=anthropic,
            servers=servers,
            console=console,
            clock=clock or ShiftedClock(),
        )
    except BaseException:
        for server in servers:
            server.stop()
        raise


def _ready(
    settings: Settings,
    *,
    slack: SlackStandIn,
    google: GoogleStandIn,
    anthropic: AnthropicStandIn,
    servers: list[RunningServer],
    console: Console | None,
    clock: ShiftedClock,
) -> Sandbox:
    slack_server, google_server, anthropic_server = servers
    _people_and_channels(slack, google)
    anthropic.answer_tool(CLASSIFY_TOOL, _classification)
    admin = REPS[0]
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
    engine = make_engine(sandboxed.DATABASE_URL)
    try:
        sessions = make_session_factory(engine)
        cipher = SecretBox(sandboxed.SALESBOT_SECRET_KEY)

        def uow() -> UnitOfWork:
            return UnitOfWork(sessions, cipher=cipher)

        accounts = Accounts(uow=uow, clock=clock)
        org = accounts.bootstrap_sandbox(
            team_id=DEFAULT_TEAM_ID,
            slug="sandbox",
            name=FIRM_NAME,
            admin_email=admin.email,
            admin_slack_user_id=admin.slack_user_id,
            admin_name=admin.name,
        )
        from bot.app import build_message_classifiers

        # The reviews are read as the running app reads them: by Claude (here its stand-in,
        # already up), the offline model where it fails.
        seeded = seed_firm(
            sessions,
            org_id=org.id,
            clock=clock,
            uow=uow,
            classifiers=build_message_classifiers(sandboxed),
            cipher=cipher,
        )
        services = Services(engine=engine, session_factory=sessions, clock=clock)
        connected = _connect_mailboxes(sandboxed, services, uow, google, seeded)
        # A newsletter issue is submitted only with a sending mailbox connected: now.
        issue_id, made = seed_newsletter(
            uow,
            org_id=org.id,
            clock=clock,
            admin=Actor(
                org_id=org.id,
                user_id=seeded.rep_user_ids[admin.email],
                role=UserRole.ADMIN.value,
                slack_user_id=admin.slack_user_id,
            ),
        )
        seeded.marketing.newsletter_issue_id = issue_id
        seeded.marketing.made += made
        seeded.made += made
        token = _fresh_token(accounts, org.slug, admin.email)
    finally:
        engine.dispose()
    google.oauth.set_consenting_user(admin.email)
    sandbox = Sandbox(
        settings=sandboxed,
        slack=slack,
        google=google,
        clock=clock,
        org_slug=org.slug,
        admin_user_id=admin.slack_user_id,
        admin_email=admin.email,
        servers=servers,
        anthropic=anthropic,
        api_token=token,
        seed=seeded,
        connected_mailboxes=connected,
    )
    if console is not None:
        console.print(f"  Slack Web API stand-in : {slack_server.url}/api/")
        console.print(
            f"  Google stand-in        : {google_server.url}  (Gmail, OAuth, Pub/Sub certs)"
        )
        console.print(f"  Anthropic stand-in     : {anthropic_server.url}")
        console.print(
            f"  organization '{org.slug}' is bound to the stand-in's workspace {DEFAULT_TEAM_ID};"
            f" its admin is {admin.email}"
        )
        what = "seeded now" if seeded.seeded_now else "already seeded"
        console.print(
            f"  {FIRM_NAME} ({what}): {seeded.clients} clients, {seeded.contacts} contacts,"
            f" {seeded.orders:,} orders; campaign '{seeded.campaign_name}' reviewed in"
            f" #{REVIEW_CHANNEL_NAME}"
        )
        marketing = seeded.marketing
        console.print(
            f"  Marketing              : {marketing.content_items} content items"
            f" ({marketing.scheduled_posts} posts scheduled), {marketing.reviews} reviews;"
            f" response cards in #{REPUTATION_CHANNEL_NAME}; the newsletter"
            f" '{NEWSLETTER_NAME}' has an issue waiting for review in #{MARKETING_CHANNEL_NAME}"
        )
        console.print(f"  Gmail connected        : {', '.join(connected)}")
    return sandbox


def _people_and_channels(slack: SlackStandIn, google: GoogleStandIn) -> None:
    """The firm's reps in the Slack workspace (the admin renamed after the seed's), its
    #sales-review, #marketing and #reputation channels, and a Gmail mailbox for each rep."""
    for rep in REPS:
        slack.add_user(
            rep.slack_user_id,
            rep.handle,
            rep.email,
            real_name=rep.name,
            is_admin=rep.slack_user_id == DEFAULT_ADMIN_USER_ID,
            is_owner=rep.slack_user_id == DEFAULT_ADMIN_USER_ID,
        )
        google.add_mailbox(rep.email)
    slack.add_channel(REVIEW_CHANNEL_ID, REVIEW_CHANNEL_NAME)
    slack.add_channel(MARKETING_CHANNEL_ID, MARKETING_CHANNEL_NAME)
    slack.add_channel(REPUTATION_CHANNEL_ID, REPUTATION_CHANNEL_NAME)


def _classification(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Anthropic stand-in's `classify_message`: the reading of a sample reply when the
    email is one (sandbox/sample_replies.py), a review's tone when the text is a public
    review (domain/reputation_service.py reads them as "<Site> review, N of 5 stars"), else
    the stand-in's keyword reading."""
    prompt = _last_user_text(body)
    email = _email_of(prompt)
    subject, text = str(email.get("subject") or ""), str(email.get("body") or "")
    reading = reading_for(f"{subject}\n{text}")
    if reading is not None:
        return reading.as_tool_input()
    answer = keyword_classification(prompt)
    if _REVIEW_SUBJECT.fullmatch(subject):
        # The keyword reading is an email's ("call" reads as interested): a review is read
        # by its words of praise and complaint instead.
        words = set(re.findall(r"[a-z']+", text.casefold()))
        tone = len(words & _PRAISE) - len(words & _COMPLAINT)
        score = max(-0.9, min(0.9, 0.4 * tone))
        label = "positive" if score >= 0.2 else "negative" if score <= -0.2 else "neutral"
        answer.update(sentiment=label, sentiment_score=score, intent="none")
    return answer


_REVIEW_SUBJECT = re.compile(r"\w+ review, [1-5] of 5 stars")
_PRAISE = frozenset(
    "excellent great fast thorough clear friendly polite recommend wonderful helpful easy"
    " early professional thank thanks quick smooth".split()
)
_COMPLAINT = frozenset(
    "late slow nobody never wrong rude worst terrible lawsuit attorney lawyer killed slipped"
    " unprofessional ignored mistake mistakes errors delayed".split()
)


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    str(block.get("text", "")) for block in content if isinstance(block, dict)
                )
    return ""


def _email_of(prompt: str) -> dict[str, Any]:
    match = re.search(r"<email>\s*(.*?)\s*</email>", prompt, re.DOTALL)
    if match is None:
        return {}
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _connect_mailboxes(
    settings: Settings,
    services: Services,
    uow: Any,
    google: GoogleStandIn,
    seeded: SeedReport,
) -> list[str]:
    """Connect each rep's Gmail the way a rep does: Salesbot starts the consent, the rep
    allows it on the Google stand-in's consent screen, and Salesbot completes it with the
    code Google sent back to the callback. Done at every start: the stand-in is new each
    time, so the tokens of an earlier start open nothing."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    # Only its consent is used here; the app's own wiring sends the mail.
    gmail = build_gmail_integration(
        settings,
        services,
        uow=uow,
        unsubscribe_url=lambda org_id, contact_id, email_type=None: f"{base}/unsubscribe",
        limits=SANDBOX_SEND_LIMITS,
    )
    if gmail is None:
        raise RuntimeError("the sandbox's Google OAuth client is not configured")
    connected = []
    for rep in REPS:
        user_id = seeded.rep_user_ids[rep.email]
        started = gmail.mailboxes.start_consent(seeded.org_id, user_id)
        google.oauth.set_consenting_user(rep.email)
        consent = httpx.get(started.url, follow_redirects=False, timeout=10)
        if consent.status_code != 302:
            raise RuntimeError(
                f"the Google stand-in's consent screen answered {consent.status_code} for"
                f" {rep.email}: {consent.text[:200]}"
            )
        answer = {k: v[0] for k, v in parse_qs(urlsplit(consent.headers["location"]).query).items()}
        mailbox = gmail.mailboxes.complete(
            state=answer.get("state"),
            code=answer.get("code"),
            error=answer.get("error"),
            browser_secret=started.browser_secret,
        )
        connected.append(mailbox.email)
    return connected


def _fresh_token(accounts: Accounts, org_slug: str, admin_email: str) -> str:
    """Mint this start's API token (its secret can only be shown when it is made) and revoke
    the ones earlier starts made."""
    _, tokens = accounts.list_tokens(org_slug)
    for token in tokens:
        if token.name == SANDBOX_TOKEN_NAME and token.revoked_at is None:
            accounts.revoke_token(org_slug, token.id)
    issued = accounts.create_token(
        org_slug, name=SANDBOX_TOKEN_NAME, scope=TokenScope.WRITE, user_email=admin_email
    )
    return issued.secret


def mount_sandbox_console(application: FastAPI, sandbox: Sandbox) -> None:
    """Serve the /sandbox console on the app (`salesbot serve`, `salesbot demo`): it drives
    the stand-ins and this process."""
    from sandbox.console.app import Console as SandboxConsole
    from sandbox.console.app import Suggestion, mount_console
    from sandbox.seed import CADENCE_DAYS, REVIEW_CHANNEL_ID, REVIEW_CHANNEL_NAME

    runtime = application.state.runtime
    campaign = sandbox.seed.campaign_name if sandbox.seed is not None else None

    def wake_periodic_jobs() -> None:
        # After the clock moves, the periodic jobs and the workers look again now instead of
        # at their next tick, so what came due shows at once.
        for name in runtime.scheduler.names:
            runtime.scheduler.wake(name)
        runtime.worker.wake()
        runtime.poster.wake()
        if runtime.gmail is not None:
            runtime.gmail.outbox.wake()

    # The banner's three things to try, where they are done.
    suggestions = [
        Suggestion(
            f"Launch the seeded campaign; its cards arrive in #{REVIEW_CHANNEL_NAME}:",
            command=f'/campaign launch "{campaign}"',
            channel=REVIEW_CHANNEL_ID,
        )
        if campaign
        else Suggestion("List the campaigns:", command="/campaign list"),
        Suggestion("Approve a card (Approve & send), then open its email in the mailbox pane."),
        Suggestion(
            "Answer it: under “Deliver an email”, pick the sent email and a reply (interested,"
            " out-of-office, unsubscribe, bounce, …); its card comes back in Slack."
        ),
        Suggestion(
            f"Move the clock (+4 days, +1 week) to bring the day {CADENCE_DAYS[1]} follow-ups"
            " due, or post the week's digest with its chart, "
            + ("this week's content and " if _posts_this_week(sandbox) else "")
            + "the Reputation line:",
            command="/digest now --weekly",
            channel=REVIEW_CHANNEL_ID,
        ),
        Suggestion(
            f"This week's content calendar (only you see it); {_content_hint(sandbox)}:",
            command="/content list",
            channel=MARKETING_CHANNEL_ID,
        ),
        Suggestion(
            f"The newsletter “{NEWSLETTER_NAME}”: this month's issue waits for review in"
            f" #{MARKETING_CHANNEL_NAME}, rendered for a sample subscriber with the audience"
            " and the sending plan (Approve & schedule sends it over the next days)."
        ),
        Suggestion(
            f"Reviews: the 2-star Zillow review's drafted response waits in"
            f" #{REPUTATION_CHANNEL_NAME} (Approve response, Edit, Reject); the one that"
            " mentions a lawsuit is escalated to you, the account manager, in your DM with"
            " salesbot. The numbers: GET /api/reputation/trends (API docs)."
        ),
    ]
    mount_console(
        application,
        SandboxConsole(
            slack=sandbox.slack,
            google=sandbox.google,
            clock=sandbox.clock,
            signing_secret=sandbox.settings.SLACK_SIGNING_SECRET or "",
            app_url=lambda: sandbox.app_url,
            user_id=sandbox.admin_user_id,
            mailbox=sandbox.admin_email,
            push_audience=sandbox.settings.PUBSUB_AUDIENCE or "",
            wake=wake_periodic_jobs,
            start_channel=REVIEW_CHANNEL_ID,
            suggestions=suggestions,
        ),
    )


def print_banner(sandbox: Sandbox, console: Console) -> None:
    """Say where the console is, the API token, and what to try first."""
    seed = sandbox.seed
    campaign = seed.campaign_name if seed is not None else "<campaign>"
    console.rule("[bold green]Salesbot sandbox is ready[/bold green]")
    console.print(f"  console   : [bold]{escape(sandbox.console_url)}[/bold]")
    console.print(f"  API docs  : {escape(sandbox.console_url.removesuffix(CONSOLE_PATH))}/docs")
    console.print(f"  API token : {escape(sandbox.api_token)}  (acts as {sandbox.admin_email})")
    console.print("  Try next:")
    console.print(
        f'   1. In the console\'s command box: [bold]/campaign launch "{escape(campaign)}"[/bold]'
        f" (cards appear in #{REVIEW_CHANNEL_NAME})"
    )
    console.print(
        "   2. Approve a card, then find the email in the mailbox pane"
        f" ({escape(sandbox.admin_email)})"
    )
    console.print(
        "   3. Deliver a reply to it from the mailbox pane (interested, out-of-office, bounce,"
        " ...) and watch the reply card arrive"
    )
    console.print(
        f"   4. [bold]/content list[/bold] shows this week's content; {_content_hint(sandbox)}"
    )
    console.print(
        f"   5. Review cards: a drafted response in #{REPUTATION_CHANNEL_NAME}, a lawsuit"
        " escalated to your DM; trends at GET /api/reputation/trends"
    )
    console.print(
        f"   6. The newsletter '{NEWSLETTER_NAME}': this month's issue waits for review in"
        f" #{MARKETING_CHANNEL_NAME} (Approve & schedule, Edit, Reject)"
    )
    console.print(
        f"  Move the sandbox clock forward in the console to bring day {_cadence_hint()}"
        " follow-ups due; `salesbot demo --fast` runs all of it unattended."
    )
    console.rule()


def _content_hint(sandbox: Sandbox) -> str:
    """When the seeded LinkedIn post's card comes, and how to get there."""
    return content_hint(
        sandbox.seed.marketing if sandbox.seed is not None else None, sandbox.clock.now()
    )


def _posts_this_week(sandbox: Sandbox) -> bool:
    return posts_this_week(
        sandbox.seed.marketing if sandbox.seed is not None else None, sandbox.clock.now()
    )


def content_hint(marketing: MarketingReport | None, now: datetime) -> str:
    """When the seeded LinkedIn post's card comes, how to get there, and (seeded late in
    the week, when the posts fall on next week's business days) why `/content list` shows
    none of them yet."""
    post_at = marketing.linkedin_post_at if marketing is not None else None
    if post_at is None:
        return "a post's card comes to its owner's DM on its morning"
    card = (
        f"the LinkedIn post's card comes to your DM on the morning of {post_at:%a %b %d}"
        " (move the clock there), with Done, Snooze and Skip"
    )
    if posts_this_week(marketing, now):
        return card
    return f"the seeded posts are next week's, so this week's list is empty until then; {card}"


def posts_this_week(marketing: MarketingReport | None, now: datetime) -> bool:
    """Whether the seeded LinkedIn post falls in the calendar's week (Monday to Sunday)
    holding `now`: the week `/content list` and the digest's content section show."""
    if marketing is None or marketing.linkedin_post_at is None:
        return False
    since, until = week_of(now, marketing.time_zone)
    return since <= marketing.linkedin_post_at < until


def _cadence_hint() -> str:
    return ", ".join(str(day) for day in CADENCE_DAYS[1:])
