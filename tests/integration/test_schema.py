"""The schema as migrations build it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage import models as m
from storage.migrate import alembic_config, current_heads, upgrade
from tests.support.builders import make_contact, make_org
from tests.support.databases import drop_postgres_database, migrated_engine


def test_migrations_build_every_table_of_the_models(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(m.Base.metadata.tables) <= tables
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version in current_heads()


def test_every_tenant_table_has_an_org_id(engine: Engine) -> None:
    # periodic_leases: a process-wide lease per periodic job; worker_heartbeats: the
    # processes running the background work. Neither holds a tenant's data.
    untenanted = {"organizations", "alembic_version", "periodic_leases", "worker_heartbeats"}
    for table in m.Base.metadata.tables.values():
        if table.name in untenanted:
            continue
        assert "org_id" in table.c, table.name


def test_timestamps_come_back_timezone_aware_utc(session: Session) -> None:
    org = make_org(session)
    at = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    contact = make_contact(session, org, last_contacted_at=at)
    session.expire_all()
    stored = session.get(m.Contact, contact.id)
    assert stored is not None
    assert stored.last_contacted_at == at
    assert stored.last_contacted_at.tzinfo == UTC
    assert stored.created_at.tzinfo == UTC


def test_naive_timestamps_are_refused(session: Session) -> None:
    org = make_org(session)
    with pytest.raises(Exception, match="naive datetime"):
        make_contact(session, org, last_contacted_at=datetime(2026, 5, 1, 12, 0))


def test_contact_email_is_unique_within_an_org_but_not_across(session: Session) -> None:
    first, second = make_org(session), make_org(session)
    make_contact(session, first, email="dana@pinnacle.com")
    make_contact(session, second, email="dana@pinnacle.com")
    with pytest.raises(IntegrityError):
        make_contact(session, first, email="dana@pinnacle.com")


def test_json_columns_round_trip(session: Session) -> None:
    org = make_org(session)
    contact = make_contact(
        session, org, tags=["amc", "texas"], email_preferences={"newsletter": False}
    )
    session.expire_all()
    stored = session.scalars(select(m.Contact).where(m.Contact.id == contact.id)).one()
    assert stored.tags == ["amc", "texas"]
    assert stored.email_preferences == {"newsletter": False}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0007_down_and_up_keeps_jobs_and_their_tasks(kind: str, tmp_path: Path) -> None:
    """On SQLite a rebuilt `jobs` table would cascade its drop to tasks and enrollments."""
    engine = migrated_engine(kind, tmp_path, suffix="_0007")
    url = engine.url.render_as_string(hide_password=False)
    try:
        with Session(engine) as session:
            org = make_org(session)
            job = m.Job(org_id=org.id, name="launch", params={}, request_key="slack:1.2.3")
            session.add(job)
            session.flush()
            session.add(m.JobTask(org_id=org.id, job_id=job.id, kind="draft_email", input={}))
            session.commit()

        command.downgrade(alembic_config(url), "0006")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM job_tasks").scalar() == 1
            assert "request_key" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
        upgrade(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM job_tasks").scalar() == 1
            assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 1
    finally:
        engine.dispose()
        if kind == "postgresql":
            drop_postgres_database(url)
