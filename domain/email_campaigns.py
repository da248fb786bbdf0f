"""`email_campaigns`: the email side of a campaign, one row per cadence step (issue 16).

Each row holds a step's subject lines as sent, and its sent, delivered, bounced,
unsubscribed and replied counts over the campaign's whole life, with the first and last
send. `GET /api/marketing/campaigns/{id}/analytics` and this table must never disagree,
so the table is no second bookkeeping of the same events: it is a **materialized copy of
the analytics read model**. Its counts are computed by the very function the analytics
route calls (`storage/analytics.py`, `AnalyticsViews._measure`, grouped by step), over the
window the route uses when it is given none: the campaign's life, from its first
enrollment or creation to now. Whatever the analytics glossary says (domain/analytics.py:
delivered = sent − hard bounces, an opt-out from the link counts for the contact's last
send, replied = sends with a human reply), the table says too, by construction.

Why not counters bumped by every writer (the outbox, the bounce detector, the unsubscribe
page, reply linking, relabelling, contact deletion)? Each would have to repeat the
read model's attribution rules exactly, and one forgotten writer (a relabel that deletes
an event, a cascade) would leave the table wrong for good. Recomputing from one shared
function cannot drift from it.

When rows are written (every write replaces a campaign's rows in one transaction, so a
crash at any point leaves the previous rows or the new ones, never half):
- **on read**: both REST routes refresh the campaigns they answer with, in the request's
  own transaction, before reading the rows back. What the API shows from this table is
  therefore what the analytics route would answer at the same instant.
- **by a sweep** (jobs/email_campaigns.py) under the periodic lock, so the stored rows
  stay fresh for readers that read the table directly: a campaign is refreshed when it
  has sent email but no rows yet (the backfill of existing data on the first run), when
  one of its emails went out or a contact it emailed replied, bounced, opted out or
  complained since its rows were written (events of the last `REFRESH_EVERY`), and at
  least every `REFRESH_EVERY` otherwise (an event dated in the past). Cost grows with the
  campaigns that are due and the recent events, index probes for the others.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

from pydantic import BaseModel, Field

from domain import faults
from domain.analytics import Counts
from domain.clock import Clock
from domain.errors import InvalidInput
from domain.ports import Transaction

# The distinct subject lines a row keeps (the most used first): a personalised subject
# ("Turn times for Dana") would otherwise grow a row by one line per contact.
MAX_SUBJECTS: Final = 10
# Subjects are stored as sent, cut to this many characters (RFC 5322 allows 998).
MAX_SUBJECT_LENGTH: Final = 300
# The longest a campaign's stored rows go without a refresh by the sweep.
REFRESH_EVERY: Final = timedelta(hours=1)
# A send stamped this long before a refresh may still have been uncommitted at it (its
# time is taken before its transaction ends): its campaign is refreshed again.
SEND_GRACE: Final = timedelta(minutes=5)
# Campaigns one API page (or one sweep transaction) refreshes.
MAX_PAGE: Final = 100


class EmailCampaignStep(BaseModel):
    """The email side of one step of a campaign (`email_campaigns`), over its whole life."""

    org_id: int
    campaign_id: int
    step: int | None = Field(
        description="The cadence step (0 is the first email); null: sends outside a cadence."
    )
    subjects: list[str] = Field(
        default_factory=list,
        description=f"Distinct subject lines sent, the most used first (at most {MAX_SUBJECTS}).",
    )
    sent: int = 0
    delivered: int = Field(default=0, description="sent − bounced.")
    bounced: int = Field(default=0, description="Hard bounces.")
    unsubscribed: int = 0
    replied: int = Field(default=0, description="Sends with at least one human reply.")
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None
    updated_at: datetime = Field(description="When the row was computed.")


class StepSends(BaseModel):
    """What a step's sent emails were: their subjects (with how many used each) and times."""

    subjects: list[tuple[str, int]] = Field(default_factory=list)
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None


def bounded_subjects(used: Iterable[tuple[str, int]]) -> list[str]:
    """The distinct subjects to keep: the most used first (ties by text), at most
    MAX_SUBJECTS, each cut to MAX_SUBJECT_LENGTH characters."""
    counts: dict[str, int] = {}
    for subject, times in used:
        line = " ".join(subject.split())[:MAX_SUBJECT_LENGTH]
        counts[line] = counts.get(line, 0) + times
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [subject for subject, _ in ranked[:MAX_SUBJECTS]]


def email_campaign_rows(
    *,
    org_id: int,
    campaign_id: int,
    steps: Mapping[int | None, Counts],
    sends: Mapping[int | None, StepSends],
    at: datetime,
) -> list[EmailCampaignStep]:
    """The rows of one campaign from its analytics by step and its steps' sends, in step
    order (null last). A step is kept while it has a count or a send."""
    rows = []
    keys = set(steps) | set(sends)
    for step in sorted(keys, key=lambda s: (s is None, s or 0)):
        counts = steps.get(step, Counts())
        sent = sends.get(step, StepSends())
        row = EmailCampaignStep(
            org_id=org_id,
            campaign_id=campaign_id,
            step=step,
            subjects=bounded_subjects(sent.subjects),
            sent=counts.sent,
            delivered=counts.delivered,
            bounced=counts.bounced_hard,
            unsubscribed=counts.unsubscribed,
            replied=counts.replied,
            first_sent_at=sent.first_sent_at,
            last_sent_at=sent.last_sent_at,
            updated_at=at,
        )
        if row.sent or row.bounced or row.unsubscribed or row.replied or row.subjects:
            rows.append(row)
    return rows


def refresh_due(
    *, refreshed_at: datetime | None, last_sent_at: datetime | None, now: datetime
) -> bool:
    """Whether the sweep refreshes a campaign: never refreshed but has sent email, active
    since its rows were written (`last_sent_at`: its latest send or recent event, within
    SEND_GRACE before), or rows older than REFRESH_EVERY."""
    if last_sent_at is None and refreshed_at is None:
        return False
    if refreshed_at is None:
        return True
    if last_sent_at is not None and last_sent_at >= refreshed_at - SEND_GRACE:
        return True
    return now - refreshed_at >= REFRESH_EVERY


# --- ports -------------------------------------------------------------------------------


class EmailCampaignRepository(Protocol):
    """The `email_campaigns` rows and their refresh from the analytics read model."""

    def campaign_ids(
        self, org_id: int, *, campaign_id: int | None, limit: int, offset: int
    ) -> builtins.list[int]:
        """The organization's campaigns, by id (one: NotFound when not the org's)."""
        ...

    def refresh(self, org_id: int, campaign_ids: Sequence[int], now: datetime) -> int:
        """Rewrite these campaigns' rows from the analytics read model; return the rows."""
        ...

    def rows(self, org_id: int, campaign_ids: Sequence[int]) -> builtins.list[EmailCampaignStep]:
        """The stored rows of these campaigns, by campaign and step."""
        ...

    def freshness(
        self, org_id: int, *, events_since: datetime
    ) -> builtins.list[tuple[int, datetime | None, datetime | None]]:
        """Each campaign with when its rows were written and its last activity (or None):
        its latest send, or a later reply, bounce, opt-out or complaint of a contact it
        emailed, of those that happened since `events_since`."""
        ...


class EmailCampaignUnitOfWork(Transaction, Protocol):
    @property
    def email_campaigns(self) -> EmailCampaignRepository: ...


# --- use cases ---------------------------------------------------------------------------


def email_campaign_steps(
    org_id: int,
    *,
    campaign_id: int | None = None,
    limit: int = MAX_PAGE,
    offset: int = 0,
    uow: EmailCampaignUnitOfWork,
    clock: Clock,
) -> list[EmailCampaignStep]:
    """Refresh and return the rows of one campaign (NotFound when it is not the
    organization's) or of a page of the organization's campaigns, by campaign and step."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be from 1 to {MAX_PAGE}, not {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must be 0 or more, not {offset}")
    with uow:
        ids = uow.email_campaigns.campaign_ids(
            org_id, campaign_id=campaign_id, limit=limit, offset=offset
        )
        uow.email_campaigns.refresh(org_id, ids, clock.now())
        rows = uow.email_campaigns.rows(org_id, ids)
        uow.commit()
    return rows


def refresh_due_email_campaigns(
    org_id: int, *, units: Callable[[], EmailCampaignUnitOfWork], clock: Clock
) -> int:
    """Refresh the organization's campaigns that are due (`refresh_due`), MAX_PAGE of them
    per transaction; return how many rows were written."""
    now = clock.now()
    with units() as uow:
        due = [
            campaign_id
            for campaign_id, refreshed_at, last_sent_at in uow.email_campaigns.freshness(
                org_id, events_since=now - REFRESH_EVERY - SEND_GRACE
            )
            if refresh_due(refreshed_at=refreshed_at, last_sent_at=last_sent_at, now=now)
        ]
    written = 0
    for start in range(0, len(due), MAX_PAGE):
        with units() as uow:
            written += uow.email_campaigns.refresh(org_id, due[start : start + MAX_PAGE], now)
            # The rows are written, not committed: a crash here leaves the previous ones.
            faults.reach("email_campaigns.written")
            uow.commit()
    return written
