"""A small world the analytics tests count by hand (tests/integration/test_analytics.py and
test_api_analytics.py): two reps, two running campaigns and a few others, ten sends, the
replies, bounces, opt-outs, complaints and orders that followed, tracked opens and clicks,
cards waiting for a decision, a stale-client ranking, and another organization doing the
same things at the same times.

Times, with T0 = now − 20 days (2026-11-05 15:00 UTC, 09:00 in Chicago):

    send  contact  campaign  step  rep  sent at                   what came back
    s1    dana     A         0     Ana  T0                        positive reply T0+8d
    s2    ray      A         0     Ana  T0                        negative reply T0+1d
    s3    kim      A         0     Ben  T0+1h (tracked)           neutral reply T0+2d; proxy open
    s4    lee      A         0     Ben  T0+1h (tracked)           positive reply T0+3d; open, click
    s10   zoe      A         0     Ben  T0+1h                     hard bounce T0+2h
    s5    dana     A         1     Ana  T0+4d                     meeting request T0+5d
    s6    ray      A         1     Ana  T0+4d                     soft bounce T0+5d
    s7    max      A         -     Ana  T0+5d (no card)           complaint T0+6d
    s8    kim      B         0     Ben  T0+6d12h (tracked)        meeting request T0+9d; opened
    s9    lee      -         -     Ana  T0+7d (tracked)           -
    (a failed send of A to zoe, never sent)

Ray opts out through the unsubscribe link at T0+6d (his last send: s6, A, step 1), Kim
at T0+7d (her last send: s8, B). Ned, Ivy and Ann (Harbor, a client that never ordered)
reply with interest to no send of ours at T0+9d, T0+9d and T0+10d. Pinnacle (Dana and Ray)
ordered last at T0−200d, and orders again at T0+10d (fee 450): an order after a reply for
Dana (last reply T0+8d on s1) and Ray (last reply T0+1d on s2). Summit (Kim, Zoe) ordered
at T0−10d, and again at T0+12d (no fee): an order after Kim's reply (T0+9d on s8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from domain.engagement import EngagementEvent, record_engagement
from storage import models as m
from storage.engagement import record_orders_after_replies
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_order
from tests.support.engagement_data import make_campaign, make_inbound, make_send

E = EngagementEvent
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@dataclass
class Org:
    """One organization's rows the tests refer to."""

    id: int
    ana: int
    ben: int
    campaign_a: m.MarketingCampaign
    campaign_b: m.MarketingCampaign
    paused: m.MarketingCampaign
    jobless: m.MarketingCampaign
    job_a_ana: m.Job
    job_a_ben: m.Job
    job_b_ben: m.Job
    pinnacle: m.Client
    summit: m.Client
    harbor: m.Client
    contacts: dict[str, m.Contact]
    sends: dict[str, m.EmailSend]
    inbound: dict[str, m.InboundEmail]
    cards: dict[str, m.Card]


class AnalyticsWorld:
    """The world of the module docstring, in `org_id`, and a copy in `other_org_id`."""

    def __init__(
        self,
        session: Session,
        session_factory: Callable[[], Session],
        *,
        org_id: int,
        other_org_id: int,
        now: datetime,
    ) -> None:
        self.now = now
        self.t0 = now - 20 * DAY
        self.org = self._build(session, session_factory, org_id, prefix="")
        self.other = self._build(session, session_factory, other_org_id, prefix="rival-")

    def _build(
        self, session: Session, session_factory: Callable[[], Session], org_id: int, *, prefix: str
    ) -> Org:
        t0 = self.t0
        org = session.get(m.Organization, org_id)
        assert org is not None
        ana = m.User(
            org_id=org_id,
            email=f"{prefix}ana@lonestar.test",
            name="Ana Reyes",
            slack_user_id=f"{prefix}UANA",
        )
        ben = m.User(org_id=org_id, email=f"{prefix}ben@lonestar.test", name=None)
        session.add_all([ana, ben])
        session.flush()
        pinnacle = make_client(session, org, name=f"{prefix}Pinnacle Lending")
        summit = make_client(session, org, name=f"{prefix}Summit Mortgage")
        harbor = make_client(session, org, name=f"{prefix}Harbor Credit Union")
        make_order(session, org, pinnacle, ordered_at=t0 - 200 * DAY, fee=Decimal("400.00"))
        make_order(session, org, summit, ordered_at=t0 - 10 * DAY, fee=Decimal("300.00"))
        contacts = {
            "dana": make_contact(session, org, pinnacle, first_name="Dana", last_name="Cole"),
            "ray": make_contact(session, org, pinnacle, first_name="Ray", last_name="Park"),
            "kim": make_contact(session, org, summit, first_name="Kim", last_name="Lowe"),
            "zoe": make_contact(session, org, summit, first_name="Zoe", last_name="Hart"),
            "lee": make_contact(session, org, harbor, first_name="Lee", last_name="Chen"),
            "ned": make_contact(session, org, harbor, first_name="Ned", last_name="Ward"),
            "ivy": make_contact(session, org, harbor, first_name="Ivy", last_name="Moss"),
            "ann": make_contact(session, org, harbor, first_name=None, last_name=None),
            "max": make_contact(session, org, None, first_name="Max", last_name="Bell"),
        }

        def campaign(name: str, status: str) -> m.MarketingCampaign:
            return make_campaign(
                session, org_id, name=f"{prefix}{name}", status=status, cadence_days=[0, 4]
            )

        campaign_a = campaign("Q4 lender win-back", "active")
        campaign_a.created_at = t0 - 5 * DAY
        # Created after its first enrollment (an imported campaign): its life starts there.
        campaign_b = campaign("Spring promo", "active")
        campaign_b.created_at = t0 + 2 * DAY
        paused = campaign("Paused drip", "paused")
        jobless = campaign("Jobless idea", "active")
        for row in (paused, jobless):
            row.created_at = t0 - 30 * DAY

        def job(campaign: m.MarketingCampaign | None, owner: m.User, name: str) -> m.Job:
            row = m.Job(
                org_id=org_id,
                owner_id=owner.id,
                campaign_id=campaign.id if campaign else None,
                name=name,
                status="running",
            )
            session.add(row)
            session.flush()
            return row

        job_a_ana = job(campaign_a, ana, "Win-back, Ana")
        job_a_ben = job(campaign_a, ben, "Win-back, Ben")
        job_b_ben = job(campaign_b, ben, "Spring, Ben")
        # Neither the paused campaign (a job) nor the active one without a job is running.
        job(paused, ana, "Paused drip")
        for job_row, names, at in (
            (job_a_ana, ("dana", "ray", "max"), t0 - DAY),
            (job_a_ben, ("kim", "lee", "zoe"), t0),
            (job_b_ben, ("kim",), t0 + DAY),
        ):
            for name in names:
                session.add(
                    m.Enrollment(
                        org_id=org_id,
                        job_id=job_row.id,
                        contact_id=contacts[name].id,
                        created_at=at,
                        updated_at=at,
                    )
                )
        session.flush()

        def send(
            key: str,
            contact: str,
            at: datetime | None,
            *,
            campaign: m.MarketingCampaign | None,
            job_row: m.Job | None,
            step: int | None,
            rep: m.User,
            tracked: bool = False,
            status: str = "sent",
        ) -> m.EmailSend:
            row = make_send(
                session,
                org_id,
                contacts[contact],
                sent_at=at,
                campaign_id=campaign.id if campaign else None,
                job_id=job_row.id if job_row else None,
                step=step,
                subject=f"{key} for {contact}",
                status=status,
            )
            row.sender_user_id = rep.id
            row.tracked = tracked
            return row

        a, b = campaign_a, campaign_b
        sends = {
            "s1": send("s1", "dana", t0, campaign=a, job_row=job_a_ana, step=0, rep=ana),
            "s2": send("s2", "ray", t0, campaign=a, job_row=job_a_ana, step=0, rep=ana),
            "s3": send(
                "s3", "kim", t0 + HOUR, campaign=a, job_row=job_a_ben, step=0, rep=ben, tracked=True
            ),
            "s4": send(
                "s4", "lee", t0 + HOUR, campaign=a, job_row=job_a_ben, step=0, rep=ben, tracked=True
            ),
            "s10": send("s10", "zoe", t0 + HOUR, campaign=a, job_row=job_a_ben, step=0, rep=ben),
            "s5": send("s5", "dana", t0 + 4 * DAY, campaign=a, job_row=job_a_ana, step=1, rep=ana),
            "s6": send("s6", "ray", t0 + 4 * DAY, campaign=a, job_row=job_a_ana, step=1, rep=ana),
            "s7": send(
                "s7", "max", t0 + 5 * DAY, campaign=a, job_row=job_a_ana, step=None, rep=ana
            ),
            "s8": send(
                "s8",
                "kim",
                t0 + 6 * DAY + 12 * HOUR,
                campaign=b,
                job_row=job_b_ben,
                step=0,
                rep=ben,
                tracked=True,
            ),
            "s9": send("s9", "lee", t0 + 7 * DAY, campaign=None, job_row=None, step=None, rep=ana),
            "failed": send(
                "failed",
                "zoe",
                None,
                campaign=a,
                job_row=job_a_ben,
                step=None,
                rep=ben,
                status="failed",
            ),
        }
        sends["s9"].tracked = True

        def inbound(contact: str, send_key: str | None) -> m.InboundEmail:
            return make_inbound(
                session,
                org_id,
                contact_id=contacts[contact].id,
                email_send_id=sends[send_key].id if send_key else None,
            )

        replies = {
            "dana_meeting": inbound("dana", "s5"),
            "ray_negative": inbound("ray", "s2"),
            "kim_neutral": inbound("kim", "s3"),
            "lee_positive": inbound("lee", "s4"),
            "dana_positive": inbound("dana", "s1"),
            "kim_meeting": inbound("kim", "s8"),
            "ned_meeting": inbound("ned", None),
            "ivy_positive": inbound("ivy", None),
            "ann_positive": inbound("ann", None),
        }

        def tracking(key: str, kind: str, *, bot: bool, at: datetime, link: int = -1) -> None:
            row = sends[key]
            session.add(
                m.EmailTrackingEvent(
                    org_id=org_id,
                    email_send_id=row.id,
                    contact_id=row.contact_id,
                    kind=kind,
                    link_index=link,
                    by_bot=bot,
                    first_at=at,
                    last_at=at,
                )
            )

        tracking("s3", "open", bot=True, at=t0 + HOUR)  # a privacy proxy, at once
        tracking("s4", "open", bot=False, at=t0 + 2 * HOUR)
        tracking("s4", "click", bot=True, at=t0 + HOUR, link=0)  # a link scanner
        tracking("s4", "click", bot=False, at=t0 + 3 * HOUR, link=0)
        tracking("s8", "open", bot=False, at=t0 + 7 * DAY)

        def card(
            key: str,
            state: str,
            at: datetime,
            job_row: m.Job | None,
            *,
            snoozed_until: datetime | None = None,
            inbound_email: m.InboundEmail | None = None,
        ) -> m.Card:
            row = m.Card(
                org_id=org_id,
                job_id=job_row.id if job_row else None,
                type="send_email",
                state=state,
                title=f"Card {key}",
                created_at=at,
                updated_at=at,
                snoozed_until=snoozed_until,
                inbound_email_id=inbound_email.id if inbound_email else None,
                slack_channel_id=f"C{key.upper()}",
                slack_message_ts=f"1700000000.{key}",
            )
            session.add(row)
            session.flush()
            return row

        cards = {
            "c1": card("c1", "in_review", t0 + DAY, job_a_ana),
            "c2": card("c2", "suggested", t0 + 2 * DAY, job_a_ben),
            "c3": card("c3", "blocked", t0 + 3 * DAY, job_b_ben),
            "c4": card("c4", "in_review", t0, job_a_ana, snoozed_until=self.now + DAY),
            "c5": card("c5", "done", t0, job_a_ana),
            "c6": card("c6", "suggested", t0 + 4 * DAY, None),
            "c8": card("c8", "suggested", t0 + 5 * DAY, job_a_ana),
            "c9": card("c9", "in_review", t0 + 6 * DAY, job_a_ana, snoozed_until=self.now - HOUR),
            # Dana's positive reply was posted as a card, and decided.
            "reply": card(
                "reply", "done", t0 + 8 * DAY, None, inbound_email=replies["dana_positive"]
            ),
        }
        # The ranking: Pinnacle first (call Dana), then Harbor, then eleven more.
        ranked = [(pinnacle, contacts["dana"]), (harbor, None)] + [
            (make_client(session, org, name=f"{prefix}Lender {n:02d}"), None) for n in range(3, 14)
        ]
        for rank, (client, contact) in enumerate(ranked, 1):
            session.add(
                m.ClientRanking(
                    org_id=org_id,
                    client_id=client.id,
                    rank=rank,
                    score=round(1 - rank / 100, 2),
                    days_since_order=None if client is harbor else 200 + rank,
                    past_order_rate=0.5,
                    best_contact_id=contact.id if contact else None,
                    computed_at=self.now,
                )
            )
        session.commit()

        uow = UnitOfWork(session_factory)
        with uow:

            def rec(name: str, event: EngagementEvent, at: datetime, **kw: Any) -> None:
                record_engagement(
                    uow.engagement,
                    org_id=org_id,
                    contact_id=contacts[name].id,
                    event=event,
                    occurred_at=at,
                    **kw,
                )

            for row in sends.values():
                if row.sent_at is not None:
                    contact = next(k for k, c in contacts.items() if c.id == row.contact_id)
                    rec(contact, E.SENT, row.sent_at, email_send_id=row.id)
            # The pipeline names the inbound email; its send is found through it.
            rec("zoe", E.BOUNCED, t0 + 2 * HOUR, email_send_id=sends["s10"].id)
            rec("ray", E.NEGATIVE_REPLY, t0 + DAY, inbound_email_id=replies["ray_negative"].id)
            rec("kim", E.REPLIED, t0 + 2 * DAY, inbound_email_id=replies["kim_neutral"].id)
            rec("lee", E.POSITIVE_REPLY, t0 + 3 * DAY, inbound_email_id=replies["lee_positive"].id)
            rec(
                "dana", E.MEETING_REQUEST, t0 + 5 * DAY, inbound_email_id=replies["dana_meeting"].id
            )
            rec("ray", E.SOFT_BOUNCE, t0 + 5 * DAY, email_send_id=sends["s6"].id)
            # The unsubscribe link names no send.
            rec("ray", E.OPTED_OUT, t0 + 6 * DAY, detail={"source": "one_click"})
            rec("max", E.COMPLAINT, t0 + 6 * DAY, email_send_id=sends["s7"].id)
            rec("kim", E.OPTED_OUT, t0 + 7 * DAY, detail={"source": "one_click"})
            rec(
                "dana", E.POSITIVE_REPLY, t0 + 8 * DAY, inbound_email_id=replies["dana_positive"].id
            )
            rec("kim", E.MEETING_REQUEST, t0 + 9 * DAY, inbound_email_id=replies["kim_meeting"].id)
            rec("ned", E.MEETING_REQUEST, t0 + 9 * DAY, inbound_email_id=replies["ned_meeting"].id)
            rec("ivy", E.POSITIVE_REPLY, t0 + 9 * DAY, inbound_email_id=replies["ivy_positive"].id)
            rec("ann", E.POSITIVE_REPLY, t0 + 10 * DAY, inbound_email_id=replies["ann_positive"].id)
            uow.commit()
        pinnacle_order = make_order(
            session, org, pinnacle, ordered_at=t0 + 10 * DAY, fee=Decimal("450.00")
        )
        summit_order = make_order(session, org, summit, ordered_at=t0 + 12 * DAY)
        session.commit()
        uow = UnitOfWork(session_factory)
        with uow:
            recorded = record_orders_after_replies(
                uow.session,
                org_id,
                [
                    (pinnacle_order.order_number, pinnacle.id, pinnacle_order.ordered_at),
                    (summit_order.order_number, summit.id, summit_order.ordered_at),
                ],
            )
            assert recorded == 3  # Dana and Ray for Pinnacle, Kim for Summit
            uow.commit()
        for row in contacts.values():
            session.refresh(row)
        return Org(
            id=org_id,
            ana=ana.id,
            ben=ben.id,
            campaign_a=campaign_a,
            campaign_b=campaign_b,
            paused=paused,
            jobless=jobless,
            job_a_ana=job_a_ana,
            job_a_ben=job_a_ben,
            job_b_ben=job_b_ben,
            pinnacle=pinnacle,
            summit=summit,
            harbor=harbor,
            contacts=contacts,
            sends=sends,
            inbound=replies,
            cards=cards,
        )
