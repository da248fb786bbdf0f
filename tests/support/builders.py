"""Plain builders of test data: they add rows to the session given, and only flush."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from storage import models as m

_seq = itertools.count(1)


def make_org(session: Session, **overrides: Any) -> m.Organization:
    """Add an organization."""
    n = next(_seq)
    row = m.Organization(**{"slug": f"org-{n}", "name": f"Org {n}", **overrides})
    session.add(row)
    session.flush()
    return row


def make_client(session: Session, org: m.Organization, **overrides: Any) -> m.Client:
    """Add a client (lender or AMC)."""
    n = next(_seq)
    values: dict[str, Any] = {"name": f"Lender {n}", "domain": f"lender{n}.example.com", "tags": []}
    values.update(overrides)
    row = m.Client(org_id=org.id, **values)
    session.add(row)
    session.flush()
    return row


def make_contact(
    session: Session, org: m.Organization, client: m.Client | None = None, **overrides: Any
) -> m.Contact:
    """Add a contact."""
    n = next(_seq)
    values: dict[str, Any] = {
        "email": f"contact{n}@example.com",
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "role_code": "LO",
        "role_category": "loan_origination",
        "state": "TX",
        "tags": [],
        "lead_score": 50,
    }
    values.update(overrides)
    row = m.Contact(org_id=org.id, client_id=client.id if client else None, **values)
    session.add(row)
    session.flush()
    return row


def make_order(
    session: Session,
    org: m.Organization,
    client: m.Client,
    *,
    ordered_at: datetime,
    **overrides: Any,
) -> m.AppraisalOrder:
    """Add an appraisal order and keep the client's last-ordered date in step."""
    n = next(_seq)
    row = m.AppraisalOrder(
        org_id=org.id,
        client_id=client.id,
        order_number=f"ORD-{n}",
        ordered_at=ordered_at,
        **overrides,
    )
    session.add(row)
    if client.last_ordered_at is None or client.last_ordered_at < ordered_at:
        client.last_ordered_at = ordered_at
    session.flush()
    return row
