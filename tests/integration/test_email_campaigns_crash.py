"""The `email_campaigns` sweep killed as by `kill -9` (its fault point, `os._exit(137)`)
after it rewrote a chunk of rows and before it committed, on SQLite and PostgreSQL: the
process leaves no rows behind, and the next sweep writes the rows the analytics route
counts."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from domain.clock import FixedClock
from domain.faults import EXIT_CODE
from jobs.email_campaigns import EmailCampaignsRefresh
from storage import models as m
from storage.db import make_session_factory
from storage.uow import UnitOfWork
from tests.support.accounts import create_org
from tests.support.builders import make_client, make_contact
from tests.support.engagement_data import make_campaign, make_job, make_send

NOW = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)

_SWEEP = """
import sys
from datetime import datetime
from domain import faults
from domain.clock import FixedClock
from jobs.email_campaigns import EmailCampaignsRefresh
from storage.db import make_engine, make_session_factory
from storage.uow import UnitOfWork

faults.arm("email_campaigns.written")
sessions = make_session_factory(make_engine(sys.argv[1]))
clock = FixedClock(datetime.fromisoformat(sys.argv[2]))
EmailCampaignsRefresh(lambda: UnitOfWork(sessions), sessions, clock).run_once()
"""


def _seed(engine: Engine) -> tuple[int, int]:
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        org_row = session.get(m.Organization, org.id)
        assert org_row is not None
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        campaign = make_campaign(session, org.id, status="active")
        campaign.created_at = NOW - timedelta(days=10)
        job = make_job(session, org.id, campaign_id=campaign.id)
        for n in range(4):
            contact = make_contact(session, org_row, lender, email=f"lo{n}@pinnacle.example")
            make_send(
                session,
                org.id,
                contact,
                sent_at=NOW - timedelta(days=5, minutes=n),
                campaign_id=campaign.id,
                job_id=job.id,
                step=n % 2,
                subject=f"Turn times {n % 2}",
            )
        session.commit()
        return org.id, campaign.id


def test_a_sweep_killed_before_its_commit_leaves_nothing_and_the_next_one_converges(
    committed_engine: Engine,
) -> None:
    org_id, campaign_id = _seed(committed_engine)
    url = committed_engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    killed = subprocess.run(
        [sys.executable, "-c", _SWEEP, url, NOW.isoformat()],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert killed.returncode == EXIT_CODE, killed.stderr.decode()
    assert b"fault point email_campaigns.written" in killed.stderr
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(m.EmailCampaign)) == 0

    clock = FixedClock(NOW)
    assert EmailCampaignsRefresh(lambda: UnitOfWork(sessions), sessions, clock).run_once() == 2

    with UnitOfWork(sessions) as uow:
        rows = uow.email_campaigns.rows(org_id, [campaign_id])
        window = uow.analytics.campaign_lifetime_window(org_id, campaign_id, NOW)
        steps = uow.analytics.campaign_analytics(org_id, campaign_id, window).steps
    assert [(r.step, r.sent, r.delivered, r.subjects) for r in rows] == [
        (0, 2, 2, ["Turn times 0"]),
        (1, 2, 2, ["Turn times 1"]),
    ]
    assert [(s.step, s.sent, s.delivered) for s in steps] == [
        (r.step, r.sent, r.delivered) for r in rows
    ]
