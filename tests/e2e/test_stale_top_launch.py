"""`/campaign launch Win-back --stale-top 2` through signed Slack requests: refused while the
ranking was never computed, counted by a dry run, and a job that enrolls exactly the
reachable contacts of the two best-ranked stale clients, each client's best contact first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from storage import models as m
from tests.support.builders import make_client, make_contact, make_order
from tests.support.slack import ServedSlack
from tests.support.slack_app import REVIEW_CHANNEL, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock) as built:
        now = clock.now()
        with built.session_factory() as session:
            org = session.get(m.Organization, built.org_id)
            assert org is not None
            # Busy ordered twice a month for a year and a half, and stopped 100 days ago.
            busy = make_client(session, org, name="Busy Lending", domain="busy.example.com")
            for days in range(100, 640, 15):
                make_order(session, org, busy, ordered_at=now - timedelta(days=days))
            for n, role in enumerate(("LO", "PROC")):
                make_contact(session, org, busy, email=f"c{n}@busy.example.com", role_code=role)
            make_contact(
                session, org, busy, email="gone@busy.example.com", role_code="VM", opted_out_at=now
            )
            # Quiet ordered once, long ago, through an underwriter: last of the stale ones.
            quiet = make_client(session, org, name="Quiet CU", domain="quiet.example.com")
            make_order(session, org, quiet, ordered_at=now - timedelta(days=1000))
            make_contact(session, org, quiet, email="uw@quiet.example.com", role_code="UW")
            fresh = make_client(session, org, name="Fresh Bank", domain="fresh.example.com")
            make_order(session, org, fresh, ordered_at=now - timedelta(days=2))
            make_contact(session, org, fresh, email="new@fresh.example.com")
            never = make_client(session, org, name="Never LLC", domain="never.example.com")
            make_contact(session, org, never, email="nobody@never.example.com")
            session.add(
                m.MarketingCampaign(
                    org_id=org.id,
                    name="Win-back",
                    goal="reactivation",
                    status="draft",
                    channels=["email"],
                    email_template_ids=[built.template_id],
                    cadence_days=[0],
                    review_channel_id=REVIEW_CHANNEL,
                )
            )
            session.commit()
        yield built


def answer_to(world: SlackWorld, text: str) -> str:
    """Send `/campaign <text>` and return its answer (the newest response)."""
    before = len(world.responses())
    assert world.command(text).status_code == 200
    answers = wait_until(lambda: world.responses()[before:], what=f"answer to {text}")
    return str(answers[-1])


def recompute(world: SlackWorld) -> None:
    answer = world.client.post(
        "/api/marketing/stale-clients/recompute",
        headers={"Authorization": f"Bearer {world.api_token}"},
    )
    assert answer.status_code == 200


def ranked(world: SlackWorld) -> list[tuple[str, int | None]]:
    with world.session_factory() as session:
        rows = session.execute(
            select(m.Client.name, m.ClientRanking.best_contact_id)
            .join(m.Client, m.Client.id == m.ClientRanking.client_id)
            .where(m.ClientRanking.org_id == world.org_id)
            .order_by(m.ClientRanking.rank)
        )
        return [(name, best) for name, best in rows]


def emails_of(world: SlackWorld, ids: list[int]) -> list[str]:
    with world.session_factory() as session:
        by_id = dict(session.execute(select(m.Contact.id, m.Contact.email)).all())
    return [by_id[i] for i in ids]


def test_stale_top_before_the_first_ranking_says_how_to_compute_it(world: SlackWorld) -> None:
    answer = answer_to(world, "launch Win-back --stale-top 2")
    assert answer.startswith("⚠️ the stale-client ranking has not been computed")
    assert "run `/campaign launch … --stale-top N` after the daily ranking" in answer
    assert "`POST /api/marketing/stale-clients/recompute`" in answer
    assert answer_to(world, "launch Win-back --stale-top 0") == (
        "⚠️ 0 clients: `--stale-top` takes a number of clients from 1 to 1000, e.g. "
        "`/campaign launch Win-back --stale-top 50`"
    )
    assert answer_to(world, "status Win-back --stale-top 5").startswith(
        "`--stale-top` goes with `/campaign launch`."
    )
    with world.session_factory() as session:
        assert session.scalars(select(m.Job)).all() == []


def test_the_launch_enrolls_exactly_the_contacts_of_the_top_two_stale_clients(
    world: SlackWorld,
) -> None:
    recompute(world)
    ranking = ranked(world)
    assert [name for name, _ in ranking] == ["Busy Lending", "Pinnacle Lending", "Quiet CU"]
    busy_best, pinnacle_best = ranking[0][1], ranking[1][1]
    assert busy_best is not None
    assert pinnacle_best is not None
    expected = {
        "c0@busy.example.com",
        "c1@busy.example.com",
        "lo0@pinnacle.example.com",
        "lo1@pinnacle.example.com",
        "lo2@pinnacle.example.com",
    }

    preview = answer_to(world, "launch Win-back --stale-top 2 --dry-run")
    assert preview.splitlines()[1].startswith(
        "*Audience:* 5 contacts — the campaign's reachable contacts at the top 2 stale clients "
        "of the ranking computed <!date^"
    )
    assert "`/campaign launch Win-back --stale-top 2` launches it" in preview

    answer = answer_to(world, "launch Win-back --stale-top 2")
    assert answer.startswith(
        "🚀 Launched *Win-back*: 5 contacts in the audience at the top 2 stale clients of the "
        "ranking computed <!date^"
    )
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, 5)
    with world.session_factory() as session:
        enrolled = list(
            session.scalars(select(m.Enrollment.contact_id).where(m.Enrollment.job_id == job_id))
        )
        drafted = list(
            session.scalars(
                select(m.JobTask.contact_id)
                .where(m.JobTask.job_id == job_id)
                .order_by(m.JobTask.id)
            )
        )
    assert set(emails_of(world, enrolled)) == expected
    # The ranking's order: Busy's best contact first, then Busy's other, then Pinnacle's best.
    assert drafted[0] == busy_best
    assert set(emails_of(world, drafted[:2])) == {"c0@busy.example.com", "c1@busy.example.com"}
    assert drafted[2] == pinnacle_best
