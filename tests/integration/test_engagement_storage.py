"""Engagement scoring through the SQLAlchemy repository, on SQLite and PostgreSQL: the rows and
columns record_engagement writes, idempotence (also between two concurrent writers), and
the orders the CSV import finds after a reply."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.engagement import EngagementChange, EngagementEvent, record_engagement
from domain.imports import ImportKind
from storage import models as m
from storage.db import make_session_factory
from storage.importer import import_csv
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_org
from tests.support.engagement_data import make_inbound, make_send

E = EngagementEvent
T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
SessionFactory = Callable[[], Session]


class Crm:
    def __init__(self, session: Session) -> None:
        self.org = make_org(session)
        self.client = make_client(
            session,
            self.org,
            domain="pinnaclelending.com",
            last_ordered_at=T0 - timedelta(days=200),
        )
        self.dana = make_contact(session, self.org, self.client, email="dana@pinnaclelending.com")
        self.ray = make_contact(session, self.org, self.client, email="ray@pinnaclelending.com")


@pytest.fixture
def crm(session: Session) -> Crm:
    built = Crm(session)
    session.commit()
    return built


def record(
    uow: UnitOfWork, crm: Crm, event: EngagementEvent, at: datetime, **kw: object
) -> EngagementChange | None:
    contact_id = kw.pop("contact_id", crm.dana.id)
    with uow:
        change = record_engagement(
            uow.engagement,
            org_id=crm.org.id,
            contact_id=contact_id,  # type: ignore[arg-type]
            event=event,
            occurred_at=at,
            **kw,  # type: ignore[arg-type]
        )
        uow.commit()
    return change


def history(session: Session, contact_id: int) -> list[m.ContactEngagementEvent]:
    session.expire_all()
    return list(
        session.scalars(
            select(m.ContactEngagementEvent)
            .where(m.ContactEngagementEvent.contact_id == contact_id)
            .order_by(m.ContactEngagementEvent.occurred_at, m.ContactEngagementEvent.id)
        )
    )


def test_a_positive_reply_writes_its_row_the_contact_and_re_engages_the_stale_client(
    uow: UnitOfWork, session: Session, crm: Crm
) -> None:
    send = make_send(session, crm.org.id, crm.dana, sent_at=T0)
    reply = make_inbound(session, crm.org.id, contact_id=crm.dana.id, email_send_id=send.id)
    session.commit()

    record(uow, crm, E.SENT, T0, email_send_id=send.id)
    change = record(
        uow,
        crm,
        E.POSITIVE_REPLY,
        T0 + timedelta(days=1),
        sentiment="positive",
        email_send_id=send.id,
        inbound_email_id=reply.id,
        detail={"intent": "interested"},
    )

    assert change is not None
    assert change.re_engaged_client_id == crm.client.id
    rows = history(session, crm.dana.id)
    assert [
        (r.event, r.sentiment, r.score_delta, r.score_after, r.email_send_id, r.inbound_email_id)
        for r in rows
    ] == [
        ("sent", None, 0.0, 0.0, send.id, None),
        ("positive_reply", "positive", 25.0, 25.0, send.id, reply.id),
    ]
    assert rows[1].detail == {"intent": "interested"}
    dana = session.get(m.Contact, crm.dana.id)
    assert dana is not None
    assert (dana.engagement_score, dana.engagement_trend) == (25.0, "rising")
    assert dana.last_replied_at == T0 + timedelta(days=1)
    assert dana.last_positive_interaction_at == T0 + timedelta(days=1)
    client = session.get(m.Client, crm.client.id)
    assert client is not None
    assert client.re_engaged_at == T0 + timedelta(days=1)


def test_the_same_reply_recorded_twice_is_one_row(
    uow: UnitOfWork, session: Session, crm: Crm
) -> None:
    reply = make_inbound(session, crm.org.id, contact_id=crm.dana.id)
    session.commit()

    first = record(uow, crm, E.MEETING_REQUEST, T0, inbound_email_id=reply.id)
    second = record(uow, crm, E.MEETING_REQUEST, T0, inbound_email_id=reply.id)

    assert first is not None
    assert second is None
    assert [(r.event, r.score_after) for r in history(session, crm.dana.id)] == [
        ("meeting_request", 35.0)
    ]


def test_an_order_after_a_reply_is_keyed_by_the_order_id_in_its_detail(
    uow: UnitOfWork, session: Session, crm: Crm
) -> None:
    assert record(uow, crm, E.ORDER_AFTER_REPLY, T0, detail={"order_id": 7}) is not None
    assert record(uow, crm, E.ORDER_AFTER_REPLY, T0, detail={"order_id": 7}) is None
    assert record(uow, crm, E.ORDER_AFTER_REPLY, T0, detail={"order_id": 8}) is not None

    assert [r.detail for r in history(session, crm.dana.id)] == [
        {"order_id": 7},
        {"order_id": 8},
    ]


def test_a_late_event_rescores_the_rows_after_it(
    uow: UnitOfWork, session: Session, crm: Crm
) -> None:
    first, second = (make_inbound(session, crm.org.id, contact_id=crm.dana.id) for _ in "ab")
    session.commit()
    record(uow, crm, E.POSITIVE_REPLY, T0 + timedelta(days=30), inbound_email_id=second.id)

    late = record(uow, crm, E.MEETING_REQUEST, T0, inbound_email_id=first.id)

    assert late is not None
    assert late.rescored == 1
    rows = history(session, crm.dana.id)
    assert [(r.event, r.score_after) for r in rows] == [
        ("meeting_request", 35.0),
        ("positive_reply", pytest.approx(35 / 2 + 25)),
    ]
    dana = session.get(m.Contact, crm.dana.id)
    assert dana is not None
    assert dana.engagement_score == pytest.approx(42.5)
    assert dana.last_replied_at == T0 + timedelta(days=30)


def test_soft_bounces_are_counted_in_a_period(uow: UnitOfWork, session: Session, crm: Crm) -> None:
    bounces = [make_inbound(session, crm.org.id, contact_id=crm.dana.id) for _ in range(3)]
    session.commit()
    for days, bounce in zip([0, 20, 40], bounces, strict=True):
        record(uow, crm, E.SOFT_BOUNCE, T0 + timedelta(days=days), inbound_email_id=bounce.id)

    with uow:
        since = T0 + timedelta(days=40) - timedelta(days=30)
        assert uow.engagement.count_events(crm.org.id, crm.dana.id, E.SOFT_BOUNCE, since) == 2
        assert uow.engagement.count_events(crm.org.id, crm.dana.id, E.SOFT_BOUNCE, T0) == 3
        assert uow.engagement.count_events(crm.org.id, crm.ray.id, E.SOFT_BOUNCE, T0) == 0


def test_a_client_that_ordered_recently_is_not_re_engaged(
    uow: UnitOfWork, session: Session, crm: Crm
) -> None:
    client = session.get(m.Client, crm.client.id)
    assert client is not None
    client.last_ordered_at = T0 - timedelta(days=30)
    session.commit()

    change = record(uow, crm, E.POSITIVE_REPLY, T0, detail={"from": "test"})

    assert change is not None
    assert change.re_engaged_client_id is None
    session.expire_all()
    assert session.get(m.Client, crm.client.id).re_engaged_at is None  # type: ignore[union-attr]


def test_two_writers_of_the_same_reply_at_once_record_it_once(committed_engine: Engine) -> None:
    factory = make_session_factory(committed_engine)
    with factory() as session:
        crm = Crm(session)
        reply = make_inbound(session, crm.org.id, contact_id=crm.dana.id)
        session.commit()
        org_id, dana_id, reply_id = crm.org.id, crm.dana.id, reply.id
    first_locked = threading.Event()
    results: dict[str, EngagementChange | None] = {}

    def write(name: str, *, hold: bool) -> None:
        with UnitOfWork(factory) as uow:
            results[name] = record_engagement(
                uow.engagement,
                org_id=org_id,
                contact_id=dana_id,
                event=E.POSITIVE_REPLY,
                occurred_at=T0,
                inbound_email_id=reply_id,
            )
            if hold:
                first_locked.set()
                # The second writer starts now and must wait for this commit.
                threading.Event().wait(0.5)
            uow.commit()

    first = threading.Thread(target=write, args=("first",), kwargs={"hold": True})
    first.start()
    assert first_locked.wait(10)
    second = threading.Thread(target=write, args=("second",), kwargs={"hold": False})
    second.start()
    first.join(10)
    second.join(10)

    assert results["first"] is not None
    assert results["second"] is None
    with factory() as session:
        rows = history(session, dana_id)
    assert [(r.event, r.inbound_email_id) for r in rows] == [("positive_reply", reply_id)]


# --- orders after a reply, found by the CSV import -------------------------------------

ORDERS_HEADER = "order_number,client_domain,contact_email,status,ordered_date\n"


def import_orders(session_factory: SessionFactory, crm: Crm, text: str) -> None:
    report = import_csv(
        session_factory,
        org_id=crm.org.id,
        kind=ImportKind.ORDERS,
        lines=io.StringIO(ORDERS_HEADER + text, newline=""),
        now=T0 + timedelta(days=60),
    )
    assert report.rejected == 0


def test_an_imported_order_after_a_contacts_reply_is_in_that_contacts_history_once(
    uow: UnitOfWork, session: Session, session_factory: SessionFactory, crm: Crm
) -> None:
    old, recent = (make_inbound(session, crm.org.id, contact_id=crm.ray.id) for _ in "ab")
    dana_reply = make_inbound(session, crm.org.id, contact_id=crm.dana.id)
    session.commit()
    # Dana replied 10 days before order A-1; Ray 45 days before it, and after it.
    record(uow, crm, E.POSITIVE_REPLY, T0 - timedelta(days=10), inbound_email_id=dana_reply.id)
    record(
        uow, crm, E.REPLIED, T0 - timedelta(days=45), contact_id=crm.ray.id, inbound_email_id=old.id
    )
    record(
        uow,
        crm,
        E.REPLIED,
        T0 + timedelta(days=2),
        contact_id=crm.ray.id,
        inbound_email_id=recent.id,
    )

    orders = "A-1,pinnaclelending.com,,completed,2026-09-01\n"
    import_orders(session_factory, crm, orders)
    import_orders(session_factory, crm, orders)  # the same file again

    order_id = session.scalar(
        select(m.AppraisalOrder.id).where(m.AppraisalOrder.order_number == "A-1")
    )
    dana = [(r.event, r.occurred_at, r.detail) for r in history(session, crm.dana.id)]
    assert dana == [
        ("positive_reply", T0 - timedelta(days=10), {}),
        ("order_after_reply", datetime(2026, 9, 1, tzinfo=UTC), {"order_id": order_id}),
    ]
    assert [r.event for r in history(session, crm.ray.id)] == ["replied", "replied"]
    assert session.get(m.Contact, crm.dana.id).last_positive_interaction_at == datetime(  # type: ignore[union-attr]
        2026, 9, 1, tzinfo=UTC
    )


def test_an_imported_order_with_no_reply_before_it_records_nothing(
    session: Session, session_factory: SessionFactory, crm: Crm
) -> None:
    import_orders(session_factory, crm, "A-9,pinnaclelending.com,,completed,2026-09-01\n")

    assert history(session, crm.dana.id) == []
    assert history(session, crm.ray.id) == []
