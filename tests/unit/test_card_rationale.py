"""The line a card shows under "Why": the contact's ordering history, in plain words."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.contacts import ContactContext
from domain.outreach.drafting import rationale_for

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

DANA = ContactContext(
    contact_id=1,
    email="dana@pinnaclelending.com",
    first_name="Dana",
    last_name="Whitfield",
    title="Loan Officer",
    role_code="LO",
    state="TX",
    client_id=1,
    company_name="Pinnacle Lending",
    company_domain="pinnaclelending.com",
    last_order_at=NOW - timedelta(days=127),
    orders_last_year=0,
    orders_year_before_last=1,
    last_property_address=None,
    last_contacted_at=None,
    last_replied_at=None,
    opted_out=False,
    email_status="valid",
)


@pytest.mark.parametrize(
    ("days", "orders", "line"),
    [
        (127, 1, "No orders in 127 days (1 order in the year before)."),
        (127, 0, "No orders in 127 days (no orders in the year before)."),
        (1, 3, "No orders in 1 day (3 orders in the year before)."),
        (143, 72, "No orders in 143 days (was 6/month)."),
    ],
)
def test_the_reason_counts_orders_and_days_in_plain_words(
    days: int, orders: int, line: str
) -> None:
    contact = replace(
        DANA, last_order_at=NOW - timedelta(days=days), orders_year_before_last=orders
    )
    assert rationale_for(contact, now=NOW) == line
