"""The cadence tick's report counts alike reasons together, without their times."""

from __future__ import annotations

import pytest

from domain.outreach.cadences import reason_key


@pytest.mark.parametrize(
    ("reason", "key"),
    [
        ("step 3 is due Tue 2026-12-15 10:00 CST", "step 3 is due"),
        (
            "outside business hours in America/Chicago; next window Mon 2026-12-07 09:00 CST",
            "outside business hours in America/Chicago; next window",
        ),
        (
            "fatigue: 3 emails to a@b.example in 7 days (limit 3); retry Mon 2026-12-07 09:00 CST",
            "fatigue",
        ),
        ("campaign ended (paused)", "campaign ended"),
        ("job cancelled", "job cancelled"),
        (None, "unknown"),
    ],
)
def test_a_reason_is_counted_without_its_local_time(reason: str | None, key: str) -> None:
    assert reason_key(reason) == key


def test_two_contacts_due_at_different_hours_share_one_reason() -> None:
    assert reason_key("step 3 is due Tue 2026-12-15 10:00 CST") == reason_key(
        "step 3 is due Mon 2027-01-04 09:00 CST"
    )
