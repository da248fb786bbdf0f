"""Cancel sending a newsletter issue from its Slack card: a signed click on Cancel sending
(behind its confirm dialog) after the first emails went out; the card says who cancelled and
how many went out, and the Gmail stand-in receives nothing more while the clock runs on.
Emails on their way at the cancel end afterwards, and the sweep shows how on the card, once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.newsletters import AWAITING_FINAL, WITHDRAWN_REASON
from handlers.slack.ids import ActionId
from storage import models as m
from tests.e2e.test_newsletters import (
    JOSE,
    MARIA,
    card_text,
    connect,
    ephemerals,
    issue_row,
    newsletter_card,
    submitted_issue,
)
from tests.support.gmail_app import google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=5, extra_settings=google_settings(google)
    ) as built:
        yield built


def sent_count(google: GoogleServer) -> int:
    return sum(len(google.google.gmail.sent(box)) for box in (MARIA, JOSE))


def test_cancel_sending_from_the_card_withdraws_the_rest_and_nothing_more_is_sent(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    maria, token = connect(world, google, MARIA, "Maria Lopez")
    auth = {"Authorization": f"Bearer {token}"}
    runtime = world.runtime
    assert runtime.newsletter_sweep is not None
    assert runtime.gmail is not None
    base, issue = submitted_issue(world, auth, [maria])
    message = newsletter_card(world)
    value = world.button(message, ActionId.NEWSLETTER_APPROVE)["value"]
    world.click(ActionId.NEWSLETTER_APPROVE, value, message_ts=message.ts, user=REP)
    wait_until(lambda: issue_row(world, issue["id"]).status == "scheduled", what="scheduled")
    runtime.newsletter_sweep.run_once()

    # One mailbox at 2 a day: a day of sending sends 2 of the 5.
    for _ in range(24):
        runtime.gmail.outbox.run_once()
        clock.advance(hours=1)
    runtime.newsletter_sweep.run_once()
    assert sent_count(google) == 2
    message = newsletter_card(world)
    assert issue_row(world, issue["id"]).status == "sending"
    cancel = world.button(message, ActionId.NEWSLETTER_CANCEL)
    assert cancel["confirm"]["confirm"]["text"] == "Cancel sending"

    ack = world.click(ActionId.NEWSLETTER_CANCEL, cancel["value"], message_ts=message.ts, user=REP)
    assert ack.status_code == 200
    wait_until(lambda: issue_row(world, issue["id"]).status == "cancelled", what="cancelled")
    cancelled = issue_row(world, issue["id"])
    assert (cancelled.cancelled_by, cancelled.sent_before_cancel, cancelled.withdrawn_count) == (
        maria,
        2,
        3,
    )
    # The card is updated after the cancel committed, by the same listener: wait for it too.
    wait_until(lambda: "🛑" in card_text(newsletter_card(world)), what="the card updated")
    shown = card_text(newsletter_card(world))
    assert f"🛑 Sending cancelled by <@{REP}> on " in shown
    assert ": 2 of 5 sent, 3 withdrawn." in shown
    assert all(b["type"] != "actions" for b in newsletter_card(world).blocks or [])

    # A second click (a retry of the first) changes nothing and tells nobody off.
    world.click(ActionId.NEWSLETTER_CANCEL, cancel["value"], message_ts=message.ts, user=REP)
    # The clock runs on for days: the Gmail stand-in receives nothing more.
    for _ in range(4 * 24):
        runtime.gmail.outbox.run_once()
        runtime.newsletter_sweep.run_once()
        clock.advance(hours=1)
    assert sent_count(google) == 2
    assert issue_row(world, issue["id"]).status == "cancelled"
    assert issue_row(world, issue["id"]).withdrawn_count == 3
    assert not [t for t in ephemerals(world) if "cancel" in t.lower()]
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.EmailSend).where(m.EmailSend.newsletter_issue_id == issue["id"])
        ).all()
    assert (
        sorted((r.status, r.error if r.status == "failed" else None) for r in rows)
        == [("failed", WITHDRAWN_REASON)] * 3 + [("sent", None)] * 2
    )
    got = world.client.get(f"{base}/{issue['id']}", headers=auth).json()
    assert (got["metrics"]["sent"], got["metrics"]["withdrawn"], got["metrics"]["queued"]) == (
        2,
        3,
        0,
    )


def statuses(world: SlackWorld, issue_id: int) -> dict[str, int]:
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.EmailSend.status).where(m.EmailSend.newsletter_issue_id == issue_id)
        ).all()
    return dict(Counter(rows))


def stored_card(world: SlackWorld, issue_id: int) -> dict[str, Any]:
    return dict(issue_row(world, issue_id).card or {})


def test_emails_on_their_way_at_the_cancel_end_on_the_card_once_and_the_sweep_lets_it_be(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    maria, token = connect(world, google, MARIA, "Maria Lopez")
    jose, _ = connect(world, google, JOSE, "Jose Ruiz")
    auth = {"Authorization": f"Bearer {token}"}
    runtime, gmail = world.runtime, google.google.gmail
    assert runtime.newsletter_sweep is not None
    assert runtime.gmail is not None
    base, issue = submitted_issue(world, auth, [maria, jose])
    message = newsletter_card(world)
    value = world.button(message, ActionId.NEWSLETTER_APPROVE)["value"]
    world.click(ActionId.NEWSLETTER_APPROVE, value, message_ts=message.ts, user=REP)
    wait_until(lambda: issue_row(world, issue["id"]).status == "scheduled", what="scheduled")
    runtime.newsletter_sweep.run_once()

    # Two mailboxes at 2 a day each: 2 emails now, 2 in 12 hours, the last in 24.
    runtime.gmail.outbox.run_once()
    assert sent_count(google) == 2
    # In 12 hours both next emails are claimed and stay on their way (`sending`): Gmail
    # takes Maria's but its answer is lost and the search for it fails; Jose's never
    # reaches Gmail (a 500) and the search finds nothing yet.
    gmail.accept_but_drop_connection_next_send(response="error_500")
    gmail.fail_next("messages.list", 500, "backendError", email=MARIA)
    gmail.fail_next("messages.send", 500, "backendError", email=JOSE)
    clock.advance(hours=12)
    runtime.gmail.outbox.run_once()
    runtime.newsletter_sweep.run_once()
    assert statuses(world, issue["id"]) == {"sent": 2, "sending": 2, "queued": 1}
    assert issue_row(world, issue["id"]).status == "sending"

    message = newsletter_card(world)
    cancel = world.button(message, ActionId.NEWSLETTER_CANCEL)
    world.click(ActionId.NEWSLETTER_CANCEL, cancel["value"], message_ts=message.ts, user=REP)
    wait_until(lambda: "🛑" in card_text(newsletter_card(world)), what="the card updated")
    cancelled = issue_row(world, issue["id"])
    assert (cancelled.sent_before_cancel, cancelled.withdrawn_count) == (2, 1)
    assert ": 2 of 5 sent, 1 withdrawn, 2 already on their way (sent unless Gmail refuses)." in (
        card_text(newsletter_card(world))
    )
    # While they are on their way the sweep leaves the card as it is.
    updates = len(world.slack.calls("chat.update"))
    runtime.newsletter_sweep.run_once()
    assert len(world.slack.calls("chat.update")) == updates

    # Once the claims' lease is over the outbox looks for them: Maria's is found in her
    # mailbox (sent), Jose's is not (put back in the queue, then withdrawn when claimed).
    clock.advance(minutes=5)
    runtime.gmail.outbox.run_once()
    assert statuses(world, issue["id"]) == {"sent": 3, "failed": 2}
    assert sent_count(google) == 3

    # Slack fails the first update of the final figures, as if the sweep had been killed
    # after storing them: the card is behind, the stored card says what it must show.
    world.slack.fail_next("chat.update", "internal_error")
    runtime.newsletter_sweep.run_once()
    assert len(world.slack.calls("chat.update")) == updates + 1
    final = (
        f"🛑 Sending cancelled by <@{REP}> on {cancelled.cancelled_at:%b} "
        f"{cancelled.cancelled_at.day} {cancelled.cancelled_at:%H:%M} UTC: 3 of 5 sent"
        " (1 finished after the cancel), 2 withdrawn."
    )
    assert stored_card(world, issue["id"])["note"] == final
    assert AWAITING_FINAL in stored_card(world, issue["id"])
    assert "already on their way" in card_text(newsletter_card(world))

    # The next round shows them, once; the rounds after it, for days, leave the card be.
    runtime.newsletter_sweep.run_once()
    assert len(world.slack.calls("chat.update")) == updates + 2
    shown = card_text(newsletter_card(world))
    assert final in shown
    assert "on their way" not in shown
    assert all(b["type"] != "actions" for b in newsletter_card(world).blocks or [])
    assert AWAITING_FINAL not in stored_card(world, issue["id"])
    for _ in range(3 * 24):
        runtime.gmail.outbox.run_once()
        runtime.newsletter_sweep.run_once()
        clock.advance(hours=1)
    assert len(world.slack.calls("chat.update")) == updates + 2
    assert sent_count(google) == 3

    # The API's numbers are the card's.
    got = world.client.get(f"{base}/{issue['id']}", headers=auth).json()
    assert got["status"] == "cancelled"
    assert (got["sent_before_cancel"], got["withdrawn_count"]) == (2, 1)  # at the cancel
    metrics = got["metrics"]
    assert (metrics["planned"], metrics["sent"], metrics["withdrawn"]) == (5, 3, 2)
    assert (metrics["failed"], metrics["queued"]) == (0, 0)
