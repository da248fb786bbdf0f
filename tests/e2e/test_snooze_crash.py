"""A real `salesbot serve` process bringing snoozed cards back, killed after it claimed
them and again after it posted one, then restarted: every card comes back, as a new
message in the rep's DM in the Slack stand-in; the one whose post was cut off comes back
twice at worst, none is lost, and each card's former message says it was posted again.

As in test_crash_recovery.py, each round arms one fault point (`SALESBOT_FAULT_POINTS`)
and waits for the process to exit with 137, as after `kill -9`; leases last 3 seconds.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from domain.outreach.snoozing import BACK_NOTE
from handlers.slack.ids import ActionId
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from tests.e2e.test_crash_recovery import LEASE_SECONDS, Deployment, forks
from tests.support.accounts import create_org, ensure_user, link_slack_team
from tests.support.api import make_settings
from tests.support.builders import make_client, make_contact
from tests.support.forkserver import ForkServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

__all__ = ["forks"]  # the module's fork server, shared with the crash test's fixture

REP = "U0CRASH01"
REP_EMAIL = "maria@lonestar.example.com"
POINTS = ["snooze.claimed", "snooze.posted"]
CARDS = 3


def _seed(engine: Engine, served: ServedSlack) -> list[int]:
    """Reply cards waiting in the rep's DM, each snoozed until a minute ago or more."""
    sessions = make_session_factory(engine)
    client = served.client()
    now = datetime.now(UTC)
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        rep_id = ensure_user(session, org.id, email=REP_EMAIL, name="Maria Lopez")
        rep = session.get(m.User, rep_id)
        org_row = session.get(m.Organization, org.id)
        assert rep is not None
        assert org_row is not None
        rep.slack_user_id = REP
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        job = m.Job(
            org_id=org.id, owner_id=rep_id, name="Win-back", status="running", planned_at=now
        )
        session.add(job)
        session.flush()
        ids = []
        for n in range(CARDS):
            email = f"lo{n}@pinnacle.example"
            contact = make_contact(session, org_row, lender, email=email, first_name=f"Lo{n}")
            inbound = m.InboundEmail(
                org_id=org.id,
                gmail_message_id=f"g{n}",
                from_email=email,
                subject="Re: Turn times",
                reply_text="Send me your fee schedule.",
                status="processed",
            )
            session.add(inbound)
            session.flush()
            posted = client.chat_postMessage(channel=REP, text=f"card {n}")
            card = m.Card(
                org_id=org.id,
                job_id=job.id,
                contact_id=contact.id,
                inbound_email_id=inbound.id,
                type="needs_human_response",
                state="in_review",
                title=f"Needs a person: {email}: Re: Turn times",
                action_payload={"from_email": email, "reply_text": "Send me your fee schedule."},
                slack_channel_id=str(posted["channel"]),
                slack_message_ts=str(posted["ts"]),
                # The oldest snooze first: card 0 is the one posted before the second kill.
                snoozed_until=now - timedelta(minutes=10 - n),
            )
            session.add(card)
            session.flush()
            ids.append(card.id)
        session.commit()
    return ids


# PostgreSQL only: a process start costs about 20 s, and the claims themselves are tested
# on both databases (tests/integration/test_snooze_storage.py).
@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_sweep_killed_after_its_claim_and_after_a_post_loses_no_snoozed_card(
    committed_engine: Engine,
    served_slack: ServedSlack,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    card_ids = _seed(committed_engine, served_slack)
    originals = [m.ts for m in slack.messages(REP)]
    url = committed_engine.url.render_as_string(hide_password=False)
    deployment = Deployment(
        forks,
        env={
            **os.environ,
            "SLACK_API_URL": served_slack.api_url,
            "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "DATABASE_URL": url,
            "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
            "SLACK_POST_INTERVAL_SECONDS": "0",
            "WORK_LEASE_SECONDS": LEASE_SECONDS,
            "WORKER_POLL_SECONDS": "0.2",
            "LOG_LEVEL": "WARNING",
        },
        logs=tmp_path,
    )
    sessions = make_session_factory(committed_engine)

    def still_snoozed() -> int:
        with sessions() as session:
            return len(
                session.scalars(select(m.Card.id).where(m.Card.snoozed_until.is_not(None))).all()
            )

    try:
        for point in POINTS:
            deployment.start(point)
            deployment.wait_killed(point, timeout=60)
        deployment.start()
        wait_until(lambda: still_snoozed() == 0, timeout=60, what="every card back")
        assert deployment.terminate() == -signal.SIGTERM
    finally:
        deployment.stop()

    messages = slack.messages(REP)
    shown: Counter[int] = Counter()
    for message in messages:
        for block in message.blocks or []:
            for element in block.get("elements") or []:
                if element.get("action_id") == ActionId.APPROVE:
                    shown[int(element["value"].split(":")[1].split(",")[0])] += 1
    with sessions() as session:
        recorded = dict(
            session.execute(
                select(m.Card.id, m.Card.slack_message_ts).where(m.Card.id.in_(card_ids))
            ).all()
        )
    assert deployment.kills == POINTS
    # The card whose post the kill cut off came back twice; the others once; none lost.
    assert shown == Counter({card_ids[0]: 2, card_ids[1]: 1, card_ids[2]: 1})
    assert all(ts not in originals for ts in recorded.values())
    assert {ts for ts in recorded.values()} <= {m.ts for m in messages}
    retired = [m for m in messages if m.ts in originals]
    assert [m.text for m in retired] == [BACK_NOTE] * CARDS
