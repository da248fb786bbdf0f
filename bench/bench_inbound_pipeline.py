"""The inbound path after the fetch, without a model service (`python -m bench inbound_pipeline`).

parse (`parse_raw`) → detectors → store (`SqlInboundStore.record_messages` + `save_parsed`,
as the sync does) → the pipeline (`Understanding.run_once`: claim, rules, offline
classification, linking, engagement, actions, record) on PostgreSQL (127.0.0.1:5432, a throwaway
database). The messages are the corpus (bounces, auto-replies, replies) and the labelled
replies, each sent as a reply to one of our campaign emails, so linking, the send marked
replied, conversations, opt-outs, bounces and enrollment changes all happen. Prints
messages/s for the whole path and for its parts; the target is 300 messages/s on 2 cores.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from multiprocessing import Queue
from pathlib import Path

import psycopg

from bot.app import build_understanding
from domain.clock import SystemClock
from domain.deps import Deps
from domain.detection import DetectionContext
from domain.inbound import MessageToFetch, NewMessage, ReadMessage
from domain.rules import Rules
from domain.understanding import Understanding
from integrations.gmail.mime import parse_raw
from integrations.mail_signals import detect_message
from integrations.offline_classifier import OfflineClassifier, load_offline_model
from integrations.regex_re2 import Re2Engine
from storage import models as m
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.inbound import SqlInboundStore
from storage.migrate import upgrade
from storage.uow import UnitOfWork
from tests.support.detector_corpus import autoreply_mails, bounce_mails, reply_mails

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DATABASE = "salesbot_bench_pipeline"
MESSAGES = int(os.environ.get("BENCH_PIPELINE_MESSAGES", "3000"))
REP = "rep@bench-appraisals.example"
LABELLED = Path(__file__).resolve().parents[1] / "integrations/offline_data/labelled_replies.jsonl"
TARGET_PER_SECOND = 300.0
SAVE_BATCH = 50  # as the sync commits parsed messages


def database_url() -> str:
    """Create the benchmark database afresh; return its URL, migrated to head."""
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE}"
    upgrade(url)
    return url


def _reply(n: int, subject: str, body: str, message_id: str) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = f"lo{n}@lender{n % 40}.example"
    message["To"] = REP
    message["Subject"] = f"Re: {subject}"[:200]
    message["Date"] = "Tue, 01 Dec 2026 10:15:00 -0000"
    message["Message-ID"] = f"<reply-{n}@lender{n % 40}.example>"
    message["In-Reply-To"] = message_id
    message.set_content(body, cte="8bit")
    return message.as_bytes()


def corpus() -> list[bytes]:
    """The corpus messages as they are, and the labelled replies as replies to our sends."""
    raws = [mail.raw for mail in (*bounce_mails(), *autoreply_mails(), *reply_mails())]
    with LABELLED.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    labelled = [
        _reply(n, row["subject"], row["body"], f"<send-{n}@bench-appraisals.example>")
        for n, row in enumerate(rows)
    ]
    return raws + labelled


def seed(url: str, count: int) -> int:
    """An org, its rep's mailbox, a campaign running for `count` contacts, one send each."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    with sessions() as session:
        org = m.Organization(slug="bench-pipeline", name="Bench Pipeline")
        session.add(org)
        session.flush()
        account = m.GmailAccount(org_id=org.id, email=REP, status="connected")
        session.add(account)
        campaign = m.MarketingCampaign(
            org_id=org.id, name="Win-back", goal="reactivation", status="active"
        )
        session.add(campaign)
        session.flush()
        job = m.Job(org_id=org.id, campaign_id=campaign.id, name="Win-back", status="running")
        session.add(job)
        clients = [
            m.Client(org_id=org.id, name=f"Lender {n}", domain=f"lender{n}.example")
            for n in range(40)
        ]
        session.add_all(clients)
        session.flush()
        contacts = [
            m.Contact(
                org_id=org.id, client_id=clients[n % 40].id, email=f"lo{n}@lender{n % 40}.example"
            )
            for n in range(count)
        ]
        session.add_all(contacts)
        session.flush()
        enrollments = [
            m.Enrollment(org_id=org.id, job_id=job.id, contact_id=c.id, status="active")
            for c in contacts
        ]
        session.add_all(enrollments)
        session.flush()
        session.add_all(
            m.EmailSend(
                org_id=org.id,
                job_id=job.id,
                campaign_id=campaign.id,
                enrollment_id=e.id,
                contact_id=c.id,
                message_id=f"<send-{n}@bench-appraisals.example>",
                gmail_thread_id=f"thread-{n}",
                to_email=c.email,
                subject="Turn times",
                status="sent",
                sent_at=now - timedelta(days=3),
            )
            for n, (c, e) in enumerate(zip(contacts, enrollments, strict=True))
        )
        session.commit()
        account_id = account.id
    engine.dispose()
    return account_id


def _understanding(sessions: SessionFactory) -> Understanding:
    """The pipeline as the worker builds it: rules, and the offline model for both roles."""

    def uow() -> UnitOfWork:
        return UnitOfWork(sessions)

    offline = OfflineClassifier()
    return build_understanding(
        uow,
        SystemClock(),
        work_lease=timedelta(minutes=5),
        classifiers=(offline, offline),
        rules=Rules(Deps(uow=uow, clock=SystemClock()), regex=Re2Engine()),
    )


def _parse_and_store(
    store: SqlInboundStore, account_id: int, raws: list[bytes], context: DetectionContext
) -> float:
    """Store the ids, parse, detect and store the messages as the sync does; return parse s."""
    now = datetime.now(UTC)
    recorded = store.record_messages(
        account_id,
        [NewMessage(gmail_id=f"g{n:06d}") for n in range(len(raws))],
        history_id=1,
        synced_at=now,
        lease_until=now + timedelta(minutes=10),
    )
    parse_seconds = 0.0
    batch: list[ReadMessage] = []
    for message, raw in zip(recorded.to_fetch, raws, strict=True):
        t = time.perf_counter()
        parsed = parse_raw(raw)
        detection = detect_message(raw, context=context, parsed=parsed)
        parse_seconds += time.perf_counter() - t
        batch.append(
            ReadMessage(
                MessageToFetch(message.row_id, account_id, message.gmail_id), parsed, detection
            )
        )
        if len(batch) == SAVE_BATCH:
            store.save_parsed(batch)
            batch = []
    store.save_parsed(batch)
    return parse_seconds


def _drain(url: str, expected: int, events: Queue[float | str]) -> None:
    """Run the pipeline in this process until `expected` messages are done (a worker)."""
    engine = make_engine(url)
    understanding = _understanding(make_session_factory(engine))
    load_offline_model()
    events.put("ready")
    done = 0
    while done < expected:
        outcome = understanding.run_once()
        done += outcome.processed + outcome.failed
        if not outcome.claimed:
            time.sleep(0.002)
    events.put(time.time())
    engine.dispose()


def concurrent_path(raws: list[bytes]) -> float:
    """Parse and store in this process while a worker process runs the pipeline, as deployed.

    The sync parses in its own process(es) and the pipeline runs in the worker: on 2 cores
    the two stages overlap. Returns messages/s from the first parse to the last record.
    """
    url = database_url()
    account_id = seed(url, len(raws))
    engine = make_engine(url)
    store = SqlInboundStore(make_session_factory(engine))
    context = DetectionContext(rep_addresses=frozenset({REP}))
    events: Queue[float | str] = multiprocessing.get_context("spawn").Queue()
    worker = multiprocessing.get_context("spawn").Process(
        target=_drain, args=(url, len(raws), events)
    )
    worker.start()
    try:
        events.get(timeout=120)  # the worker has trained its model and is polling
        started = time.time()
        _parse_and_store(store, account_id, raws, context)
        finished = float(events.get(timeout=600))
    finally:
        worker.join(timeout=60)
        engine.dispose()
    return len(raws) / (finished - started)


def main() -> None:
    """Run the whole path on MESSAGES messages and print the figures."""
    url = database_url()
    base = corpus()
    raws = [base[n % len(base)] for n in range(MESSAGES)]
    account_id = seed(url, MESSAGES)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    store = SqlInboundStore(sessions)

    understanding = _understanding(sessions)
    load_offline_model()  # trained once per process, before the clock starts
    context = DetectionContext(rep_addresses=frozenset({REP}))

    started = time.perf_counter()
    parse_seconds = _parse_and_store(store, account_id, raws, context)
    stored = time.perf_counter()
    processed = failed = 0
    while True:
        outcome = understanding.run_once()
        if not outcome.claimed:
            break
        processed += outcome.processed
        failed += outcome.failed
    finished = time.perf_counter()

    with sessions() as session:
        from sqlalchemy import func, select

        statuses = dict(
            (s, n)
            for s, n in session.execute(
                select(m.InboundEmail.status, func.count()).group_by(m.InboundEmail.status)
            ).tuples()
        )
        replied = session.scalar(
            select(func.count()).select_from(m.EmailSend).where(m.EmailSend.replied_at.is_not(None))
        )
        stopped = session.scalar(
            select(func.count()).select_from(m.Enrollment).where(m.Enrollment.status != "active")
        )
        scored = session.scalar(select(func.count()).select_from(m.ContactEngagementEvent))
    engine.dispose()
    total = finished - started
    n = len(raws)
    print(f"messages: {n} ({len(base)} distinct: corpus and labelled replies), PostgreSQL, 2 cores")
    print(f"parse + detectors: {parse_seconds:.2f} s ({n / parse_seconds:.0f} msg/s)")
    print(
        f"parse + detectors + store: {stored - started:.2f} s ({n / (stored - started):.0f} msg/s)"
    )
    print(
        "pipeline (claim, rules, offline model, link, engagement, act, record): "
        f"{finished - stored:.2f} s "
        f"({n / (finished - stored):.0f} msg/s)"
    )
    print(
        f"whole inbound path after the fetch: {total:.2f} s = {n / total:.0f} messages/s "
        f"(target >= {TARGET_PER_SECOND:.0f})"
    )
    print(
        f"outcome: {statuses}, processed {processed}, failed {failed}; "
        f"sends marked replied {replied}, enrollments stopped or paused {stopped}, "
        f"engagement events {scored}"
    )
    rate = concurrent_path(raws)
    print(
        "whole path with parse+store and the pipeline in two processes (as deployed: the "
        f"sync's parser and the worker): {rate:.0f} messages/s (target >= {TARGET_PER_SECOND:.0f})"
    )


if __name__ == "__main__":
    main()
