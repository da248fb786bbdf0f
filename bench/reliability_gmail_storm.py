"""1,000 emails through storms of Gmail 429s and 5xx: none dropped, none sent twice.

`python -m bench reliability_gmail_storm`, or `.venv/bin/python bench/reliability_gmail_storm.py`.
Issue 15's figure for scenario (e): Gmail rate-limits (429 with Retry-After, as a burst does),
fails (503, 500 before taking the email) and loses answers after taking the email (500 and a
broken answer): the outbox waits and resumes, and reconciles the uncertain ones through
`rfc822msgid:`, so every email goes exactly once.

The outbox of the app runs as composed (the real Gmail client, the Gmail stand-in on
loopback) on PostgreSQL, database `salesbot_bench_reliability` recreated each run. The
1,000 emails (BENCH_STORM_EMAILS) are queued at once; a FixedClock moves 30 s between the
outbox's rounds, and a storm breaks every 5 simulated minutes, 10 storms in all, each
lasting 2 minutes (4 rounds): before each of its rounds Gmail is set to answer the next send
429 (Retry-After 60 s, which pauses the mailbox), the next 5 sends 503, 3 sends 500, and to
lose the answer of one send it took. Printed: emails sent, duplicates, dropped, left queued or
sending, the errors Gmail answered, look-ups, simulated minutes and real seconds to drain.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from domain.clock import FixedClock  # noqa: E402
from storage import models as m  # noqa: E402
from storage.db import make_engine, make_session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.outbox import OutboxRepo  # noqa: E402
from tests.support.gmail_app import DANA, connected_gmail_world  # noqa: E402
from tests.support.google import running_google_stand_in  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "salesbot_bench_reliability"
EMAILS = int(os.environ.get("BENCH_STORM_EMAILS", "1000"))
STORMS = 10
STORM_EVERY_ROUNDS = 10  # 5 simulated minutes
STORM_ROUNDS = 4  # 2 simulated minutes
ROUND_SECONDS = 30
# What Gmail answers before each round of a storm: the next send, the 5 after it, ...
RATE_LIMITED, UNAVAILABLE, SERVER_ERRORS, LOST_ANSWERS = 1, 5, 3, 1
MAX_ROUNDS = 2_000


def _database_url() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{DB_NAME}"


def main() -> None:
    """Drain 1,000 queued emails through 10 storms; print the figures."""
    for name in ("domain.outbox", "integrations.gmail", "uvicorn.error", "jobs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    url = _database_url()
    upgrade(url)
    engine = make_engine(url)
    clock = FixedClock(datetime(2026, 11, 30, 16, 0, tzinfo=UTC))
    try:
        with (
            running_google_stand_in() as google,
            connected_gmail_world(engine, make_session_factory(engine), clock, google) as world,
        ):
            world.set_throttle(cap=EMAILS * 2, interval=0)
            with world.session_factory() as session:
                outbox = OutboxRepo(session)
                for n in range(EMAILS):
                    outbox.add(
                        world.org_id,
                        card_id=None,
                        message_id=f"<storm-{n}.salesbot@bench.example>",
                        not_before=clock.now(),
                        gmail_account_id=world.account().id,
                        sender_user_id=world.rep_id,
                        contact_id=world.contact_ids[DANA],
                        to_email=DANA,
                        subject=f"Turn times {n}",
                        body_text="Hi Dana, our turn times are down.",
                    )
                session.commit()
            gmail = world.google.gmail
            print(
                f"{EMAILS} emails queued in one mailbox; {STORMS} storms of"
                f" {STORM_ROUNDS * ROUND_SECONDS // 60} simulated min, one every"
                f" {STORM_EVERY_ROUNDS * ROUND_SECONDS / 60:.0f} min; in each round of a storm"
                f" {RATE_LIMITED} × 429 (Retry-After 60 s), {UNAVAILABLE} × 503,"
                f" {SERVER_ERRORS} × 500, {LOST_ANSWERS} answer lost after Gmail took the email",
                flush=True,
            )
            started = time.perf_counter()
            rounds = storms = 0
            pending = EMAILS
            while rounds < MAX_ROUNDS:
                storming = storms < STORMS * STORM_ROUNDS and (
                    rounds % STORM_EVERY_ROUNDS < STORM_ROUNDS
                )
                if storming:
                    gmail.fail_next(
                        "messages.send",
                        429,
                        "rateLimitExceeded",
                        times=RATE_LIMITED,
                        retry_after=60,
                    )
                    gmail.fail_next("messages.send", 503, "backendError", times=UNAVAILABLE)
                    gmail.fail_next("messages.send", 500, "backendError", times=SERVER_ERRORS)
                    for n in range(LOST_ANSWERS):
                        gmail.accept_but_drop_connection_next_send(
                            response="error_500" if n % 2 else "broken"
                        )
                    storms += 1
                world.drain()
                with world.session_factory() as session:
                    pending = int(
                        session.scalar(
                            select(func.count())
                            .select_from(m.EmailSend)
                            .where(m.EmailSend.status.in_(["queued", "sending"]))
                        )
                        or 0
                    )
                if not pending and storms == STORMS * STORM_ROUNDS:
                    break
                clock.advance(seconds=ROUND_SECONDS)
                rounds += 1
            elapsed = time.perf_counter() - started
            sent = Counter(str(s.message["Message-ID"]) for s in world.sent())
            calls = Counter(c.status for c in gmail.calls if c.route == "messages.send")
            searches = sum(1 for c in gmail.calls if c.route == "messages.list")
            with world.session_factory() as session:
                statuses = Counter(session.scalars(select(m.EmailSend.status)))
    finally:
        engine.dispose()
    wanted = {f"<storm-{n}.salesbot@bench.example>" for n in range(EMAILS)}
    print(
        f"Gmail answered {calls[429]} × 429, {calls[503]} × 503, {calls[500]} × 500"
        f" ({STORMS * STORM_ROUNDS * LOST_ANSWERS} of them 500s or broken answers after"
        " Gmail took the email),"
        f" {calls[200]} × 200; {searches} rfc822msgid look-ups"
    )
    print(
        f"emails: {len(wanted & set(sent))} of {EMAILS} sent,"
        f" {sum(n - 1 for n in sent.values())} duplicates,"
        f" {len(wanted - set(sent))} dropped, {pending} left queued or sending;"
        f" outbox rows {dict(statuses)}"
    )
    print(
        f"drained {rounds * ROUND_SECONDS / 60:.0f} simulated min after the first storm"
        f" ({rounds} outbox rounds), {elapsed:.1f} s of real time"
    )


if __name__ == "__main__":
    main()
