"""Real `salesbot worker` processes planning a newsletter issue, killed as by `kill -9` right
after taking the planning lease and again after two batches were committed: the issue is
still planned once, one email per subscriber, by the worker that takes it over when the
lease runs out, carrying on from the last committed batch. And a worker killed once it
stored a cancelled issue's final figures, before updating the card: the next worker updates
the card once, and no more.

The processes read the time from a file (`SALESBOT_CLOCK_FILE`) only the test moves, so a
lease (3 s of that clock) runs out when the test says so. Each round arms one fault point
(`SALESBOT_FAULT_POINTS`): the process ends itself there with exit code 137, as after
`kill -9`, before any `finally` runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine, func, select

from domain.clock import FixedClock
from domain.deps import Deps
from domain.newsletter_service import Newsletters
from domain.newsletters import AWAITING_FINAL, IssueIn, NewsletterIn
from domain.outreach import Actor
from handlers.slack.newsletters import SlackNewsletterChat
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL_ID
from storage import models as m
from storage.db import SessionFactory, make_session_factory
from storage.uow import UnitOfWork
from tests.e2e.test_crash_recovery import forks
from tests.e2e.test_newsletters import card_text
from tests.support.accounts import create_org, ensure_user
from tests.support.forkserver import ForkServer
from tests.support.gmail_app import google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import wait_until
from tests.support.workers import Workers, worker_env

pytestmark = pytest.mark.slow

__all__ = ["forks"]  # the crash tests' fork server

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
LEASE_SECONDS = 3
SUBSCRIBERS = 25
BATCH = 5


def _lone_star(
    sessions: SessionFactory, subscribers: int, *, next_send_at: datetime | None = None
) -> tuple[int, int]:
    """Lone Star Appraisals, its rep Maria with a connected mailbox (next send at
    `next_send_at`), and `subscribers` contacts; return the org id and Maria's id."""
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        maria = ensure_user(session, org.id, email="maria@lonestar.example", name="Maria Lopez")
        session.add(
            m.GmailAccount(
                org_id=org.id,
                user_id=maria,
                email="maria@lonestar.example",
                status="connected",
                daily_send_cap=400,
                min_send_interval_seconds=5,
                next_send_at=next_send_at,
            )
        )
        for n in range(subscribers):
            session.add(
                m.Contact(org_id=org.id, email=f"lo{n}@pinnacle.example", first_name=f"Dana{n}")
            )
        session.commit()
        return org.id, maria


def _seed(engine: Engine) -> int:
    """An approved issue of a newsletter to 25 subscribers, from one connected mailbox whose
    next send is a month away (the outbox leaves the planned rows queued)."""
    sessions = make_session_factory(engine)
    org_id, maria = _lone_star(sessions, SUBSCRIBERS, next_send_at=NOW + timedelta(days=40))
    counter = iter(range(1, 10**6))
    newsletters = Newsletters(
        Deps(uow=lambda: UnitOfWork(sessions), clock=FixedClock(NOW)),
        new_message_id=lambda: f"<seed-{next(counter)}@lonestar.example>",
    )
    newsletter = newsletters.create(
        None,
        org_id,
        NewsletterIn(name="Lender Update", sender_user_ids=[maria], slack_channel_id="C0NEWS"),
    )
    issue = newsletters.create_issue(
        None,
        org_id,
        newsletter.id,
        IssueIn(title="December", subject_template="News", text_template="Hi {{ first_name }}"),
    )
    submitted = newsletters.submit(None, org_id, newsletter.id, issue.id)
    newsletters.approve(
        Actor(org_id=org_id, user_id=maria, role="admin"),
        issue.id,
        fingerprint=submitted.card_fingerprint,
    )
    return issue.id


@pytest.fixture
def workers(
    committed_engine: Engine,
    served_slack: ServedSlack,
    forks: ForkServer,
    google: GoogleServer,
    tmp_path: Path,
) -> Iterator[Workers]:
    env = worker_env(
        committed_engine,
        served_slack,
        tmp_path,
        lease_seconds=LEASE_SECONDS,
        NEWSLETTER_PLAN_BATCH=str(BATCH),
        **{k: str(v) for k, v in google_settings(google).items()},
    )
    with Workers(forks, env, tmp_path) as running:
        yield running


# PostgreSQL only: process starts cost seconds; the planning's cursor and the unique index
# are tested on both databases (tests/integration/test_newsletters_storage.py).
@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_planner_killed_after_its_claim_and_after_two_batches_plans_each_subscriber_once(
    committed_engine: Engine, workers: Workers, tmp_path: Path
) -> None:
    issue_id = _seed(committed_engine)
    clock_file = tmp_path / "now.txt"
    clock_file.write_text(NOW.isoformat())
    sessions = make_session_factory(committed_engine)

    def issue() -> m.NewsletterIssue:
        with sessions() as session:
            row = session.get(m.NewsletterIssue, issue_id)
            assert row is not None
            return row

    def rows() -> list[tuple[int | None, int]]:
        with sessions() as session:
            return [
                (contact, int(n))
                for contact, n in session.execute(
                    select(m.EmailSend.contact_id, func.count())
                    .where(m.EmailSend.newsletter_issue_id == issue_id)
                    .group_by(m.EmailSend.contact_id)
                )
            ]

    # 1. Killed right after taking the lease: nothing planned.
    workers.wait_killed(workers.start("newsletter.claimed"), "newsletter.claimed")
    taken = issue()
    assert taken.plan_lease_until is not None
    assert (taken.planned_count, taken.plan_cursor, taken.planned_at) == (0, 0, None)
    assert rows() == []

    # 2. Another worker leaves the issue alone while the lease runs, then takes it over and
    #    is killed after its second batch committed.
    second = workers.start("newsletter.chunk@2")
    time.sleep(2.0)
    assert workers.running(second)
    assert rows() == []
    clock_file.write_text((NOW + timedelta(seconds=LEASE_SECONDS + 1)).isoformat())
    workers.wait_killed(second, "newsletter.chunk@2")
    half = issue()
    assert (half.planned_count, half.planned_at) == (2 * BATCH, None)
    assert len(rows()) == 2 * BATCH

    # 3. A third worker, once that lease ran out, carries on after the last batch.
    clock_file.write_text((NOW + timedelta(seconds=3 * LEASE_SECONDS + 3)).isoformat())
    last = workers.start()
    wait_until(lambda: issue().planned_at is not None, timeout=60, what="planned")
    workers.stop_all()

    done = issue()
    planned = rows()
    assert (done.status, done.planned_count) == ("scheduled", SUBSCRIBERS)
    assert len(planned) == SUBSCRIBERS
    assert {n for _, n in planned} == {1}
    assert last in workers.pids
    with sessions() as session:
        times = sorted(
            t
            for t in session.scalars(
                select(m.EmailSend.not_before).where(m.EmailSend.newsletter_issue_id == issue_id)
            )
            if t is not None and t < NOW + timedelta(days=1)
        )
    # One plan for the whole issue (fixed at the first batch): evenly spaced, 432 s apart
    # (the outbox moved the first, due at once, to the mailbox's next send a month away).
    assert len(times) == SUBSCRIBERS - 1
    assert {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)} == {432.0}


def _cancelled_while_one_email_was_on_its_way(
    engine: Engine, slack: ServedSlack
) -> tuple[int, str]:
    """An issue to 3 subscribers, its card posted in the Slack stand-in, cancelled while the
    outbox had claimed its first email, which went out after the cancel (the outbox's own
    claim and record, driven here); return the issue id and its card's ts."""
    sessions = make_session_factory(engine)
    org_id, maria = _lone_star(sessions, 3)
    counter = iter(range(1, 10**6))
    chat = SlackNewsletterChat(
        lambda _org: WebClient(base_url=slack.api_url, token=DEFAULT_BOT_TOKEN)
    )
    newsletters = Newsletters(
        Deps(uow=lambda: UnitOfWork(sessions), clock=FixedClock(NOW)),
        chat=chat,
        new_message_id=lambda: f"<seed-{next(counter)}@lonestar.example>",
    )
    admin = Actor(org_id=org_id, user_id=maria, role="admin", slack_user_id="U0MARIA")
    newsletter = newsletters.create(
        admin,
        org_id,
        NewsletterIn(
            name="Lender Update", sender_user_ids=[maria], slack_channel_id=DEFAULT_CHANNEL_ID
        ),
    )
    issue = newsletters.create_issue(
        admin,
        org_id,
        newsletter.id,
        IssueIn(title="December", subject_template="News", text_template="Hi {{ first_name }}"),
    )
    submitted = newsletters.submit(admin, org_id, newsletter.id, issue.id)
    assert newsletters.post_cards() == 1
    newsletters.approve(admin, issue.id, fingerprint=submitted.card_fingerprint)
    assert newsletters.plan_next() is True
    with UnitOfWork(sessions) as uow:
        first = uow.outbox.due_queued(now=NOW, limit=1)[0]
        assert uow.outbox.claim(
            first.id,
            worker="w1",
            slot_at=NOW,
            lease_until=NOW + timedelta(minutes=10),
            from_email="maria@lonestar.example",
        )
        uow.commit()
    cancelled = newsletters.cancel(admin, org_id, issue.id)
    assert "0 of 3 sent, 2 withdrawn, 1 already on their way" in str((cancelled.card or {})["note"])
    with UnitOfWork(sessions) as uow:
        assert uow.outbox.mark_sent(
            first.id, worker="w1", gmail_message_id="g1", gmail_thread_id="t1", at=NOW
        )
        uow.commit()
    assert cancelled.slack_message_ts is not None
    return issue.id, cancelled.slack_message_ts


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_sweep_killed_between_storing_a_cancelled_issues_final_figures_and_showing_them(
    committed_engine: Engine, served_slack: ServedSlack, workers: Workers, tmp_path: Path
) -> None:
    issue_id, ts = _cancelled_while_one_email_was_on_its_way(committed_engine, served_slack)
    (tmp_path / "now.txt").write_text((NOW + timedelta(minutes=1)).isoformat())
    sessions = make_session_factory(committed_engine)
    stand_in = served_slack.stand_in

    def card() -> dict[str, Any]:
        with sessions() as session:
            row = session.get(m.NewsletterIssue, issue_id)
            assert row is not None
            return dict(row.card or {})

    def updates() -> int:
        return sum(1 for c in stand_in.calls("chat.update") if c.ok and c.params.get("ts") == ts)

    def shown() -> str:
        return card_text(stand_in.message(DEFAULT_CHANNEL_ID, ts))

    final = (
        "🛑 Sending cancelled by <@U0MARIA> on Dec 7 14:00 UTC: 1 of 3 sent (1 finished after"
        " the cancel), 2 withdrawn."
    )
    at_cancel = updates()
    assert "already on their way" in shown()

    # 1. Killed once the final figures are stored, before the card is updated.
    workers.wait_killed(workers.start("newsletter.cancel_final"), "newsletter.cancel_final")
    assert card()["note"] == final
    assert AWAITING_FINAL in card()
    assert updates() == at_cancel
    assert "already on their way" in shown()

    # 2. The next worker's sweep updates the card, once, and then leaves it be.
    workers.start()
    wait_until(lambda: AWAITING_FINAL not in card(), timeout=60, what="the final figures shown")
    time.sleep(4 * 0.75)  # a few more rounds of the sweep (every 0.75 s here)
    workers.stop_all()
    assert updates() == at_cancel + 1
    assert final in shown()
    assert len(stand_in.messages(DEFAULT_CHANNEL_ID)) == 1
