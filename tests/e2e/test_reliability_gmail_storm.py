"""A storm of Gmail errors over a queue of emails: 429s asking to slow down, 503s and 500s
refusing sends, 500s and broken answers after Gmail took the email. The outbox waits and
resumes; every email goes exactly once, none is dropped, none is left queued or sending.

The emails are queued in the outbox (as approved cards and cadence steps leave them) and
sent by the real Gmail client through the Gmail stand-in, on SQLite and PostgreSQL. The
clock is a FixedClock moved 30 s between the outbox's rounds. The figures are printed
(`pytest -s`); `python -m bench reliability_gmail_storm` runs 1,000 sends through a longer
storm.
"""

from __future__ import annotations

from collections import Counter

import pytest

from domain.clock import FixedClock
from storage.outbox import OutboxRepo
from tests.integration.test_gmail_send import world
from tests.support.gmail_app import DANA, GmailWorld

__all__ = ["world"]

pytestmark = pytest.mark.slow

EMAILS = 40
ROUND_SECONDS = 30
MAX_ROUNDS = 480  # four simulated hours


def queue_emails(world: GmailWorld, clock: FixedClock, count: int, tag: str) -> list[str]:
    """Queue `count` emails to Dana from the rep's mailbox; return their Message-IDs."""
    ids = [f"<{tag}-{n}.salesbot@testserver>" for n in range(count)]
    with world.session_factory() as session:
        outbox = OutboxRepo(session)
        for n, message_id in enumerate(ids):
            outbox.add(
                world.org_id,
                card_id=None,
                message_id=message_id,
                not_before=clock.now(),
                gmail_account_id=world.account().id,
                sender_user_id=world.rep_id,
                contact_id=world.contact_ids[DANA],
                to_email=DANA,
                subject=f"Turn times {n}",
                body_text="Hi Dana, our turn times are down.",
            )
        session.commit()
    return ids


def test_a_storm_of_429s_and_5xx_delays_sends_but_drops_and_repeats_none(
    world: GmailWorld, clock: FixedClock, db_kind: str
) -> None:
    world.set_throttle(cap=1000, interval=0)
    gmail = world.google.gmail
    ids = queue_emails(world, clock, EMAILS, "storm")
    gmail.fail_next("messages.send", 429, "rateLimitExceeded", times=12, retry_after=60)
    gmail.fail_next("messages.send", 503, "backendError", times=8)
    gmail.fail_next("messages.send", 500, "backendError", times=4)
    for response in ("error_500", "broken", "error_500"):
        gmail.accept_but_drop_connection_next_send(response=response)

    rounds = 0
    while rounds < MAX_ROUNDS:
        world.drain()
        statuses = Counter(row.status for row in world.sends())
        if statuses == Counter({"sent": EMAILS}):
            break
        clock.advance(seconds=ROUND_SECONDS)
        rounds += 1

    sent = Counter(str(s.message["Message-ID"]) for s in world.sent())
    calls = Counter(c.status for c in gmail.calls if c.route == "messages.send")
    searches = sum(1 for c in gmail.calls if c.route == "messages.list")
    print(
        f"\nGmail storm ({db_kind}): {EMAILS} emails through {calls[429]} 429s,"
        f" {calls[503]} 503s, {calls[500]} 500s and 3 answers lost after Gmail took the email:"
        f" {sum(sent.values())} sent, {sum(n - 1 for n in sent.values())} duplicates,"
        f" {EMAILS - len(sent)} dropped; {searches} rfc822msgid look-ups;"
        f" drained {rounds * ROUND_SECONDS // 60} simulated min after the storm began"
    )
    assert sent == Counter(dict.fromkeys(ids, 1))
    assert Counter(row.status for row in world.sends()) == Counter({"sent": EMAILS})
    assert calls[429] == 12
    assert calls[503] == 8
    assert rounds < MAX_ROUNDS
