"""The shared repository helpers of `storage.sql` on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from domain.errors import NotFound
from storage import models as m
from storage.sql import org_row, rowcount
from tests.support.builders import make_contact, make_org


def test_org_row_returns_the_organizations_row_and_names_another_organizations_as_not_found(
    session: Session,
) -> None:
    org, other = make_org(session, name="Lone Star Appraisals"), make_org(session, name="Rival")
    contact = make_contact(session, org)

    assert org_row(session, m.Contact, org.id, contact.id, what="contact") is contact
    with pytest.raises(NotFound, match=f"^contact {contact.id} not found$"):
        org_row(session, m.Contact, other.id, contact.id, what="contact")
    with pytest.raises(NotFound, match="^contact 999999 not found$"):
        org_row(session, m.Contact, org.id, 999999, what="contact")


def test_org_row_reloads_a_row_an_unsynchronized_update_changed_only_when_asked_to(
    session: Session,
) -> None:
    org = make_org(session)
    contact = make_contact(session, org, lead_score=50)
    # Not synchronized: the session still holds the row as it was before the UPDATE.
    session.execute(
        update(m.Contact)
        .where(m.Contact.id == contact.id)
        .values(lead_score=90)
        .execution_options(synchronize_session=False)
    )

    assert org_row(session, m.Contact, org.id, contact.id, what="contact").lead_score == 50
    reloaded = org_row(
        session, m.Contact, org.id, contact.id, what="contact", populate_existing=True
    )
    assert reloaded.lead_score == 90


def test_rowcount_counts_the_rows_an_update_matched(session: Session) -> None:
    org, other = make_org(session), make_org(session)
    for _ in range(3):
        make_contact(session, org)
    make_contact(session, other)

    result = session.execute(
        update(m.Contact).where(m.Contact.org_id == org.id).values(lead_score=10)
    )

    assert rowcount(result) == 3
