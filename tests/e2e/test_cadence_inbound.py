"""The cadence tick after the inbound pipeline (issue 13): mail from the contacts goes into
the rep's Gmail stand-in, is pushed and read by the pipeline, and the tick then acts on it.
An out-of-office pauses Dana until the day after her return and the tick resumes her then;
a reply stops her for good; an order from her lender after the launch stops the cadence as
a win. Ray, who wrote nothing, gets his step either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.jobs import Cadence, JobParams, StepTemplate, TargetSelection
from storage import models as m
from tests.e2e.test_inbound_understanding import POSITIVE, Inbound, inbound_world, labelled
from tests.support.builders import make_order
from tests.support.gmail_app import DANA, RAY, REP_EMAIL
from tests.support.google import GoogleServer, make_email

pytestmark = pytest.mark.slow


@pytest.fixture
def inbound(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[Inbound]:
    with inbound_world(engine, session_factory, clock, google) as built:
        with session_factory() as session:
            job = session.get(m.Job, built.job_id)
            assert job is not None
            job.params = JobParams(
                target=TargetSelection(contact_ids=list(built.world.contact_ids.values())),
                templates=[
                    StepTemplate(subject=f"Step {n}", body=f"Hi {{{{ first_name }}}}, step {n}.")
                    for n in range(1, 5)
                ],
                cadence=Cadence(days=[0, 4, 10, 21]),
            ).model_dump(mode="json")
            job.started_at = built.clock.now() - timedelta(days=1)
            for row in session.scalars(select(m.Enrollment)):
                row.created_at = built.clock.now() - timedelta(days=1)
            session.commit()
        yield built


def tick(inbound: Inbound, at: datetime) -> dict[str, object]:
    inbound.clock._at = at
    return inbound.world.runtime.outreach.cadences.tick().as_dict()


def drafted_for(inbound: Inbound) -> set[int]:
    with inbound.sessions() as session:
        return set(
            session.scalars(
                select(m.JobTask.contact_id).where(
                    m.JobTask.job_id == inbound.job_id, m.JobTask.kind == "draft_email"
                )
            )
        )


def test_an_out_of_office_pauses_the_cadence_until_the_return_and_the_tick_resumes_it(
    inbound: Inbound,
) -> None:
    raw = make_email(
        sender=DANA,
        to=REP_EMAIL,
        subject="Automatic reply: Turn times",
        body="I am out of the office until Monday, December 14, 2026 with limited access "
        "to email. For urgent matters contact Ray.",
        in_reply_to=inbound.send_message_id,
    ).replace(b"Subject:", b"Auto-Submitted: auto-replied\nSubject:", 1)
    inbound.deliver(raw)
    assert inbound.enrollment(DANA).status == "paused"

    # Monday 11-30, step 2 due: Ray gets his; Dana, away, does not.
    report = tick(inbound, datetime(2026, 11, 30, 16, 0, tzinfo=UTC))
    assert report["ran"] == 1
    dana, ray = inbound.world.contact_ids[DANA], inbound.world.contact_ids[RAY]
    assert drafted_for(inbound) == {ray}
    assert tick(inbound, datetime(2026, 12, 14, 16, 0, tzinfo=UTC))["resumed"] == 0
    # The day after her return, inside her window: resumed, and her step runs.
    report = tick(inbound, datetime(2026, 12, 15, 16, 0, tzinfo=UTC))
    assert (report["resumed"], report["ran"]) == (1, 1)
    assert drafted_for(inbound) == {ray, dana}
    assert inbound.enrollment(DANA).status == "active"


def test_a_reply_stops_the_cadence_and_the_tick_skips_her(inbound: Inbound) -> None:
    inbound.deliver(inbound.reply(labelled(POSITIVE)["body"]))
    assert inbound.enrollment(DANA).stop_reason == "replied"

    report = tick(inbound, datetime(2026, 11, 30, 16, 0, tzinfo=UTC))
    assert report["ran"] == 1
    assert drafted_for(inbound) == {inbound.world.contact_ids[RAY]}


def test_an_order_from_the_lender_after_the_launch_is_a_win_that_stops_the_cadence(
    inbound: Inbound,
) -> None:
    with inbound.sessions() as session:
        contact = session.get(m.Contact, inbound.world.contact_ids[DANA])
        assert contact is not None
        assert contact.client_id is not None
        org = session.get(m.Organization, contact.org_id)
        client = session.get(m.Client, contact.client_id)
        assert org is not None
        assert client is not None
        make_order(session, org, client, ordered_at=inbound.clock.now() + timedelta(days=1))
        session.commit()

    report = tick(inbound, datetime(2026, 11, 30, 16, 0, tzinfo=UTC))
    # Dana and Ray work for the same lender: the order wins both back.
    assert (report["stopped"], report["wins"]) == (2, 2)
    assert inbound.enrollment(DANA).stop_reason == "re-engaged: new order"
    assert drafted_for(inbound) == set()
