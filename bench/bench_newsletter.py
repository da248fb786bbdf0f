"""A newsletter issue on PostgreSQL: planned to 20,000 subscribers, then sent over simulated
days (docs/newsletters.md).

Targets (issue 16): 20,000 subscribers planned in under 10 s; sending keeps every
mailbox's cap and spacing with 0 duplicates.

1. Planning: an approved issue of an organization with 20,000 subscribers and two
   connected mailboxes (2,000 a day each, half of it for the newsletter) is planned by
   the newsletter sweep's use case: every email rendered in the sandbox and stored in the
   outbox in batches of 1,000 (one pipelined executemany and one commit each).
2. Sending: 2,000 subscribers from three mailboxes with small caps (200, 400, 600 a day,
   at 50 %) and 60 s spacing, sent by the real outbox through the Gmail API stand-in
   (google-api-python-client over loopback), the clock moved five minutes a round over the
   simulated days. Printed per mailbox: the most sent in any 24 hours against the cap and
   the newsletter's share, the least spacing seen, and the duplicates (Gmail's copy of
   each recipient, and rows per subscriber). The clock stands still within a round, so a
   mailbox sends at most one email a round: five minutes is under the busiest mailbox's
   newsletter spacing (288 s), and the round is what the pace is measured against.

The database `salesbot_bench_newsletter` is recreated each run.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
from sqlalchemy import Engine, func, insert, select

from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.deps import Deps
from domain.newsletter_service import Newsletters
from domain.newsletters import IssueIn, NewsletterIn
from domain.outbox import Outbox
from domain.outreach import Actor
from domain.sending import SendLimits
from integrations.crypto import LinkSigner, SecretBox
from integrations.gmail.client import GMAIL_SCOPES, GoogleConfig
from integrations.gmail.compose import new_message_id
from integrations.gmail.sender import GmailSender
from sandbox.google import GoogleStandIn, GoogleUrls, start_google_stand_in
from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from storage import models as m
from storage.db import make_engine, make_session_factory
from storage.gmail import GmailAccountRepo
from storage.migrate import upgrade
from storage.uow import UnitOfWork
from tests.support.accounts import create_org, ensure_user

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "salesbot_bench_newsletter"
SECRET_KEY = "bench-secret-key-0123456789-abcdefghijklmnop"
START = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)

PLANNED = int(os.environ.get("BENCH_NEWSLETTER_PLANNED", "20000"))
PLAN_TARGET_SECONDS = 10.0
SENT = 2_000
CAPS = (200, 400, 600)
SPACING_SECONDS = 60
SHARE = 50
STEP = timedelta(minutes=5)

TEXT = (
    "Hi {{ first_name }},\n\n{{ headline }}\n\nTurn times across {{ state }} are down to"
    " five days, and {{ company_name }} can order from the portal any time.\n\n{{ firm_name }}\n"
)
HTML = (
    "<html><body><h1>{{ headline }}</h1><p>Hi {{ first_name }},</p><p>Turn times across"
    " {{ state }} are down to five days, and {{ company_name }} can order from"
    ' <a href="https://lonestar.example/portal">the portal</a> any time.</p>'
    "<p>{{ firm_name }}</p></body></html>"
)


def _database_url() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{DB_NAME}"


def _contacts(engine: Engine, org_id: int, count: int, slug: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(m.Contact.__table__),  # type: ignore[arg-type]
            [
                {
                    "org_id": org_id,
                    "email": f"lo{n}@lender{n % 97}.{slug}.example",
                    "first_name": f"Dana{n}",
                    "last_name": "Whitfield",
                    "state": "TX",
                    "tags": [],
                    "email_preferences": {},
                }
                for n in range(count)
            ],
        )


def _approved_issue(newsletters: Newsletters, org_id: int, senders: list[int], admin: int) -> int:
    newsletter = newsletters.create(
        None,
        org_id,
        NewsletterIn(
            name="Lender Update",
            sender_user_ids=senders,
            cap_share_percent=SHARE,
            slack_channel_id="C0NEWS",
        ),
    )
    issue = newsletters.create_issue(
        None,
        org_id,
        newsletter.id,
        IssueIn(
            title="December",
            subject_template="{{ newsletter_name }}: {{ headline }}",
            text_template=TEXT,
            html_template=HTML,
            variables={"headline": "Turn times are down to 5 days"},
        ),
    )
    submitted = newsletters.submit(None, org_id, newsletter.id, issue.id)
    newsletters.approve(
        Actor(org_id=org_id, user_id=admin, role=UserRole.ADMIN),
        issue.id,
        fingerprint=submitted.card_fingerprint,
    )
    return issue.id


def bench_planning(engine: Engine) -> None:
    """Plan an issue to PLANNED subscribers and print the seconds."""
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = create_org(session, slug="bench-plan", name="Lone Star Appraisals")
        senders = []
        for n in range(2):
            email = f"rep{n}@lonestar.example.com"
            user_id = ensure_user(
                session, org.id, email=email, name=f"Rep {n}", role=UserRole.ADMIN
            )
            session.add(
                m.GmailAccount(
                    org_id=org.id,
                    user_id=user_id,
                    email=email,
                    status="connected",
                    daily_send_cap=2_000,
                    min_send_interval_seconds=5,
                )
            )
            senders.append(user_id)
        session.commit()
        org_id = org.id
    _contacts(engine, org_id, PLANNED, "plan")
    clock = FixedClock(START)
    newsletters = Newsletters(
        Deps(uow=partial(UnitOfWork, sessions), clock=clock),
        new_message_id=partial(new_message_id, "bench.example"),
    )
    issue_id = _approved_issue(newsletters, org_id, senders, senders[0])
    started = time.perf_counter()
    planned = newsletters.plan_next()
    seconds = time.perf_counter() - started
    with sessions() as session:
        rows = session.scalar(
            select(func.count()).where(m.EmailSend.newsletter_issue_id == issue_id)
        )
        issue = session.get(m.NewsletterIssue, issue_id)
        assert issue is not None
        summary = (issue.card or {}).get("plan_line")
    if not planned or rows != PLANNED:
        raise RuntimeError(f"expected {PLANNED:,} rows planned, found {rows}")
    verdict = "PASS" if seconds < PLAN_TARGET_SECONDS else "FAIL"
    print(
        f"newsletter issue planned to {PLANNED:,} subscribers on PostgreSQL: {seconds:.2f} s,"
        f" {PLANNED / seconds:,.0f} emails/s (target < {PLAN_TARGET_SECONDS:.0f} s: {verdict})"
    )
    print(f"plan: {summary} (each email rendered in the sandbox, text and HTML)")


def _sending_org(engine: Engine, google: GoogleStandIn, box: SecretBox) -> tuple[int, list[int]]:
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = create_org(session, slug="bench-send", name="Lone Star Appraisals")
        senders = []
        for n, cap in enumerate(CAPS):
            email = f"sender{n}@lonestar.example.com"
            user_id = ensure_user(
                session, org.id, email=email, name=f"Sender {n}", role=UserRole.ADMIN
            )
            google.add_mailbox(email)
            tokens = google.oauth.issue_grant(email, scopes=GMAIL_SCOPES)
            assert tokens.refresh_token is not None
            GmailAccountRepo(session, box).save_connection(
                org.id,
                user_id=user_id,
                email=email,
                scopes=GMAIL_SCOPES,
                refresh_token=tokens.refresh_token,
                access_token=tokens.access_token,
                access_token_expires_at=datetime.now(UTC) + timedelta(seconds=tokens.expires_in),
                daily_send_cap=cap,
                min_send_interval_seconds=SPACING_SECONDS,
                now=START,
            )
            senders.append(user_id)
        session.commit()
        return org.id, senders


def _max_in_any_day(times: list[datetime]) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, at in enumerate(times):
        while at - times[left] >= timedelta(hours=24):
            left += 1
        best = max(best, right - left + 1)
    return best


def bench_sending(engine: Engine) -> None:
    """Send an issue to SENT subscribers over simulated days; print caps, spacing, dupes."""
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    google, server = start_google_stand_in()
    urls = GoogleUrls(server.url)
    box = SecretBox(SECRET_KEY)
    org_id, senders = _sending_org(engine, google, box)
    _contacts(engine, org_id, SENT, "send")
    sessions = make_session_factory(engine)
    clock = FixedClock(START)
    uow = partial(UnitOfWork, sessions, cipher=box)
    newsletters = Newsletters(
        Deps(uow=uow, clock=clock), new_message_id=partial(new_message_id, "bench.example")
    )
    issue_id = _approved_issue(newsletters, org_id, senders, senders[0])
    newsletters.plan_next()
    signer = LinkSigner(SECRET_KEY, purpose="unsubscribe")
    outbox = Outbox(
        uow=uow,
        sender=GmailSender(
            GoogleConfig(
                client_id=SANDBOX_CLIENT_ID,
                client_secret=SANDBOX_CLIENT_SECRET,
                token_uri=urls.token_uri,
                auth_uri=urls.auth_uri,
                gmail_api_url=urls.gmail_api_url,
            ),
            message_id_domain="bench.example",
        ),
        clock=clock,
        unsubscribe_url=lambda o, c, t=None: (
            "https://bench.example/unsubscribe/" + signer.sign({"o": o, "c": c})
        ),
        limits=SendLimits(),
    )
    started = time.perf_counter()
    steps = 0
    while True:
        outbox.drain(limit=50)
        newsletters.follow_sends()
        steps += 1
        with sessions() as session:
            status = session.scalar(
                select(m.NewsletterIssue.status).where(m.NewsletterIssue.id == issue_id)
            )
        if status == "sent" or steps > 60 * 24 * 30:
            break
        clock.advance(seconds=STEP.total_seconds())
    seconds = time.perf_counter() - started
    days = (clock.now() - START).total_seconds() / 86_400
    with sessions() as session:
        rows = session.execute(
            select(m.EmailSend.gmail_account_id, m.EmailSend.sent_at, m.EmailSend.contact_id).where(
                m.EmailSend.newsletter_issue_id == issue_id, m.EmailSend.status == "sent"
            )
        ).all()
        caps = dict(
            session.execute(
                select(m.GmailAccount.id, m.GmailAccount.daily_send_cap).where(
                    m.GmailAccount.org_id == org_id
                )
            ).all()
        )
    gmail_copies = Counter(str(s.message["To"]) for s in google.gmail.sent())
    duplicates = sum(n - 1 for n in gmail_copies.values() if n > 1)
    duplicates += sum(n - 1 for n in Counter(r[2] for r in rows).values() if n > 1)
    print(
        f"newsletter issue sent to {len(rows):,} of {SENT:,} subscribers over {days:.1f} simulated"
        f" days from {len(caps)} mailboxes ({steps:,} outbox rounds, clock {STEP} a round,"
        f" {seconds:.1f} s)"
    )
    for account_id, cap in sorted(caps.items()):
        times = sorted(r[1] for r in rows if r[0] == account_id and r[1] is not None)
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        share = cap * SHARE // 100
        print(
            f"mailbox {account_id}: {len(times):,} sent, most in any 24 h {_max_in_any_day(times)}"
            f" (cap {cap}, newsletter share {share}), least spacing {min(gaps):.0f} s"
            f" (minimum {SPACING_SECONDS} s)"
        )
    print(f"duplicate emails: {duplicates} (target 0: {'PASS' if duplicates == 0 else 'FAIL'})")
    server.stop()


def main() -> None:
    """Plan 20,000, then send 2,000 over simulated days; print the figures."""
    logging.getLogger("domain.newsletter_service").setLevel(logging.WARNING)
    url = _database_url()
    upgrade(url)
    engine = make_engine(url)
    try:
        bench_planning(engine)
        bench_sending(engine)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
