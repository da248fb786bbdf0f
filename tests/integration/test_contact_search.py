"""Finding a contact for `/engagement` (ContactContextRepo.find_contacts) and the totals of
a timeline (EngagementViews.event_counts), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from domain.engagement import EngagementEvent, record_engagement
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_org
from tests.support.engagement_data import make_inbound, make_send

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def names(uow: UnitOfWork, org_id: int, query: str, limit: int = 10) -> list[str]:
    with uow:
        return [
            f"{c.name} <{c.email}>" for c in uow.contexts.find_contacts(org_id, query, limit=limit)
        ]


def test_an_exact_address_finds_its_contact_alone_with_its_client_and_scores(
    uow: UnitOfWork, session: Session
) -> None:
    org = make_org(session)
    client = make_client(session, org, name="Pinnacle Lending")
    maria = make_contact(
        session,
        org,
        client,
        email="maria@pinnacle.example.com",
        first_name="Maria",
        last_name="Lopez",
        lead_score=72,
        engagement_score=41.5,
    )
    make_contact(session, org, client, email="maria@pinnacle.example.co", first_name="Maria")
    session.commit()

    with uow:
        found = uow.contexts.find_contacts(org.id, " Maria@Pinnacle.Example.com ", limit=10)

    assert [
        (c.contact_id, c.name, c.client_name, c.lead_score, c.engagement_score) for c in found
    ] == [(maria.id, "Maria Lopez", "Pinnacle Lending", 72, 41.5)]


def test_a_prefix_of_a_first_last_or_full_name_or_address_matches_in_name_order(
    uow: UnitOfWork, session: Session
) -> None:
    org = make_org(session)
    for first, last, email in (
        ("Maria", "Lozano", "ml@a.example.com"),
        ("Maria", "Lopez", "mlopez@a.example.com"),
        ("Ray", "Marino", "ray@a.example.com"),
        (None, None, "marketing@a.example.com"),
        ("Dana", "Whitfield", "dana@a.example.com"),
    ):
        make_contact(session, org, email=email, first_name=first, last_name=last)
    session.commit()

    assert names(uow, org.id, "mar") == [
        "marketing@a.example.com <marketing@a.example.com>",  # no name: sorts first
        "Maria Lopez <mlopez@a.example.com>",
        "Maria Lozano <ml@a.example.com>",
        "Ray Marino <ray@a.example.com>",
    ]
    assert names(uow, org.id, "MARIA  LO") == [
        "Maria Lopez <mlopez@a.example.com>",
        "Maria Lozano <ml@a.example.com>",
    ]
    assert names(uow, org.id, "mar", limit=2) == [
        "marketing@a.example.com <marketing@a.example.com>",
        "Maria Lopez <mlopez@a.example.com>",
    ]
    assert names(uow, org.id, "whitfield") == ["Dana Whitfield <dana@a.example.com>"]
    assert names(uow, org.id, "%") == names(uow, org.id, "m_ria") == []


def test_another_organizations_contacts_are_not_found(uow: UnitOfWork, session: Session) -> None:
    ours, theirs = make_org(session), make_org(session)
    make_contact(session, theirs, email="maria@pinnacle.example.com", first_name="Maria")
    session.commit()

    assert names(uow, ours.id, "maria@pinnacle.example.com") == []
    assert names(uow, ours.id, "maria") == []


def test_event_counts_total_a_contacts_events_by_kind_and_sentiment(
    uow: UnitOfWork, session: Session
) -> None:
    org = make_org(session)
    dana = make_contact(session, org, email="dana@a.example.com")
    ray = make_contact(session, org, email="ray@a.example.com")
    sends = [make_send(session, org.id, dana, sent_at=T0 + timedelta(days=n)) for n in range(3)]
    replies = [
        make_inbound(session, org.id, contact_id=dana.id, email_send_id=sends[n].id)
        for n in range(2)
    ]
    other = make_send(session, org.id, ray, sent_at=T0)
    session.commit()
    E = EngagementEvent
    recorded = [(dana.id, E.SENT, {"email_send_id": s.id}) for s in sends] + [
        (dana.id, E.POSITIVE_REPLY, {"inbound_email_id": replies[0].id}),
        (dana.id, E.REPLIED, {"inbound_email_id": replies[1].id, "sentiment": "negative"}),
        (ray.id, E.SENT, {"email_send_id": other.id}),
    ]
    with uow:
        for n, (contact_id, event, refs) in enumerate(recorded):
            record_engagement(
                uow.engagement,
                org_id=org.id,
                contact_id=contact_id,
                event=event,
                occurred_at=T0 + timedelta(days=n),
                **refs,  # type: ignore[arg-type]
            )
        uow.commit()

    with uow:
        counts = uow.engagement_views.event_counts(org.id, dana.id)

    assert counts == {
        (E.SENT, None): 3,
        (E.POSITIVE_REPLY, "positive"): 1,
        (E.REPLIED, "negative"): 1,
    }
