"""Migration 0014 on data written before it, on SQLite and PostgreSQL: enrollments that
planning made with a due time and step 0's tasks are put in flight (no due time), those
whose step 0 email went out move to step 1, due from that send, and existing sends get
their domain for the fatigue limits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import make_engine
from storage.migrate import upgrade
from tests.support.databases import create_postgres_database, drop_postgres_database, worker_id

SENT_AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_enrollments_and_sends_from_before_the_tick_are_brought_in_line(
    kind: str, tmp_path: Path
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'before-0014.db'}"
    else:
        url = create_postgres_database(f"salesbot_m14_{worker_id()}")
    try:
        upgrade(url, "0013")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO organizations (id, slug, name) VALUES (1, 'o', 'O')"))
            conn.execute(
                text(
                    "INSERT INTO contacts (id, org_id, email) VALUES "
                    "(1, 1, 'a@lender.example'), (2, 1, 'b@lender.example')"
                )
            )
            conn.execute(
                text("INSERT INTO jobs (id, org_id, name, status) VALUES (1, 1, 'J', 'running')")
            )
            conn.execute(
                text(
                    "INSERT INTO enrollments (id, org_id, job_id, contact_id, step, status, "
                    "next_due_at) VALUES (1, 1, 1, 1, 0, 'active', :at), "
                    "(2, 1, 1, 2, 0, 'active', :at)"
                ),
                {"at": SENT_AT},
            )
            conn.execute(
                text(
                    "INSERT INTO cards (id, org_id, job_id, enrollment_id, contact_id, type, "
                    "state, priority, title, executed_at) VALUES "
                    "(1, 1, 1, 1, 1, 'send_email', 'done', 'medium', 'Email a', :at), "
                    "(2, 1, 1, 2, 2, 'send_email', 'in_review', 'medium', 'Email b', NULL)"
                ),
                {"at": SENT_AT},
            )
            conn.execute(
                text(
                    "INSERT INTO email_sends (id, org_id, message_id, to_email, subject, status) "
                    "VALUES (1, 1, '<1@x>', 'A@Lender.Example', 's', 'sent')"
                )
            )
        engine.dispose()
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, step, next_due_at, last_step_at FROM enrollments ORDER BY id")
            ).all()
            domain = conn.scalar(text("SELECT to_domain FROM email_sends"))
        engine.dispose()
    finally:
        if kind == "postgresql":
            drop_postgres_database(url)

    sent, waiting = rows
    assert sent.step == 1
    assert _utc(sent.next_due_at) == SENT_AT
    assert _utc(sent.last_step_at) == SENT_AT
    assert (waiting.step, waiting.next_due_at, waiting.last_step_at) == (0, None, None)
    assert domain == "lender.example"


def _utc(value: object) -> datetime:
    if isinstance(value, str):  # SQLite through a plain text() query
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
