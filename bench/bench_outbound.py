"""Outbound: 5 replicas' worth of outbox workers race for one outbox on PostgreSQL.

Target (issue: Gmail outbound): every mailbox is kept at its configured pace (minimum
spacing, daily cap) with zero duplicate emails, while 5 replicas × 2 threads claim due
rows with SKIP LOCKED, Gmail answers some sends 429 and drops the answer of others after
accepting them (the reconciliation by `rfc822msgid:` must find those, never resend).

Everything real but Google: the Gmail API and OAuth stand-in on loopback, reached through
google-api-python-client. The database `salesbot_bench_outbound` is recreated each run.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections import Counter
from datetime import timedelta
from functools import partial

import psycopg
from sqlalchemy import Engine, func, select

from domain.clock import SystemClock
from domain.outbox import Outbox
from domain.sending import SendLimits
from integrations.crypto import LinkSigner, SecretBox
from integrations.gmail.client import GMAIL_SCOPES, GoogleConfig
from integrations.gmail.sender import GmailSender
from jobs.outbox import OutboxWorker
from sandbox.google import GoogleStandIn, GoogleUrls, start_google_stand_in
from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from storage import models as m
from storage.db import make_engine, make_session_factory
from storage.gmail import GmailAccountRepo
from storage.migrate import upgrade
from storage.outbox import OutboxRepo
from storage.uow import UnitOfWork
from tests.support.accounts import create_org, ensure_user

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "salesbot_bench_outbound"
SECRET_KEY = "bench-secret-key-0123456789-abcdefghijklmnop"

REPLICAS = 5
THREADS_PER_REPLICA = 2
MAILBOXES = 6
EMAILS_PER_MAILBOX = 30
INTERVAL_SECONDS = 1  # per mailbox: at most one email a second
CAPPED_MAILBOX_CAP = 20  # one mailbox has a small daily cap, to show it held
RATE_LIMITED_SENDS = 6  # answered 429 with Retry-After: 1
DROPPED_ANSWERS = 4  # accepted by Gmail, answer lost
DEADLINE_SECONDS = 120


def _database_url() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{DB_NAME}"


def _seed(engine: Engine, google: GoogleStandIn, box: SecretBox) -> tuple[int, list[str]]:
    """An org with one rep per mailbox (Gmail connected) and the queued emails, due now."""
    sessions = make_session_factory(engine)
    now = SystemClock().now()
    mailboxes = [f"rep{n}@lonestar.example.com" for n in range(MAILBOXES)]
    with sessions() as session:
        org = create_org(session, slug="bench", name="Bench Appraisals")
        accounts = []
        for n, email in enumerate(mailboxes):
            user_id = ensure_user(session, org.id, email=email, name=f"Rep {n}")
            google.add_mailbox(email)
            tokens = google.oauth.issue_grant(email, scopes=GMAIL_SCOPES)
            assert tokens.refresh_token is not None
            account = GmailAccountRepo(session, box).save_connection(
                org.id,
                user_id=user_id,
                email=email,
                scopes=GMAIL_SCOPES,
                refresh_token=tokens.refresh_token,
                access_token=tokens.access_token,
                access_token_expires_at=now + timedelta(seconds=tokens.expires_in),
                daily_send_cap=CAPPED_MAILBOX_CAP if n == 0 else 10_000,
                min_send_interval_seconds=INTERVAL_SECONDS,
                now=now,
            )
            accounts.append((account.id, user_id, email))
        contacts = []
        for n in range(EMAILS_PER_MAILBOX):
            contact = m.Contact(org_id=org.id, email=f"lo{n}@lender{n % 7}.example.com")
            session.add(contact)
            session.flush()
            contacts.append((contact.id, contact.email))
        outbox = OutboxRepo(session)
        for account_id, user_id, email in accounts:
            for contact_id, to in contacts:
                outbox.add(
                    org.id,
                    card_id=None,
                    message_id=f"<bench-{account_id}-{contact_id}.salesbot@bench.example>",
                    not_before=now,
                    gmail_account_id=account_id,
                    sender_user_id=user_id,
                    contact_id=contact_id,
                    from_email=email,
                    to_email=to,
                    subject=f"Turn times for {to}",
                    body_text="Hi,\n\nOur turn times are down to 5 days.\n",
                )
        session.commit()
    return org.id, mailboxes


def _pending(engine: Engine) -> int:
    """Rows still to go now: queued and due within the hour, or being sent."""
    horizon = SystemClock().now() + timedelta(hours=1)
    with make_session_factory(engine)() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    (m.EmailSend.status == "sending")
                    | ((m.EmailSend.status == "queued") & (m.EmailSend.not_before < horizon))
                )
            )
            or 0
        )


def main() -> None:
    """Race the replicas for the outbox and print pace, cap and duplicate figures."""
    # The injected failures log a warning each, and the stand-in an error per dropped
    # answer; the figures below count them.
    logging.getLogger("domain.outbox").setLevel(logging.ERROR)
    logging.getLogger("integrations.gmail").setLevel(logging.ERROR)
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    url = _database_url()
    upgrade(url)
    google, server = start_google_stand_in()
    urls = GoogleUrls(server.url)
    box = SecretBox(SECRET_KEY)
    seed_engine = make_engine(url)
    try:
        org_id, mailboxes = _seed(seed_engine, google, box)
        total = MAILBOXES * EMAILS_PER_MAILBOX
        config = GoogleConfig(
            client_id=SANDBOX_CLIENT_ID,
            client_secret=SANDBOX_CLIENT_SECRET,
            token_uri=urls.token_uri,
            auth_uri=urls.auth_uri,
            gmail_api_url=urls.gmail_api_url,
        )
        signer = LinkSigner(SECRET_KEY, purpose="unsubscribe")
        limits = SendLimits(lease=timedelta(seconds=30), confirm_after=timedelta(seconds=2))
        engines, workers = [], []
        for n in range(REPLICAS):
            engine = make_engine(url, pool_size=THREADS_PER_REPLICA + 1)
            engines.append(engine)
            outbox = Outbox(
                uow=partial(UnitOfWork, make_session_factory(engine), cipher=box),
                sender=GmailSender(config, message_id_domain="bench.example"),
                clock=SystemClock(),
                unsubscribe_url=lambda o, c: (
                    "https://bench.example/unsubscribe/" + signer.sign({"o": o, "c": c})
                ),
                limits=limits,
                name=f"replica-{n}",
            )
            workers.append(
                OutboxWorker(
                    outbox,
                    clock=SystemClock(),
                    threads=THREADS_PER_REPLICA,
                    batch=5,
                    poll_seconds=0.5,
                )
            )
        for _ in range(RATE_LIMITED_SENDS):
            google.gmail.fail_next("messages.send", 429, "rateLimitExceeded", retry_after=1)
        print(
            f"{total} emails queued in {MAILBOXES} mailboxes ({EMAILS_PER_MAILBOX} each), "
            f"spacing {INTERVAL_SECONDS} s per mailbox, daily cap "
            f"{CAPPED_MAILBOX_CAP} on {mailboxes[0]}; {REPLICAS} replicas × "
            f"{THREADS_PER_REPLICA} threads; {RATE_LIMITED_SENDS} sends answered 429 "
            f"(Retry-After 1 s), {DROPPED_ANSWERS} answers dropped after Gmail accepted",
            flush=True,
        )
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        dropped = 0
        while time.perf_counter() - started < DEADLINE_SECONDS:
            time.sleep(0.2)
            sent_so_far = len(google.gmail.sent())
            if dropped < DROPPED_ANSWERS and sent_so_far >= 30 * (dropped + 1):
                google.gmail.accept_but_drop_connection_next_send()
                dropped += 1
            if _pending(seed_engine) == 0:
                break
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.stop()
        _report(seed_engine, google, mailboxes, total, elapsed)
    finally:
        server.stop()
        seed_engine.dispose()
        for engine in engines:
            engine.dispose()


def _report(
    engine: Engine, google: GoogleStandIn, mailboxes: list[str], total: int, elapsed: float
) -> None:
    sent = google.gmail.sent()
    ids = Counter(s.message["Message-ID"] for s in sent)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    calls = Counter((c.route, c.status) for c in google.gmail.calls)
    with make_session_factory(engine)() as session:
        statuses = Counter(
            session.execute(select(m.EmailSend.status, func.count()).group_by(m.EmailSend.status))
            .tuples()
            .all()
        )
        by_status = {str(k): int(v) for k, v in dict(statuses).items()}
        held = session.scalars(
            select(m.EmailSend.error).where(m.EmailSend.status == "queued").limit(1)
        ).first()
        reconciled = session.scalar(
            select(func.count()).where(m.EmailSend.status == "sent", m.EmailSend.attempt_count == 1)
        )
    print(f"elapsed: {elapsed:.1f} s; outbox rows by status: {dict(sorted(by_status.items()))}")
    print(
        f"Gmail messages.send calls: {calls[('messages.send', 200)]} answered 200, "
        f"{calls[('messages.send', 429)]} answered 429, "
        f"{calls[('messages.send', None)]} answers dropped; "
        f"rfc822msgid searches: {calls[('messages.list', 200)]}"
    )
    print(
        f"emails in Gmail: {len(sent)} (distinct Message-IDs {len(ids)}); duplicates: {duplicates}"
    )
    print(f"rows sent at the first attempt: {reconciled}")
    with make_session_factory(engine)() as session:
        slots = {
            mid.strip("<>"): at
            for mid, at in session.execute(
                select(m.EmailSend.message_id, m.EmailSend.sent_at).where(
                    m.EmailSend.status == "sent"
                )
            ).tuples()
        }
    smallest_gap = float("inf")
    latencies: list[float] = []
    for index, mailbox in enumerate(mailboxes):
        arrived = sorted(
            (msg.internal_date_ms / 1000, msg.message_id_header or "")
            for msg in google.gmail.messages(mailbox)
            if "SENT" in msg.label_ids
        )
        times = [t for t, _ in arrived]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        smallest_gap = min(smallest_gap, *gaps)
        latencies += [t - slots[mid].timestamp() for t, mid in arrived if mid in slots]
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        cap = f" (daily cap {CAPPED_MAILBOX_CAP})" if index == 0 else ""
        print(
            f"  {mailbox}{cap}: {len(times)} sent, {rate:.2f}/s at Gmail; gaps between"
            f" arrivals min {min(gaps):.3f} s, median {statistics.median(gaps):.3f} s"
        )
    latencies.sort()
    print(
        f"claim → accepted by Gmail: median {statistics.median(latencies) * 1000:.0f} ms,"
        f" p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms (a mailbox sends one"
        f" email at a time; the next starts {INTERVAL_SECONDS} s after the previous ended)"
    )
    print(f"held by the cap, e.g.: {held}")
    expected = total - (EMAILS_PER_MAILBOX - CAPPED_MAILBOX_CAP)
    spaced = smallest_gap >= INTERVAL_SECONDS
    verdict = "OK" if duplicates == 0 and len(sent) == expected and spaced else "FAIL"
    print(
        f"{verdict}: {len(sent)} of {expected} sendable emails sent exactly once,"
        f" {EMAILS_PER_MAILBOX - CAPPED_MAILBOX_CAP} held by the cap, smallest gap between two"
        f" emails of one mailbox at Gmail {smallest_gap:.3f} s (spacing {INTERVAL_SECONDS} s),"
        f" {duplicates} duplicates"
    )
