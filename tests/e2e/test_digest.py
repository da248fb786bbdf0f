"""The engagement digest end to end (issue 14, "Done when"), through the real Slack app and
the Slack stand-in, with a clock the test moves.

Maria (Slack time zone America/Chicago) types `/digest subscribe daily 08:00
#sales-digest` on Wednesday 2026-12-02 at 07:00 in Chicago. Tuesday had sends, replies of
each sentiment, a meeting request, an opt-out, a bounce, an order after a reply and a card
waiting for approval. At 07:59 the digest job posts nothing; at 08:00 it posts exactly one
message to #sales-digest whose image block shows the uploaded 30-day chart (a PNG), and the
figures it stored are the read model's for Tuesday. Running the job again, or from two
threads at once, posts nothing more; Thursday posts one more; Friday (a quiet Thursday) one
line; a weekly digest posts on Mondays only, and after the weekend only Sunday's daily
digest is posted. `/digest now`, `/digest list`, `unsubscribe` and bad input are answered
as a person expects.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from domain.analytics import AnalyticsWindow
from domain.clock import FixedClock
from domain.engagement import EngagementEvent, record_engagement
from jobs.digest import DigestScheduler
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import create_org
from tests.support.builders import make_order
from tests.support.engagement_data import make_inbound, make_job, make_send
from tests.support.slack import ServedSlack
from tests.support.slack_app import OTHER_REP, REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

DIGEST = "C0DIGEST"
WEEKLY = "C0WEEKLY"
OUTSIDE = "C0OUTSIDE"
CHICAGO = "America/Chicago"
# Wednesday 2026-12-02, 07:00 in Chicago (CST, UTC−6).
START = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
EIGHT = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
# Tuesday in Chicago, the period of Wednesday's digest.
TUESDAY = AnalyticsWindow(
    since=datetime(2026, 12, 1, 6, 0, tzinfo=UTC), until=datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
)


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    clock._at = START
    with slack_world(committed_engine, served_slack, clock, contacts=6) as built:
        built.slack.add_channel(DIGEST, "sales-digest")
        built.slack.add_channel(WEEKLY, "weekly-digest")
        built.slack.add_channel(OUTSIDE, "outside", is_member=False)
        yield built


def digest(world: SlackWorld, text: str, *, user: str = REP) -> str:
    """Type `/digest <text>`; return the answer (the listener runs after the ack)."""
    before = len(world.responses())
    response = world.command(text, command="/digest", user=user)
    assert response.status_code == 200
    wait_until(lambda: len(world.responses()) > before, what=f"the answer to /digest {text}")
    return world.responses()[-1]


def run_job(world: SlackWorld, clock: FixedClock, at: datetime) -> int:
    clock._at = at
    return world.runtime.scheduler.run(DigestScheduler.NAME)


def digests_in(world: SlackWorld, channel: str) -> list[object]:
    """Top-level messages of a channel (thread replies are the digests' overflow)."""
    return [msg for msg in world.slack.messages(channel) if msg.thread_ts in (None, msg.ts)]


def png_size(content: bytes) -> tuple[int, int]:
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", content[16:24])
    return width, height


def seed_tuesday(world: SlackWorld) -> None:
    """Tuesday's outreach and what came of it, as the inbound pipeline records it."""
    at = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # 10:00 in Chicago
    with world.session_factory() as session:
        campaign = session.get(m.MarketingCampaign, world.campaign_id)
        assert campaign is not None
        campaign.status = "active"
        job = make_job(session, world.org_id, campaign_id=world.campaign_id)
        contacts = [session.get(m.Contact, cid) for cid in world.contact_ids]
        sends = [
            make_send(
                session,
                world.org_id,
                contact,
                sent_at=at,
                campaign_id=world.campaign_id,
                job_id=job.id,
                step=0,
            )
            for contact in contacts
            if contact is not None
        ]
        replies = [
            (0, EngagementEvent.POSITIVE_REPLY, "positive"),
            (1, EngagementEvent.REPLIED, "neutral"),
            (2, EngagementEvent.NEGATIVE_REPLY, "negative"),
            (3, EngagementEvent.MEETING_REQUEST, "positive"),
        ]
        inbound = {
            n: make_inbound(
                session,
                world.org_id,
                contact_id=world.contact_ids[n],
                email_send_id=sends[n].id,
                sentiment=sentiment,
            ).id
            for n, _, sentiment in replies
        }
        # A card waiting for Maria's approval, posted in the review channel.
        posted = world.slack.call(
            "chat.postMessage",
            {"channel": "C0SANDBOXGEN", "text": "Reply to Dana0"},
            token=world.slack.default_token,
        )
        card = m.Card(
            org_id=world.org_id,
            job_id=job.id,
            contact_id=world.contact_ids[0],
            inbound_email_id=inbound[0],
            type="reply_to_email",
            state="in_review",
            title="Reply to Dana0 Whitfield",
            action_payload={},
            slack_channel_id=str(posted.body["channel"]),
            slack_message_ts=str(posted.body["ts"]),
            created_at=at + timedelta(hours=2),
        )
        session.add(card)
        org = session.get(m.Organization, world.org_id)
        lender = session.get(m.Client, contacts[0].client_id if contacts[0] else None)
        assert org is not None
        assert lender is not None
        order_id = make_order(session, org, lender, ordered_at=at + timedelta(hours=5)).id
        session.commit()
    with UnitOfWork(world.session_factory) as uow:
        for n, event, sentiment in replies:
            record_engagement(
                uow.engagement,
                org_id=world.org_id,
                contact_id=world.contact_ids[n],
                event=event,
                occurred_at=at + timedelta(hours=2),
                sentiment=sentiment,
                inbound_email_id=inbound[n],
            )
        record_engagement(
            uow.engagement,
            org_id=world.org_id,
            contact_id=world.contact_ids[2],
            event=EngagementEvent.OPTED_OUT,
            occurred_at=at + timedelta(hours=3),
        )
        record_engagement(
            uow.engagement,
            org_id=world.org_id,
            contact_id=world.contact_ids[4],
            event=EngagementEvent.BOUNCED,
            occurred_at=at + timedelta(minutes=1),
            email_send_id=sends[4].id,
        )
        record_engagement(
            uow.engagement,
            org_id=world.org_id,
            contact_id=world.contact_ids[0],
            event=EngagementEvent.ORDER_AFTER_REPLY,
            occurred_at=at + timedelta(hours=5),
            detail={"order_id": order_id},
        )
        uow.commit()


def stored_posts(world: SlackWorld) -> list[m.DigestPost]:
    with world.session_factory() as session:
        return list(session.scalars(select(m.DigestPost).order_by(m.DigestPost.id)))


def test_a_daily_digest_posts_once_a_day_at_eight_in_the_subscribers_zone(
    world: SlackWorld, clock: FixedClock
) -> None:
    seed_tuesday(world)
    answer = digest(world, f"subscribe daily 08:00 <#{DIGEST}|sales-digest>")
    assert f"<#{DIGEST}> gets the engagement digest daily at 08:00 {CHICAGO}" in answer
    assert "your Slack profile" in answer
    assert "Next post: Wed 2026-12-02 08:00 CST" in answer

    assert run_job(world, clock, EIGHT - timedelta(minutes=1)) == 0
    assert digests_in(world, DIGEST) == []

    run_job(world, clock, EIGHT)
    (message,) = digests_in(world, DIGEST)
    images = [b for b in message.blocks if b.get("type") == "image"]  # type: ignore[attr-defined]
    assert len(images) == 1
    file_id = images[0]["slack_file"]["id"]
    (uploaded,) = [f for f in world.slack.uploaded_files if f.id == file_id]
    assert uploaded.completed
    assert uploaded.channels == ()  # shared by the message's image block, not as a file post
    assert uploaded.content is not None
    assert 10_000 < len(uploaded.content) < 500_000
    width, height = png_size(uploaded.content)
    assert width >= 600
    assert height >= 200

    (post,) = stored_posts(world)
    assert (post.status, post.slack_ts, post.file_id) == ("posted", message.ts, file_id)  # type: ignore[attr-defined]
    assert (post.period_start, post.period_end) == (TUESDAY.since, TUESDAY.until)
    with UnitOfWork(world.session_factory) as uow:
        facts = uow.analytics.digest_facts(world.org_id, TUESDAY, time_zone=CHICAGO, now=EIGHT)
        lifetime = uow.analytics.campaign_analytics(world.org_id, world.campaign_id, TUESDAY)
    assert post.figures == facts.model_dump(mode="json")
    assert (facts.sent.current, facts.meetings.current, facts.opt_outs.current) == (6, 1, 1)
    assert (facts.bounces.current, facts.orders_after_reply.current) == (1, 1)
    assert (
        facts.replies.positive.current,
        facts.replies.neutral.current,
        facts.replies.negative.current,
    ) == (2, 1, 1)
    assert lifetime.totals.sent == facts.sent.current
    assert lifetime.totals.meetings == facts.meetings.current
    assert facts.waiting_count == 1
    # The message shows the same numbers: its notification text, its fields, the campaign's
    # funnel, and the waiting card linked to its Slack message.
    assert message.text.endswith(  # type: ignore[attr-defined]
        ": 6 sent, 4 replies (2 positive), 1 meeting booked, 1 card waiting for approval"
    )
    fields = [
        f["text"]
        for b in message.blocks  # type: ignore[attr-defined]
        for f in b.get("fields") or []
    ]
    for label, count in [
        ("Sent", 6),
        ("Positive", 2),
        ("Neutral", 1),
        ("Negative", 1),
        ("Meetings booked", 1),
        ("Opt-outs", 1),
        ("Bounces", 1),
        ("Orders after a reply", 1),
    ]:
        assert any(f"{label}\n*{count}*" in text for text in fields), (label, fields)
    shown = json.dumps(message.blocks)  # type: ignore[attr-defined]
    assert "Q4 lender win-back" in shown
    assert "Reply to Dana0 Whitfield" in shown
    card_ts = world.slack.messages("C0SANDBOXGEN")[0].ts
    assert f"/archives/C0SANDBOXGEN/p{card_ts.replace('.', '')}" in shown

    # The job again, and two at once: nothing more.
    assert run_job(world, clock, EIGHT + timedelta(minutes=1)) == 0
    threads = [
        threading.Thread(target=lambda: world.runtime.scheduler.run(DigestScheduler.NAME))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(digests_in(world, DIGEST)) == 1

    # Thursday: one more (Wednesday's numbers).
    run_job(world, clock, EIGHT + timedelta(days=1))
    assert len(digests_in(world, DIGEST)) == 2
    # Friday: Thursday was quiet, one line.
    run_job(world, clock, EIGHT + timedelta(days=2))
    quiet = digests_in(world, DIGEST)[-1]
    assert len(digests_in(world, DIGEST)) == 3
    assert not [b for b in quiet.blocks if b.get("type") == "image"]  # type: ignore[attr-defined]
    assert len(quiet.blocks) <= 2  # type: ignore[attr-defined]


def test_a_weekly_digest_posts_on_its_weekday_and_downtime_posts_the_latest_period_only(
    world: SlackWorld, clock: FixedClock
) -> None:
    answer = digest(world, f"subscribe weekly mon 8am <#{WEEKLY}|weekly-digest>")
    assert "weekly on Mon at 08:00" in answer
    assert "Next post: Mon 2026-12-07 08:00 CST" in answer
    digest(world, f"subscribe daily 08:00 <#{DIGEST}|sales-digest>")
    for day in range(4):  # Wednesday to Saturday
        run_job(world, clock, EIGHT + timedelta(days=day, minutes=5))
    assert digests_in(world, WEEKLY) == []
    assert len(digests_in(world, DIGEST)) == 4
    # Nothing ran on Sunday; Monday posts the week, and the daily digest of Sunday only.
    run_job(world, clock, EIGHT + timedelta(days=5, minutes=5))
    assert len(digests_in(world, WEEKLY)) == 1
    assert len(digests_in(world, DIGEST)) == 5
    weekly = [p for p in stored_posts(world) if p.channel_id == WEEKLY]
    assert [(p.period_start, p.period_end) for p in weekly] == [
        (datetime(2026, 11, 30, 6, 0, tzinfo=UTC), datetime(2026, 12, 7, 6, 0, tzinfo=UTC))
    ]
    daily = [p for p in stored_posts(world) if p.channel_id == DIGEST]
    assert daily[-1].period_start == datetime(2026, 12, 6, 6, 0, tzinfo=UTC)


def test_digest_now_posts_at_once_and_list_and_unsubscribe_answer(
    world: SlackWorld, clock: FixedClock
) -> None:
    seed_tuesday(world)
    clock._at = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # Tuesday 17:00 in Chicago
    answer = digest(world, f"now <#{DIGEST}|sales-digest> --campaign Q4 lender win-back")
    assert "today so far" in answer
    assert "campaign “Q4 lender win-back”" in answer
    world.runtime.scheduler.run(DigestScheduler.NAME)
    (message,) = digests_in(world, DIGEST)
    (post,) = stored_posts(world)
    assert (post.kind, post.requested_by, post.campaign_id) == ("on_demand", REP, world.campaign_id)
    assert post.period_start == TUESDAY.since
    assert f"<@{REP}>" in json.dumps(message.blocks)  # type: ignore[attr-defined]

    digest(world, "list", user=OTHER_REP)  # Jose becomes a user of the organization
    digest(world, f"subscribe daily 17:30 <#{DIGEST}|sales-digest> --rep <@{OTHER_REP}|jose>")
    digest(world, f"subscribe weekly fri 09:00 <#{DIGEST}|sales-digest>")
    listed = digest(world, "list")
    assert f"<#{DIGEST}> — daily at 17:30 {CHICAGO} — rep <@{OTHER_REP}>" in listed
    assert f"<#{DIGEST}> — weekly on Fri at 09:00 {CHICAGO} — every campaign and rep" in listed
    assert "next Tue 2026-12-01 17:30 CST" in listed

    gone = digest(world, f"unsubscribe weekly <#{DIGEST}|sales-digest>")
    assert "no longer gets" in gone
    assert "weekly on Fri" in gone
    assert "weekly" not in digest(world, "list")
    assert "No engagement digest of" in digest(world, f"unsubscribe weekly <#{DIGEST}>")


def test_bad_input_is_answered_with_what_to_do(world: SlackWorld) -> None:
    with world.session_factory() as session:
        other = create_org(session, slug="elsewhere", name="Elsewhere Appraisals")
        campaign = m.MarketingCampaign(
            org_id=other.id, name="Their secret campaign", goal="reactivation"
        )
        session.add(campaign)
        session.commit()
        theirs = campaign.id

    assert "08:00, 8:00, 17:30, 8am or 5:30pm" in digest(world, "subscribe daily breakfast")
    outside = digest(world, f"subscribe daily 08:00 <#{OUTSIDE}|outside>")
    assert "invite it with /invite @salesbot in #outside" in outside
    for named in (str(theirs), "Their secret campaign"):
        refused = digest(world, f"subscribe daily 08:00 <#{DIGEST}> --campaign {named}")
        assert "no campaign" in refused
        assert "in your organization" in refused
    unknown = digest(world, "subscibe daily 08:00")
    assert "I don't know `/digest subscibe daily 08:00`" in unknown
    assert "*Usage of /digest*" in unknown
    with world.session_factory() as session:
        assert session.scalars(select(m.DigestSubscription)).all() == []


def test_a_channel_that_removed_the_bot_fails_the_digest_and_list_says_why(
    world: SlackWorld, clock: FixedClock
) -> None:
    seed_tuesday(world)
    digest(world, f"subscribe daily 08:00 <#{DIGEST}|sales-digest>")
    # The channel went private and the bot was removed from it.
    world.slack.add_channel(DIGEST, "sales-digest", is_private=True, is_member=False)
    run_job(world, clock, EIGHT)
    assert digests_in(world, DIGEST) == []
    (post,) = stored_posts(world)
    assert (post.status, post.attempts) == ("failed", 1)
    listed = digest(world, "list")
    assert "⚠️ last post failed: Slack: Salesbot cannot post in <#C0DIGEST>" in listed
    assert "/invite @salesbot" in listed
    # Slack's upload of the chart happened once, and no retry posts anything later.
    assert run_job(world, clock, EIGHT + timedelta(minutes=30)) == 0
    assert len(world.slack.uploaded_files) == 1
