"""What the cadence tick reads of its contacts, on SQLite and PostgreSQL: the fatigue counts
(sends of the window, and emails still on their way whatever their slot, each counted
once) and the latest order of each client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from storage import models as m
from storage.cadence import CadenceRepo
from tests.support.builders import make_client, make_contact, make_order, make_org

NOW = datetime(2026, 12, 8, 18, 0, tzinfo=UTC)


def send(
    session: Session, org: m.Organization, to: str, status: str, sent_at: datetime | None
) -> None:
    session.add(
        m.EmailSend(
            org_id=org.id,
            message_id=f"<{status}-{to}-{sent_at}@x>",
            to_email=to,
            subject="s",
            status=status,
            sent_at=sent_at,
        )
    )
    session.flush()


def test_fatigue_counts_the_window_and_emails_on_their_way_once(session: Session) -> None:
    org = make_org(session)
    lender = make_client(session, org, domain="pinnacle.example")
    dana = make_contact(session, org, lender, email="dana@pinnacle.example")
    ray = make_contact(session, org, lender, email="ray@pinnacle.example")
    send(session, org, dana.email, "sent", NOW - timedelta(hours=2))  # week and day
    send(session, org, dana.email, "sent", NOW - timedelta(days=3))  # week only
    send(session, org, dana.email, "sent", NOW - timedelta(days=9))  # neither
    send(session, org, dana.email, "queued", None)  # on its way: both
    send(session, org, dana.email, "sending", NOW - timedelta(minutes=1))  # its slot: both
    send(session, org, dana.email, "queued", NOW - timedelta(days=8))  # an old slot: both
    send(session, org, dana.email, "failed", None)  # neither
    send(session, org, ray.email, "sent", NOW - timedelta(hours=5))  # Ray's, the domain's
    facts = CadenceRepo(session).contact_facts(org.id, [dana.id], now=NOW)
    assert facts[dana.id].emails_last_week == 5
    assert facts[dana.id].domain_emails_last_day == 5


def test_another_organizations_sends_do_not_count(session: Session) -> None:
    org, other = make_org(session), make_org(session)
    dana = make_contact(session, org, make_client(session, org), email="dana@pinnacle.example")
    send(session, other, dana.email, "sent", NOW - timedelta(hours=1))
    send(session, other, dana.email, "queued", None)
    facts = CadenceRepo(session).contact_facts(org.id, [dana.id], now=NOW)
    assert (facts[dana.id].emails_last_week, facts[dana.id].domain_emails_last_day) == (0, 0)


def test_each_contact_reads_its_clients_latest_order(session: Session) -> None:
    org = make_org(session)
    ordering, never = make_client(session, org), make_client(session, org)
    for days in (400, 30, 90):
        make_order(session, org, ordering, ordered_at=NOW - timedelta(days=days))
    dana = make_contact(session, org, ordering)
    ray = make_contact(session, org, never)
    ann = make_contact(session, org, None)
    facts = CadenceRepo(session).contact_facts(org.id, [dana.id, ray.id, ann.id], now=NOW)
    assert facts[dana.id].client_last_order_at == NOW - timedelta(days=30)
    assert facts[ray.id].client_last_order_at is None
    assert facts[ann.id].client_last_order_at is None
