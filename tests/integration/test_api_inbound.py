"""GET /api/inbound/emails and /healthz's inbound queue, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from domain.clock import FixedClock
from storage import models as m
from storage.db import make_session_factory
from tests.support.api import ApiWorld, make_api_world


def _email(org_id: int, n: int, **values: object) -> m.InboundEmail:
    return m.InboundEmail(
        org_id=org_id,
        gmail_message_id=f"g{n}",
        from_email=f"lo{n}@pinnacle.example",
        subject=f"Re: turn times {n}",
        reply_text="Yes, send me the fee schedule. " * 300,
        **values,
    )


def _world(engine: Engine, clock: FixedClock) -> ApiWorld:
    sessions = make_session_factory(engine)
    api = make_api_world(engine, sessions, clock, start_background=False)
    with sessions() as session:
        contact = m.Contact(org_id=api.org_id, email="lo1@pinnacle.example")
        session.add(contact)
        session.flush()
        session.add_all(
            [
                _email(
                    api.org_id,
                    1,
                    status="processed",
                    category="OPPORTUNITY",
                    sentiment="positive",
                    intent="info_request",
                    contact_id=contact.id,
                    received_at=clock.now() - timedelta(days=1),
                ),
                _email(
                    api.org_id,
                    2,
                    status="processed",
                    category="AMC_ORDER",
                    sentiment="neutral",
                    intent="none",
                    received_at=clock.now() - timedelta(days=10),
                ),
                _email(
                    api.org_id,
                    3,
                    status="failed",
                    pipeline_attempts=5,
                    error="RuntimeError: boom",
                    received_at=clock.now(),
                ),
                _email(
                    api.org_id, 4, status="parsed", created_at=clock.now() - timedelta(seconds=90)
                ),
                _email(api.other_org_id, 5, status="processed", category="OPPORTUNITY"),
            ]
        )
        session.commit()
    return api


def test_inbound_emails_are_filtered_and_scoped_to_the_organization(
    committed_engine: Engine, clock: FixedClock
) -> None:
    api = _world(committed_engine, clock)

    def ids(query: str) -> list[str]:
        answer = api.client.get(f"/api/inbound/emails{query}", headers=api.auth())
        assert answer.status_code == 200, answer.text
        return [e["from_email"].split("@")[0] for e in answer.json()]

    assert ids("") == ["lo4", "lo3", "lo2", "lo1"]
    assert ids("?category=OPPORTUNITY") == ["lo1"]
    assert ids("?sentiment=positive&intent=info_request") == ["lo1"]
    assert ids("?linked=true") == ["lo1"]
    assert ids("?linked=false&status=processed") == ["lo2"]
    assert ids("?status=failed") == ["lo3"]
    since = (clock.now() - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    assert ids(f"?status=processed&since={since}") == ["lo1"]
    assert ids("?limit=2&offset=1") == ["lo3", "lo2"]
    assert (
        api.client.get("/api/inbound/emails?category=NOPE", headers=api.auth()).status_code == 422
    )

    listed = api.client.get("/api/inbound/emails?status=failed", headers=api.auth()).json()
    detail = api.client.get(f"/api/inbound/emails/{listed[0]['id']}", headers=api.auth()).json()
    assert (detail["status"], detail["error"], detail["pipeline_attempts"]) == (
        "failed",
        "RuntimeError: boom",
        5,
    )
    assert detail["detection"] == {
        "ran": False,
        "kind": None,
        "bounce_severity": None,
        "failed_recipients": [],
        "out_of_office_until": None,
        "unsubscribe_via": None,
        "from_own_rep": False,
        "notes": [],
    }
    assert len(detail["reply_text"]) == 4_000
    assert detail["reply_text_truncated"] is True
    other = api.client.get("/api/inbound/emails", headers=api.auth(api.other_token)).json()
    assert [e["from_email"] for e in other] == ["lo5@pinnacle.example"]
    missing = api.client.get(f"/api/inbound/emails/{other[0]['id']}", headers=api.auth())
    assert missing.status_code == 404
    assert api.client.get("/api/inbound/emails").status_code == 401


def test_healthz_shows_the_inbound_queue_and_parked_messages(
    committed_engine: Engine, clock: FixedClock
) -> None:
    api = _world(committed_engine, clock)

    assert api.client.get("/healthz").json()["inbound"] == {
        "waiting": 1,
        "oldest_waiting_seconds": 90.0,
        "failed": 1,
        "to_reclassify": 0,
    }
