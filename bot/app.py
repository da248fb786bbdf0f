"""The composition root: build the ASGI application from settings.

Nothing is created at import time; `build_app(settings)` wires the database, the
clients of Slack, Gmail and Anthropic (each pointed by a setting at the real service
or at a local stand-in), the use cases, the Bolt app, the task worker and the routes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from bot.content_chat import SlackContentChat
from bot.gmail import build_gmail_integration
from bot.gmail_inbound import GmailInbound, build_gmail_inbound
from bot.notifier import SlackNotifier, add_retry_handlers
from bot.settings import Settings
from bot.slack_app import BOT_SCOPES, QueuedLazyRunner, build_bolt_app
from bot.slack_oauth import CachedAuthorize
from domain import faults
from domain.cadence import CadenceSettings, HolidayCalendar, NoHolidays
from domain.catalog import Catalog
from domain.clock import Clock, FileClock, SystemClock
from domain.content_service import ContentCalendar
from domain.corrections import Corrections
from domain.deps import Deps
from domain.digests import DigestPoster, Digests
from domain.email_preferences import EmailType
from domain.errors import ExternalServiceError, InvalidInput
from domain.jobs import TaskKind
from domain.mail import SendOutcome
from domain.mailboxes import MailboxAllowances
from domain.newsletter_service import Newsletters
from domain.outreach import Outreach
from domain.ports import (
    DraftModel,
    Mailer,
    MessageClassifier,
    ReplyDrafter,
    UnsubscribeTokenReader,
)
from domain.replies import Replies
from domain.reply_policy import ReplyPolicies
from domain.reply_routing import Triage
from domain.reputation_service import Reputation
from domain.rules import Rules
from domain.sending import SendLimits
from domain.suppression import Suppression
from domain.targeting import Targeting
from domain.tracking import TRACKING_PURPOSE, TrackingHits
from domain.understanding import PipelineSettings, Understanding
from handlers import gmail_push
from handlers.api import (
    analytics,
    cadence,
    cards,
    engagement,
    health,
    inbound,
    inbound_rules,
    jobs,
    marketing,
    reply_policy,
    unsubscribe,
)
from handlers.api import analytics_settings as analytics_settings_api
from handlers.api import content as content_api
from handlers.api import email_campaigns as email_campaigns_api
from handlers.api import email_preferences as email_preferences_api
from handlers.api import gmail as gmail_api
from handlers.api import metrics as metrics_api
from handlers.api import newsletters as newsletters_api
from handlers.api import reputation as reputation_api
from handlers.api import targeting as targeting_api
from handlers.api import tracking as tracking_api
from handlers.api import triage as triage_api
from handlers.api.deps import Services
from handlers.api.docs import error_answer, install_docs
from handlers.api.errors import error_body, install_error_handlers
from handlers.api.gmail import GmailIntegration
from handlers.observability import ObservabilityMiddleware, received_at
from handlers.request_limits import RequestLimitMiddleware
from handlers.slack.common import SlackDeps
from handlers.slack.newsletters import SlackNewsletterChat
from integrations import metrics
from integrations.crypto import LinkSigner, MailtoUnsubscribeTokens, SecretBox
from integrations.gmail.lookout import GmailLookout
from integrations.gmail.sender import gmail_service
from integrations.gmail.sync import GmailSync
from integrations.holiday_calendar import public_holidays
from integrations.regex_re2 import Re2Engine
from integrations.reply_intents import ReplyIntentReader
from integrations.tracking import HtmlTracker, TrackingTokens, is_crawler
from jobs.analytics import AnalyticsRefresh
from jobs.cadence import CadenceScheduler
from jobs.content import ContentSweep
from jobs.digest import DigestMessages, DigestScheduler, SlackDigestChat
from jobs.email_campaigns import EmailCampaignsRefresh
from jobs.heartbeat import BEAT_EVERY, Heartbeat
from jobs.newsletters import NewsletterSweep
from jobs.recovery import RecoverySweep
from jobs.scheduler import PeriodicJob, PeriodicScheduler
from jobs.slack_replay import SlackReplayWorker
from jobs.snooze import SnoozeSweep
from jobs.targeting import TargetingJob
from jobs.understanding import UnderstandingWorker
from jobs.worker import TaskWorker
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.heartbeats import WorkerHeartbeats
from storage.inbound import SqlInboundStore
from storage.models import Organization
from storage.slack_calls import SlackCallQueue
from storage.slack_store import DbInstallationStore, DbOAuthStateStore
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything built from settings, kept on `app.state.runtime`."""

    settings: Settings
    services: Services
    catalog: Catalog
    outreach: Outreach
    worker: TaskWorker
    poster: TaskWorker
    recovery: RecoverySweep
    #: Posts cards whose snooze ended again, as new messages.
    snooze_sweep: SnoozeSweep
    #: The cadence tick under its periodic lock (run by `scheduler`, or by the API now).
    cadence_scheduler: CadenceScheduler
    #: The process's periodic jobs: the cadence tick, the recovery and snooze sweeps.
    scheduler: PeriodicScheduler
    bolt: App | None
    secrets: SecretBox
    unsubscribe_signer: LinkSigner
    # Reads the token of our List-Unsubscribe mailto plus-address (the inbound pipeline).
    unsubscribe_tokens: MailtoUnsubscribeTokens
    suppression: Suppression
    mailbox_allowances: MailboxAllowances
    understanding: Understanding
    inbound_worker: UnderstandingWorker
    rules: Rules
    reply_policies: ReplyPolicies
    #: The triage channel of reply cards (`/triage`, /api/inbound/triage).
    triage: Triage
    #: Classifies inbound mail: Claude (ANTHROPIC_FAST_MODEL) with a key, else the offline
    #: model; `offline_classifier` is the one to fall back on when Claude is away.
    message_classifier: MessageClassifier
    offline_classifier: MessageClassifier
    #: Drafts answers to inbound replies: Claude (ANTHROPIC_MODEL) with a key, else templates.
    replies: Replies
    #: Reps' re-labels of inbound mail and the rules they propose.
    corrections: Corrections
    gmail: GmailIntegration | None = None
    slack_worker: SlackReplayWorker | None = None
    #: Reads the tokens of tracked pixels and links; counts their fetches (issue 14).
    tracking_tokens: TrackingTokens | None = None
    tracking_hits: TrackingHits | None = None
    #: Lead scores and the stale-client ranking (the API's reads and recomputes).
    targeting: Targeting | None = None
    #: The daily run of `targeting`, under its periodic lock (scheduled hourly).
    targeting_job: TargetingJob | None = None
    #: `/digest`: the engagement digest's subscriptions and posts on demand.
    digests: Digests | None = None
    #: Claims the digests whose time came and posts them (a job of `scheduler`; with Slack).
    digest_poster: DigestPoster | None = None
    #: Says that this process runs the background work (a job of `scheduler`; /readyz).
    heartbeat: Heartbeat | None = None
    #: Reviews, their sentiment, escalations and drafted responses (docs/reputation.md).
    reputation: Reputation | None = None
    #: Marketing content, its schedule and the due-morning cards (docs/content-calendar.md).
    content: ContentCalendar | None = None
    #: Newsletters, their issues' preview cards and sending (docs/newsletters.md).
    newsletters: Newsletters | None = None
    #: Posts issues' cards, plans approved issues, follows their sends (a scheduler job).
    newsletter_sweep: NewsletterSweep | None = None

    def run_tasks_until_idle(self) -> int:
        """Replay Slack calls, draft, then post, until nothing is pending (tests, benches)."""
        total = 0
        while True:
            ran = self.recovery.plan_pending()
            ran += self.worker.run_until_idle() + self.poster.run_until_idle()
            if self.slack_worker is not None:
                ran += self.slack_worker.run_until_idle()
            if not ran:
                return total
            total += ran


class Background:
    """The work that runs beside the web endpoints: drafting, posting cards, the Gmail
    outbox, inbound Gmail sync and the Slack work deferred past acks.

    `salesbot serve` runs it in the web process; `salesbot worker` runs it alone, so that
    `salesbot web` processes keep their CPU for answering Slack within its deadline.
    """

    def __init__(self, runtime: Runtime, gmail_inbound: GmailInbound) -> None:
        self.runtime = runtime
        self.gmail_inbound = gmail_inbound
        parts: list[Any] = [
            runtime.worker,
            runtime.poster,
            runtime.scheduler,
        ]
        if runtime.gmail is not None:
            parts.append(runtime.gmail.outbox)
        parts.append(gmail_inbound)
        parts.append(runtime.inbound_worker)
        if runtime.slack_worker is not None:
            parts.append(runtime.slack_worker)
        self._parts = parts

    def start(self) -> None:
        """Start every part."""
        for part in self._parts:
            part.start()

    def stop(self, *, grace: float | None = None) -> bool:
        """Stop every part at once, so that none takes new work, and wait up to `grace`
        seconds (None: each part's own limit) for the work in hand, such as an email being
        sent; return True when every part finished within it.

        A part still busy at the deadline is left to the process's exit: what it held is
        under a lease, and the next process carries it on (an email whose send was cut off
        is looked for in its mailbox by Message-ID before anything is sent again).
        """
        stoppers = [
            threading.Thread(target=part.stop, name=f"stop-{type(part).__name__}", daemon=True)
            for part in self._parts
        ]
        for stopper in stoppers:
            stopper.start()
        deadline = None if grace is None else time.monotonic() + grace
        for stopper in stoppers:
            stopper.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        busy = [stopper.name.removeprefix("stop-") for stopper in stoppers if stopper.is_alive()]
        if self.runtime.heartbeat is not None:
            self.runtime.heartbeat.forget()
        if busy:
            log.warning(
                "stopping: work still in hand at the deadline",
                extra={"parts": busy, "grace_seconds": grace},
            )
        return not busy


def build_background(
    runtime: Runtime, *, gmail_service_for_account: Callable[[int], Any] | None = None
) -> Background:
    """Build the background work of a runtime (not started)."""
    if gmail_service_for_account is None and runtime.gmail is not None:
        gmail_service_for_account = _mailbox_services(runtime.gmail)
    gmail_inbound = build_gmail_inbound(
        runtime.settings,
        runtime.services,
        service_for_account=gmail_service_for_account,
        on_parsed=runtime.inbound_worker.wake,
    )
    return Background(runtime, gmail_inbound)


def _mailbox_services(gmail: GmailIntegration) -> Callable[[int], Any]:
    """Return the factory of an authorized Gmail API resource per connected mailbox."""

    def service_for_account(account_id: int) -> Any:
        tokens = gmail.mailer.mailbox_tokens(account_id)
        if tokens is None:
            raise ExternalServiceError(f"Gmail account {account_id} is not connected")
        return gmail_service(gmail.config, tokens)

    return service_for_account


def build_lookout(
    gmail: GmailIntegration, services: Services, uow: Callable[[], UnitOfWork]
) -> GmailLookout:
    """The last look before a cadence follow-up, in its sender's connected mailbox."""
    service_for_account = _mailbox_services(gmail)
    store = SqlInboundStore(services.session_factory)

    def mailbox_for(org_id: int, user_id: int) -> tuple[int, str] | None:
        # The mailbox the follow-up leaves from: the one the outbox sends it with.
        with uow() as unit:
            account = unit.gmail_accounts.for_user(org_id, user_id, connected_only=True)
        return (account.id, account.email) if account is not None else None

    return GmailLookout(
        store=store,
        sync=GmailSync(store, service_for_account, services.clock),
        service_for_account=service_for_account,
        mailbox_for=mailbox_for,
        clock=services.clock,
    )


def holiday_calendar(settings: CadenceSettings) -> HolidayCalendar:
    """The holiday calendar of an organization's cadence settings (none without a country;
    a country or state the `holidays` package does not know was refused when saved)."""
    if not settings.holiday_country:
        return NoHolidays()
    try:
        return public_holidays(settings.holiday_country, settings.holiday_subdivision)
    except InvalidInput as exc:
        log.warning("holiday calendar unavailable", extra={"reason": exc.message})
        return NoHolidays()


def build_services(
    settings: Settings, *, session_factory: SessionFactory | None = None, clock: Clock | None = None
) -> Services:
    """Create the engine and session factory (or use the ones given, in tests)."""
    engine = make_engine(settings.DATABASE_URL)
    return Services(
        engine=engine,
        session_factory=session_factory or make_session_factory(engine),
        clock=clock
        or (FileClock(settings.SALESBOT_CLOCK_FILE) if settings.SALESBOT_CLOCK_FILE else None)
        or SystemClock(),
    )


def build_drafter(settings: Settings) -> DraftModel | None:
    """Claude personalises drafts when an Anthropic key is set; otherwise templates only."""
    if not settings.ANTHROPIC_API_KEY:
        return None
    from integrations.claude import ClaudeDrafter, build_anthropic_client

    client = build_anthropic_client(
        settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL, timeout=30.0
    )
    return ClaudeDrafter(client, model=settings.ANTHROPIC_MODEL)


def build_reply_drafter(settings: Settings) -> ReplyDrafter | None:
    """Claude drafts answers to replies when an Anthropic key is set; otherwise templates."""
    if not settings.ANTHROPIC_API_KEY:
        return None
    from integrations.claude import build_anthropic_client
    from integrations.claude_reply import ClaudeReplyDrafter

    client = build_anthropic_client(settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
    return ClaudeReplyDrafter(client, model=settings.ANTHROPIC_MODEL)


def build_message_classifiers(settings: Settings) -> tuple[MessageClassifier, MessageClassifier]:
    """Return (the classifier to use, the offline one): Claude when a key is set."""
    from integrations.offline_classifier import OfflineClassifier

    # Its model is trained at the first classification, on the shipped labelled set plus the
    # reps' corrections `salesbot inbound train` exported (when that file exists).
    offline = OfflineClassifier(extra_examples=Path(settings.OFFLINE_CORRECTIONS_FILE))
    if not settings.ANTHROPIC_API_KEY:
        return offline, offline
    from integrations.claude import build_anthropic_client
    from integrations.claude_classifier import ClaudeClassifier

    client = build_anthropic_client(settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
    claude = ClaudeClassifier(
        client, model=settings.ANTHROPIC_FAST_MODEL, concurrency=settings.ANTHROPIC_CONCURRENCY
    )
    return claude, offline


def check_claude_models(settings: Settings) -> list[dict[str, str]]:
    """Ask the Models API about ANTHROPIC_MODEL and ANTHROPIC_FAST_MODEL (logged; never raises)."""
    if not settings.ANTHROPIC_API_KEY:
        return []
    from integrations.claude import build_anthropic_client
    from integrations.claude_models import check_models

    client = build_anthropic_client(settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
    checks = check_models(
        client,
        [
            ("ANTHROPIC_MODEL", settings.ANTHROPIC_MODEL),
            ("ANTHROPIC_FAST_MODEL", settings.ANTHROPIC_FAST_MODEL),
        ],
    )
    return [{"setting": check.setting, **check.as_json()} for check in checks]


def build_runtime(
    settings: Settings,
    *,
    services: Services | None = None,
    mailer: Mailer | None = None,
    drafter: DraftModel | None = None,
) -> Runtime:
    """Wire the use cases and the Slack app."""
    faults.arm(settings.SALESBOT_FAULT_POINTS)
    services = services or build_services(settings)
    secrets = SecretBox(settings.SALESBOT_SECRET_KEY)
    unsubscribe_signer = LinkSigner(settings.SALESBOT_SECRET_KEY, purpose="unsubscribe")
    unsubscribe_tokens = MailtoUnsubscribeTokens(settings.SALESBOT_SECRET_KEY)
    base = settings.PUBLIC_BASE_URL.rstrip("/")

    def unsubscribe_url(org_id: int, contact_id: int, email_type: EmailType | None = None) -> str:
        # "t" names the email's type: the page and one-click act on it. A token without
        # it (sent before types) still works, as "everything".
        claims: dict[str, object] = {"o": org_id, "c": contact_id}
        if email_type is not None:
            claims["t"] = email_type.value
        token = unsubscribe_signer.sign(claims)
        return f"{base}/unsubscribe/{token}"

    def uow() -> UnitOfWork:
        return UnitOfWork(services.session_factory, cipher=secrets)

    # Opens and clicks of the campaign emails of organizations that turn tracking on.
    tracking_tokens = TrackingTokens(
        LinkSigner(settings.SALESBOT_SECRET_KEY, purpose=TRACKING_PURPOSE)
    )

    slack = build_slack_clients(settings, services, secrets)
    work_lease = timedelta(seconds=settings.WORK_LEASE_SECONDS)
    send_lease = timedelta(seconds=settings.GMAIL_SEND_LEASE_SECONDS)
    limits = SendLimits()
    limits = SendLimits(
        lease=send_lease,
        claim_grace=min(limits.claim_grace, send_lease),
        send_hold=min(limits.send_hold, send_lease),
    )
    gmail = build_gmail_integration(
        settings,
        services,
        uow=uow,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_token=unsubscribe_tokens.build,
        client_for_org=slack.client_for_org if slack is not None else None,
        limits=limits,
        tracker=HtmlTracker(tracking_tokens, public_base_url=base),
    )
    if mailer is None and gmail is not None:
        mailer = gmail.mailer
    lookout = build_lookout(gmail, services, uow) if gmail is not None else None
    notifier = (
        SlackNotifier(
            slack.client_for_org, post_interval_seconds=settings.SLACK_POST_INTERVAL_SECONDS
        )
        if slack is not None
        else None
    )
    service_deps = Deps(uow=uow, clock=services.clock)
    catalog = Catalog(service_deps)
    # One per process: its per-org cache of rules is shared by the routes, Slack and inbound.
    rules = Rules(service_deps, regex=Re2Engine())
    reply_policies = ReplyPolicies(service_deps)
    replies = Replies(service_deps, drafter=build_reply_drafter(settings))
    outreach = Outreach.build(
        service_deps,
        unsubscribe_url=unsubscribe_url,
        mailer=mailer,
        notifier=notifier,
        drafter=drafter if drafter is not None else build_drafter(settings),
        secrets=secrets,
        work_lease=work_lease,
        replies=replies,
        holidays=holiday_calendar,
        lookout=lookout,
    )
    if gmail is not None:

        def finish_send(
            org_id: int, email_send_id: int, card_id: int | None, outcome: SendOutcome
        ) -> None:
            # The outbox's listener returns nothing; the use case returns the card it settled.
            outreach.delivery.finish_send(org_id, email_send_id, card_id, outcome)

        gmail.outbox.on_sent = finish_send
    # One thread posts card messages, in order, paced by Slack's rate limit (the client
    # retries `ratelimited` after Retry-After), so drafting never waits for Slack.
    poster = TaskWorker(
        outreach,
        uow,
        services.clock,
        threads=1,
        claim_size=1,
        poll_seconds=settings.WORKER_POLL_SECONDS,
        lease=work_lease,
        kinds=[TaskKind.POST_CARD],
        name="card-poster",
    )
    # Setting a triage channel queues the reply cards that had nowhere to go: post them.
    triage = Triage(service_deps, channels=notifier, on_queued=poster.wake)
    # Drafts are made a claim at a time (contexts, inserts and commits per claim), so a
    # large claim spreads those round trips over more cards.
    worker = TaskWorker(
        outreach,
        uow,
        services.clock,
        claim_size=250,
        poll_seconds=settings.WORKER_POLL_SECONDS,
        lease=work_lease,
        exclude_kinds=[TaskKind.POST_CARD],
        on_progress=poster.wake,
    )
    # Plans pending jobs (REST launches) and carries on what a dead process left, once its
    # lease ran out; it looks a few times per lease, and at most every 30 s.
    recovery = RecoverySweep(outreach.recovery, services.session_factory, on_found=worker.wake)
    # Rule proposals are sent to the admins in Slack when there is a Slack app to send them.
    corrections = Corrections(
        service_deps,
        rules=rules,
        presenting=outreach.presenting,
        propose_after=settings.RULE_PROPOSAL_AFTER,
        notify_in_chat=slack is not None and bool(settings.SLACK_SIGNING_SECRET),
    )
    snooze_sweep = SnoozeSweep(outreach.snoozing, services.session_factory)
    cadence_scheduler = CadenceScheduler(
        outreach.cadences, services.session_factory, on_tasks=worker.wake
    )
    # The sweeps carry on a dead process's work once its lease ran out: they look a few
    # times per lease, at most every 30 s (a snooze ends within one such interval).
    sweep_every = timedelta(
        seconds=min(30.0, max(settings.WORKER_POLL_SECONDS, work_lease.total_seconds() / 4))
    )
    scheduler = PeriodicScheduler()
    scheduler.add(PeriodicJob(RecoverySweep.NAME, recovery.run_once, sweep_every))
    scheduler.add(PeriodicJob(SnoozeSweep.NAME, snooze_sweep.run_once, sweep_every))
    scheduler.add(
        PeriodicJob(
            CadenceScheduler.NAME,
            cadence_scheduler.run_round,
            timedelta(seconds=settings.CADENCE_TICK_SECONDS),
            max_rounds=1,
        )
    )
    # Campaigns' stored metrics (`marketing_campaigns.metrics`), rewritten every hour.
    analytics_refresh = AnalyticsRefresh(uow, services.session_factory, services.clock)
    scheduler.add(
        PeriodicJob(
            AnalyticsRefresh.NAME,
            analytics_refresh.run_round,
            AnalyticsRefresh.EVERY,
            max_rounds=1,
        )
    )
    # The `email_campaigns` rows of campaigns with news, at least hourly each.
    email_campaigns_refresh = EmailCampaignsRefresh(uow, services.session_factory, services.clock)
    scheduler.add(
        PeriodicJob(
            EmailCampaignsRefresh.NAME,
            email_campaigns_refresh.run_round,
            EmailCampaignsRefresh.EVERY,
            max_rounds=1,
        )
    )
    recovery.wake = lambda: scheduler.wake(RecoverySweep.NAME)
    # The background work says it runs (`/readyz`), from the scheduler that runs it.
    heartbeat = Heartbeat(
        WorkerHeartbeats(services.session_factory), services.clock, name=_worker_name()
    )
    scheduler.add(PeriodicJob(Heartbeat.NAME, heartbeat.run_once, BEAT_EVERY, max_rounds=1))
    targeting = Targeting(service_deps)
    targeting_job = TargetingJob(targeting, services.session_factory)
    scheduler.add(
        PeriodicJob(
            TargetingJob.NAME,
            targeting_job.run_once,
            TargetingJob.EVERY,
            max_rounds=TargetingJob.MAX_ROUNDS,
        )
    )
    # The engagement digest: the job claims the subscriptions whose local posting time came
    # and posts their digests (and those `/digest now` queued, waking it) through Slack.
    digest_poster: DigestPoster | None = None
    if slack is not None:
        digest_poster = DigestPoster(
            service_deps,
            chat=SlackDigestChat(slack.client_for_org),
            renderer=DigestMessages(),
            lease=work_lease,
            worker=_worker_name(),
        )
        scheduler.add(
            PeriodicJob(
                DigestScheduler.NAME,
                DigestScheduler(digest_poster, services.session_factory).run_once,
                timedelta(seconds=settings.DIGEST_TICK_SECONDS),
            )
        )
    # The content calendar: the sweep posts each scheduled post's card on its due morning.
    content = ContentCalendar(
        service_deps,
        chat=SlackContentChat(slack.client_for_org) if slack is not None else None,
        channels=notifier,
        lease=work_lease,
        worker=_worker_name(),
    )
    if slack is not None:
        content_sweep = ContentSweep(content, services.session_factory)
        scheduler.add(PeriodicJob(ContentSweep.NAME, content_sweep.run_once, sweep_every))
    digests = Digests(
        service_deps,
        channels=notifier,
        on_queued=lambda: scheduler.wake(DigestScheduler.NAME),
    )
    outreach.cadences.max_per_tick = settings.CADENCE_TICK_LIMIT
    outreach.cadences.chunk = settings.CADENCE_TICK_CHUNK
    message_classifier, offline_classifier = build_message_classifiers(settings)
    understanding = build_understanding(
        uow,
        services.clock,
        work_lease=work_lease,
        classifiers=(message_classifier, offline_classifier),
        unsubscribe_tokens=unsubscribe_tokens,
        rules=rules,
    )

    def wake_card_workers() -> None:
        # A round's cards queued draft_reply (reply cards) and post_card (human cards).
        worker.wake()
        poster.wake()

    reputation = Reputation(
        service_deps,
        model=message_classifier,
        offline=offline_classifier,
        regex=Re2Engine(),
        cipher=secrets,
        presenting=outreach.presenting,
        on_cards=poster.wake,
    )
    # Newsletters: issues' cards, their planning and progress run in the newsletter sweep,
    # woken by a submission or an approval; planned rows wake the outbox.
    newsletters = Newsletters(
        service_deps,
        chat=SlackNewsletterChat(slack.client_for_org) if slack is not None else None,
        new_message_id=gmail.mailer.new_message_id if gmail is not None else None,
        tracker=HtmlTracker(tracking_tokens, public_base_url=base),
        lease=work_lease,
        batch=settings.NEWSLETTER_PLAN_BATCH,
        on_work=lambda: scheduler.wake(NewsletterSweep.NAME),
    )
    if gmail is not None:
        newsletters.on_planned = gmail.outbox.wake
    newsletter_sweep = NewsletterSweep(newsletters, services.session_factory)
    scheduler.add(PeriodicJob(NewsletterSweep.NAME, newsletter_sweep.run_once, sweep_every))
    inbound_worker = UnderstandingWorker(
        understanding,
        poll_seconds=max(settings.WORKER_POLL_SECONDS, 1.0),
        on_processed=wake_card_workers,
    )
    if lookout is not None:
        # What a last look stored goes through the inbound pipeline at once.
        lookout.on_stored = inbound_worker.wake
    bolt: App | None = None
    slack_worker: SlackReplayWorker | None = None
    if slack is not None and settings.SLACK_SIGNING_SECRET:
        deps = SlackDeps(
            outreach=outreach,
            accounts=services.accounts,
            rules=rules,
            session_factory=services.session_factory,
            clock=services.clock,
            wake_worker=worker.wake,
            gmail_connect_url=lambda actor: (
                gmail.gmail_connect_link(actor.user_id, actor.org_id) if gmail else None
            ),
            gmail_address=lambda actor: (
                gmail.connected_address(actor.org_id, actor.user_id) if gmail else None
            ),
            reply_policies=reply_policies,
            triage=triage,
            corrections=corrections,
            holidays=holiday_calendar,
            digests=digests,
            reputation=reputation,
            content=content,
            newsletters=newsletters,
        )
        # The web app stores each listener's slow part; the worker's app replays it.
        slack_calls = SlackCallQueue(services.session_factory)
        replay = build_bolt_app(
            settings,
            deps,
            client=slack.app_client,
            oauth_settings=slack.oauth_settings,
            authorize=slack.authorize,
            replay=True,
        )
        slack_worker = SlackReplayWorker(replay, slack_calls, services.clock, lease=work_lease)
        bolt = build_bolt_app(
            settings,
            deps,
            client=slack.app_client,
            oauth_settings=slack.oauth_settings,
            authorize=slack.authorize,
            lazy_runner=QueuedLazyRunner(slack_calls, services.clock, on_stored=slack_worker.wake),
        )
    return Runtime(
        settings=settings,
        services=services,
        catalog=catalog,
        outreach=outreach,
        worker=worker,
        poster=poster,
        recovery=recovery,
        snooze_sweep=snooze_sweep,
        cadence_scheduler=cadence_scheduler,
        scheduler=scheduler,
        bolt=bolt,
        secrets=secrets,
        unsubscribe_signer=unsubscribe_signer,
        unsubscribe_tokens=unsubscribe_tokens,
        suppression=Suppression(uow, clock=services.clock),
        mailbox_allowances=MailboxAllowances(uow, clock=services.clock),
        understanding=understanding,
        inbound_worker=inbound_worker,
        rules=rules,
        reply_policies=reply_policies,
        triage=triage,
        message_classifier=message_classifier,
        offline_classifier=offline_classifier,
        replies=replies,
        corrections=corrections,
        gmail=gmail,
        slack_worker=slack_worker,
        tracking_tokens=tracking_tokens,
        tracking_hits=TrackingHits(service_deps, is_crawler=is_crawler),
        targeting=targeting,
        targeting_job=targeting_job,
        digests=digests,
        digest_poster=digest_poster,
        heartbeat=heartbeat,
        reputation=reputation,
        content=content,
        newsletters=newsletters,
        newsletter_sweep=newsletter_sweep,
    )


def _worker_name() -> str:
    """This process's name on the leases it takes: host, pid and a random suffix."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(3)}"


def build_understanding(
    uow: Callable[[], UnitOfWork],
    clock: Clock,
    *,
    work_lease: timedelta,
    classifiers: tuple[MessageClassifier, MessageClassifier],
    unsubscribe_tokens: UnsubscribeTokenReader | None = None,
    rules: Rules | None = None,
) -> Understanding:
    """The inbound pipeline: detectors, rules, the model (Claude, offline while it is away),
    linking, actions. `classifiers`: (the one to use, the offline one)."""
    model, offline = classifiers
    return Understanding(
        uow,
        clock=clock,
        model=model,
        offline=offline,
        unsubscribe_tokens=unsubscribe_tokens,
        rules=rules,
        settings=PipelineSettings(lease=work_lease),
        # A "not now" resumes on a business day: US public holidays are skipped.
        intents=ReplyIntentReader(holidays=public_holidays("US")),
    )


@dataclass
class SlackClients:
    """Slack clients: one bot token (single workspace) or one per installed workspace."""

    app_client: WebClient
    oauth_settings: OAuthSettings | None
    installation_store: DbInstallationStore | None
    session_factory: SessionFactory
    authorize: CachedAuthorize | None = None
    _by_org: dict[int, WebClient] = field(default_factory=dict)

    def client_for_org(self, org_id: int) -> WebClient:
        """Return a client with the bot token of the organization's workspace."""
        if self.installation_store is None:
            return self.app_client
        cached = self._by_org.get(org_id)
        if cached is not None:
            return cached
        with self.session_factory() as session:
            team_id = session.scalar(
                select(Organization.slack_team_id).where(Organization.id == org_id)
            )
        bot = self.installation_store.find_bot(enterprise_id=None, team_id=team_id)
        if team_id is None or bot is None or not bot.bot_token:
            raise ExternalServiceError(
                "Salesbot is not installed in this organization's Slack workspace; "
                "an admin can install it from /slack/install"
            )
        client = add_retry_handlers(
            WebClient(token=bot.bot_token, base_url=self.app_client.base_url)
        )
        self._by_org[org_id] = client
        return client


def slack_authorize_url(settings: Settings) -> str:
    """Slack's OAuth authorize page, beside the Web API the settings point at."""
    api = settings.SLACK_API_URL.rstrip("/")
    return api.removesuffix("/api") + "/oauth/v2/authorize"


def build_slack_clients(
    settings: Settings, services: Services, secrets: SecretBox
) -> SlackClients | None:
    """Token mode with SLACK_BOT_TOKEN; OAuth install mode with SLACK_CLIENT_ID/SECRET."""
    if settings.SLACK_CLIENT_ID and settings.SLACK_CLIENT_SECRET:
        store = DbInstallationStore(
            services.session_factory, secrets, client_id=settings.SLACK_CLIENT_ID
        )
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        oauth = OAuthSettings(
            client_id=settings.SLACK_CLIENT_ID,
            client_secret=settings.SLACK_CLIENT_SECRET,
            scopes=BOT_SCOPES,
            installation_store=store,
            state_store=DbOAuthStateStore(services.session_factory),
            install_path="/slack/install",
            redirect_uri_path="/slack/oauth_redirect",
            redirect_uri=f"{base}/slack/oauth_redirect",
            authorization_url=slack_authorize_url(settings),
            install_page_rendering_enabled=False,
        )
        client = add_retry_handlers(WebClient(base_url=settings.SLACK_API_URL))
        # One cache of authorizations for the web app and the worker's app (see CachedAuthorize).
        return SlackClients(
            client,
            oauth,
            store,
            services.session_factory,
            authorize=CachedAuthorize(oauth.authorize),
        )
    if settings.SLACK_BOT_TOKEN:
        client = add_retry_handlers(
            WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL)
        )
        return SlackClients(client, None, None, services.session_factory)
    return None


def build_app(
    settings: Settings,
    *,
    services: Services | None = None,
    runtime: Runtime | None = None,
    start_background: bool = True,
    gmail_service_for_account: Callable[[int], Any] | None = None,
) -> FastAPI:
    """Build the FastAPI app with every route; background work starts with the server."""
    runtime = runtime or build_runtime(settings, services=services)
    background = build_background(runtime, gmail_service_for_account=gmail_service_for_account)
    gmail_inbound = background.gmail_inbound

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The model check calls Anthropic: a thread, so start-up never waits for it.
        threading.Thread(
            target=lambda: setattr(app.state, "claude_models", check_claude_models(settings)),
            name="claude-model-check",
            daemon=True,
        ).start()
        # Several web processes (multiprocess metrics): forget the gauges of dead ones.
        metrics.mark_dead_processes()
        if start_background:
            background.start()
        try:
            yield
        finally:
            background.stop(grace=settings.SHUTDOWN_GRACE_SECONDS)
            metrics.mark_this_process_dead()

    app = FastAPI(
        title="Salesbot",
        version="0.1.0",
        description="Slack/Gmail chat-ops bot for re-engagement campaigns.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from local assets
        redoc_url=None,
    )
    app.add_middleware(RequestLimitMiddleware)
    # Outermost: request ids and HTTP metrics cover every answer, refusals included.
    app.add_middleware(ObservabilityMiddleware)
    app.state.settings = settings
    app.state.services = runtime.services
    app.state.runtime = runtime
    app.state.claude_models = None  # filled by the start-up check (shown by /healthz)
    app.state.classifier = runtime.message_classifier.name  # shown by /healthz
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(metrics_api.router)
    app.include_router(marketing.router)
    app.include_router(jobs.router)
    app.include_router(cadence.router)
    app.include_router(cards.router)
    app.include_router(inbound.router)
    app.include_router(engagement.router)
    app.include_router(email_preferences_api.router)
    app.include_router(analytics.router)
    app.include_router(email_campaigns_api.router)
    app.include_router(inbound_rules.router)
    app.include_router(reply_policy.router)
    app.include_router(triage_api.router)
    app.include_router(targeting_api.router)
    # Without GOOGLE_CLIENT_ID/SECRET every Gmail route answers 503.
    gmail_unavailable: dict[int | str, dict[str, Any]] = {503: error_answer(503)}
    app.include_router(gmail_api.router, responses=gmail_unavailable)
    app.include_router(
        gmail_api.email_router,
        responses={
            **gmail_unavailable,
            202: {"description": "Queued: the mailbox's daily cap or spacing holds it."},
        },
    )
    app.include_router(unsubscribe.router)
    app.include_router(analytics_settings_api.router)
    app.include_router(tracking_api.router)
    app.include_router(reputation_api.router)
    app.include_router(content_api.router)
    app.include_router(newsletters_api.router)
    app.state.gmail_push = gmail_inbound.push
    app.state.gmail_inbound = gmail_inbound
    app.include_router(gmail_push.router)
    if runtime.bolt is not None:
        _mount_slack(app, runtime.bolt, settings.SLACK_SIGNING_SECRET or "")
    return app


def _mount_slack(app: FastAPI, bolt: App, signing_secret: str) -> None:
    """Serve Bolt under /slack/*; its sync dispatch runs in the thread pool, off the loop."""
    verifier = SignatureVerifier(signing_secret)

    def to_bolt(body: str, request: Request) -> BoltRequest | Response:
        # Bolt's own x-slack-bolt-* headers steer its lazy listeners: never from outside.
        headers: dict[str, str | Sequence[str]] = {
            k: [v] for k, v in request.headers.items() if not k.lower().startswith("x-slack-bolt-")
        }
        try:
            return BoltRequest(body=body, query=request.url.query, headers=headers)
        except (ValueError, TypeError, AttributeError, KeyError):
            # Bolt parses the payload as it builds the request: a signed request whose
            # payload is not a JSON object is refused here, not with a 500 inside Bolt.
            return _slack_refusal(400, "malformed_payload", "malformed Slack payload")

    def unsigned(body: str, request: Request) -> Response | None:
        """Refuse an unsigned or forged request before Bolt parses or logs its body."""
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            if _is_ssl_check(body):
                return None  # Slack's SSL check carries no signature; Bolt answers it
            return _slack_refusal(
                401, "invalid_signature", "missing or malformed X-Slack-Request-Timestamp"
            )
        if not verifier.is_valid(body, timestamp, signature):
            return _slack_refusal(401, "invalid_signature", "invalid request signature")
        return None

    def to_response(bolt_response: BoltResponse) -> Response:
        response = Response(status_code=bolt_response.status, content=bolt_response.body)
        for name, values in bolt_response.headers.items():
            for value in values:
                if name.lower() != "content-length":
                    response.headers.append(name, value)
        return response

    @app.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        refusal = unsigned(body, request)
        if refusal is not None:
            return refusal
        bolt_request = to_bolt(body, request)
        if isinstance(bolt_request, Response):
            return bolt_request
        response = to_response(await run_in_threadpool(bolt.dispatch, bolt_request))
        arrived = received_at(request.scope)
        if arrived is not None:
            metrics.SLACK_ACK.labels(_slack_kind(bolt_request.body)).observe(
                time.perf_counter() - arrived
            )
        return response

    if bolt.oauth_flow is not None:
        flow = bolt.oauth_flow

        @app.get("/slack/install", include_in_schema=False)
        async def slack_install(request: Request) -> Response:
            bolt_request = to_bolt("", request)
            if isinstance(bolt_request, Response):
                return bolt_request
            return to_response(await run_in_threadpool(flow.handle_installation, bolt_request))

        @app.get("/slack/oauth_redirect", include_in_schema=False)
        async def slack_oauth_redirect(request: Request) -> Response:
            bolt_request = to_bolt("", request)
            if isinstance(bolt_request, Response):
                return bolt_request
            return to_response(await run_in_threadpool(flow.handle_callback, bolt_request))


def _slack_refusal(status: int, code: str, message: str) -> Response:
    log.info("slack request refused", extra={"status": status, "reason": message})
    return JSONResponse(error_body(code, message), status)


# Slack's payload types, by the kind `salesbot_slack_ack_seconds` times them as.
_SLACK_KINDS = {
    "block_actions": "action",
    "interactive_message": "action",
    "block_suggestion": "action",
    "view_submission": "view",
    "view_closed": "view",
    "shortcut": "shortcut",
    "message_action": "shortcut",
    "event_callback": "event",
    "url_verification": "event",
}


def _slack_kind(body: dict[str, Any]) -> str:
    """command, action, view, shortcut, event or other: what a Slack request carries."""
    if "command" in body:
        return "command"
    return _SLACK_KINDS.get(str(body.get("type") or ""), "other")


def _is_ssl_check(body: str) -> bool:
    return len(body) < 1024 and parse_qs(body).get("ssl_check") == ["1"]
