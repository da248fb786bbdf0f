"""A reply's card is drafted and posted as soon as the pipeline made it, not at the workers'
next poll: the understanding worker wakes the task worker and the card poster.

The background threads run as `salesbot serve` runs them, with WORKER_POLL_SECONDS at
300 s: only a wake-up gets the card drafted and posted within the test's wait.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from tests.e2e.test_inbound_understanding import (
    AMC_ORDER,
    POSITIVE,
    Inbound,
    inbound_world,
    labelled,
)
from tests.support.accounts import link_slack_team
from tests.support.gmail_app import DANA, REP_EMAIL
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

POLL_SECONDS = 300  # longer than any wait below: a card that arrives was woken for


@pytest.fixture
def running(
    committed_engine: Engine,
    clock: FixedClock,
    google: GoogleServer,
    served_slack: ServedSlack,
) -> Iterator[tuple[Inbound, ServedSlack]]:
    """The inbound world on committed data, with the pipeline, task worker and poster running."""
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    sessions = make_session_factory(committed_engine)
    settings: dict[str, object] = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "WORKER_POLL_SECONDS": POLL_SECONDS,
    }
    with inbound_world(committed_engine, sessions, clock, google, settings=settings) as built:
        with sessions() as session:
            link_slack_team(session, built.world.org_id, DEFAULT_TEAM_ID)
            job = session.get(m.Job, built.job_id)
            assert job is not None
            # The job as a launch stores it (no review channel: cards go to the owner's DM).
            job.params = {
                "target": {"contact_ids": [built.world.contact_ids[DANA]]},
                "templates": [{"subject": "Turn times", "body": "Hi {{ first_name }}"}],
            }
            session.commit()
        runtime = built.world.runtime
        parts = (runtime.worker, runtime.poster, runtime.inbound_worker)
        for part in parts:
            part.start()
        try:
            yield built, served_slack
        finally:
            for part in reversed(parts):
                part.stop()


def _posted_card(inbound: Inbound) -> m.Card | None:
    with inbound.sessions() as session:
        card = session.scalars(select(m.Card)).one_or_none()
    return card if card is not None and card.slack_message_ts else None


@pytest.mark.parametrize("reply", [POSITIVE, AMC_ORDER], ids=["reply_card", "human_card"])
def test_a_card_made_by_the_pipeline_is_drafted_and_posted_without_waiting_for_a_poll(
    running: tuple[Inbound, ServedSlack], reply: int
) -> None:
    inbound, served = running
    text = labelled(reply)
    # The sync runs here and wakes the pipeline's thread, as the push endpoint wakes it.
    inbound.deliver(inbound.reply(text["body"], subject=text["subject"]), run=False)

    card = wait_until(
        lambda: _posted_card(inbound), timeout=60, what="the card posted in the rep's DM"
    )
    expected = "reply_to_email" if reply == POSITIVE else "needs_human_response"
    assert (card.type, card.state) == (expected, "in_review")
    (message,) = served.stand_in.messages(REP)
    assert message.ts == card.slack_message_ts
