"""What acting on a reply's intent stores, on SQLite and PostgreSQL: the person a referral
names found or added once, a contact's pause (audiences skip them until then), and the one
email an opted-out address may still get (the confirmation of its opt-out)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from domain.audience import AudienceCriteria
from domain.clock import FixedClock
from domain.jobs import TargetSelection
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_org


@pytest.fixture
def org(session: Session) -> m.Organization:
    return make_org(session)


def test_a_referred_person_is_found_by_address_whatever_its_case(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    lender = make_client(session, org, name="Pinnacle Lending")
    known = make_contact(session, org, lender, email="karen@pinnacle.example", first_name="Karen")
    session.commit()

    with uow:
        found = uow.reply_actions.find_contact(org.id, " Karen@Pinnacle.example ")
        missing = uow.reply_actions.find_contact(org.id, "nobody@pinnacle.example")
        other_org = uow.reply_actions.find_contact(
            make_org(uow.session).id, "karen@pinnacle.example"
        )

    assert found is not None
    assert (found.id, found.client_id, found.first_name, found.opted_out) == (
        known.id,
        lender.id,
        "Karen",
        False,
    )
    assert (missing, other_org) == (None, None)


def test_a_referred_person_is_added_once_tagged_and_of_the_client_given(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    lender = make_client(session, org)
    session.commit()

    with uow:
        added = uow.reply_actions.add_contact(
            org.id,
            email="Olivia.Grant@Prairie.example",
            first_name="Olivia",
            last_name="Grant",
            title="appraisal desk manager",
            client_id=lender.id,
            tags=["referral"],
            at=clock.now(),
        )
        again = uow.reply_actions.add_contact(
            org.id,
            email="olivia.grant@prairie.example",
            first_name="Someone",
            last_name="Else",
            title=None,
            client_id=None,
            tags=[],
            at=clock.now(),
        )
        uow.commit()

    assert again == added
    row = session.get(m.Contact, added.id)
    assert row is not None
    assert (row.email, row.first_name, row.last_name, row.title, row.client_id, row.tags) == (
        "olivia.grant@prairie.example",
        "Olivia",
        "Grant",
        "appraisal desk manager",
        lender.id,
        ["referral"],
    )


def test_a_pause_is_stored_and_audiences_skip_the_contact_until_it_ends(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    later = make_contact(session, org, email="later@a.com", timezone="America/Denver", state="CO")
    make_contact(session, org, email="ok@a.com")
    back = make_contact(session, org, email="back@a.com", paused_until=clock.now() - timedelta(1))
    session.commit()
    until = clock.now() + timedelta(days=40)

    with uow:
        assert uow.reply_actions.pause_contact(
            org.id, later.id, until=until, reason="not now: in January", at=clock.now()
        )
        assert not uow.reply_actions.pause_contact(
            org.id, later.id, until=until, reason="not now: in January", at=clock.now()
        )
        assert uow.reply_actions.contact_zone(org.id, later.id) == ("America/Denver", "CO")
        uow.commit()

    session.expire_all()
    row = session.get(m.Contact, later.id)
    assert row is not None
    assert (row.paused_until, row.pause_reason) == (until, "not now: in January")
    with uow:
        size = uow.audience.size(org.id, AudienceCriteria(), now=clock.now(), sample_size=10)
        listed = [
            contact_id
            for batch in uow.audience.target_contact_ids(
                org.id, TargetSelection(contact_ids=[later.id, back.id]), now=clock.now()
            )
            for contact_id in batch
        ]
        after = uow.audience.size(org.id, AudienceCriteria(), now=until, sample_size=10)
    assert {member.email for member in size.sample} == {"ok@a.com", "back@a.com"}
    assert listed == [back.id]
    assert {member.email for member in after.sample} == {"ok@a.com", "back@a.com", "later@a.com"}


def test_names_of_a_campaign_and_a_client_are_read_within_the_organization(
    session: Session, org: m.Organization, uow: UnitOfWork
) -> None:
    lender = make_client(session, org, name="Pinnacle Lending")
    campaign = m.MarketingCampaign(org_id=org.id, name="Q4 win-back", goal="reactivation")
    session.add(campaign)
    session.commit()
    stranger = make_org(session).id
    session.commit()

    with uow:
        assert uow.reply_actions.campaign_name(org.id, campaign.id) == "Q4 win-back"
        assert uow.reply_actions.client_name(org.id, lender.id) == "Pinnacle Lending"
        assert uow.reply_actions.campaign_name(stranger, campaign.id) is None
        assert uow.reply_actions.client_name(stranger, lender.id) is None


def test_an_opted_out_address_gets_only_the_confirmation_of_its_opt_out(
    session: Session, org: m.Organization, uow: UnitOfWork, clock: FixedClock
) -> None:
    make_contact(session, org, email="gone@a.com", opted_out_at=clock.now())
    make_contact(session, org, email="bounced@a.com", email_status="bounced")
    cards = {
        action: m.Card(
            org_id=org.id,
            type="reply_to_email",
            state="approved",
            priority="low",
            title="Reply",
            action_payload={"reply_action": action},
        )
        for action in ("confirm_opt_out", "draft_reply")
    }
    session.add_all(cards.values())
    session.commit()
    confirmation, reply = cards["confirm_opt_out"].id, cards["draft_reply"].id

    with uow:
        outbox = uow.outbox
        assert outbox.recipient_block(org.id, "gone@a.com", card_id=confirmation) is None
        assert "opted out" in (outbox.recipient_block(org.id, "gone@a.com", card_id=reply) or "")
        assert "opted out" in (outbox.recipient_block(org.id, "gone@a.com") or "")
        assert "bounced" in (
            outbox.recipient_block(org.id, "bounced@a.com", card_id=confirmation) or ""
        )
