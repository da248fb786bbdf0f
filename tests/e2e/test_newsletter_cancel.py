"""Cancel sending a newsletter issue from its Slack card: a signed click on Cancel sending
(behind its confirm dialog) after the first emails went out; the card says who cancelled and
how many went out, and the Gmail stand-in receives nothing more while the clock runs on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.newsletters import WITHDRAWN_REASON
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
