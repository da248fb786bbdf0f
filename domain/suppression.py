"""Opting out: the contact's choice wins.

An opt-out takes effect at once: every running enrollment of the contact stops and no
queued email to them leaves. Salesbot never undoes it on its own: repeating it records
nothing new (the first opt-out date and its history entry stay) and only stops enrollments
made since, and an import may opt a contact out but never back in (`storage/importer.py`).
The one way back is a person's: a rep who re-labels the inbound message whose
classification opted the contact out (`domain/corrections.py`) undoes that opt-out, never
one the contact made through the unsubscribe link or address.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from domain.clock import Clock
from domain.email_preferences import (
    EmailPreferences,
    EmailType,
    PreferencesChange,
    change_preferences_in,
    read_preferences_in,
)
from domain.engagement import EngagementEvent, record_engagement

if TYPE_CHECKING:
    from domain.ports import SuppressionUnitOfWork

# Why an enrollment stopped, as the job's report shows it.
OPTED_OUT: Final = "opted out"


@dataclass(frozen=True)
class ContactSummary:
    """What the unsubscribe page shows about a contact."""

    contact_id: int
    email: str
    org_name: str
    opted_out_at: datetime | None


@dataclass(frozen=True)
class OptOutResult:
    """What an opt-out changed."""

    contact_id: int
    email: str
    already_opted_out: bool
    stopped_enrollments: int
    cancelled_sends: int


class Suppression:
    """Who must not be emailed any more, and opting a contact out."""

    def __init__(self, uow: Callable[[], SuppressionUnitOfWork], *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def contact(self, org_id: int, contact_id: int) -> ContactSummary | None:
        """Return a contact's address and opt-out state, with its organization's name."""
        with self._uow() as uow:
            return uow.opt_outs.summary(org_id, contact_id)

    def opt_out(self, org_id: int, contact_id: int, *, source: str) -> OptOutResult | None:
        """Opt a contact out at once: every enrollment stops and no queued email to them
        leaves; `source` (one_click, unsubscribe_page) goes into the contact's history.

        Repeating it changes nothing more than stopping enrollments made since; the history
        records the first opt-out only. None if the contact does not exist (any more).
        """
        at = self._clock.now()
        with self._uow() as uow:
            result = opt_out_in(uow, org_id, contact_id, source=source, at=at)
            if result is None:
                return None
            uow.commit()
        return result

    def email_preferences(self, org_id: int, contact_id: int) -> EmailPreferences | None:
        """Return a contact's email-type preferences; None if the contact does not exist."""
        with self._uow() as uow:
            return read_preferences_in(uow, org_id, contact_id)

    def change_email_preferences(
        self,
        org_id: int,
        contact_id: int,
        changes: Mapping[EmailType, bool],
        *,
        source: str,
    ) -> PreferencesChange | None:
        """Turn types of email off or on for a contact (`domain/email_preferences.py`),
        recording each change with `source` in their history; None if the contact does
        not exist. The global opt-out is untouched: it stays "everything"."""
        at = self._clock.now()
        with self._uow() as uow:
            change = change_preferences_in(uow, org_id, contact_id, changes, source=source, at=at)
            if change is None:
                return None
            uow.commit()
        return change


def opt_out_in(
    uow: SuppressionUnitOfWork,
    org_id: int,
    contact_id: int,
    *,
    source: str,
    at: datetime,
    inbound_email_id: int | None = None,
) -> OptOutResult | None:
    """Opt a contact out inside the caller's unit of work (which commits); see `opt_out`.

    The one path of every opt-out: one-click unsubscribe, the unsubscribe page, and the
    inbound pipeline (a request to be removed, a complaint: `inbound_email_id` names it in
    the contact's engagement history) all come through here.
    """
    contact = uow.opt_outs.summary(org_id, contact_id)
    if contact is None:
        return None
    # Compare-and-set: of two opt-outs at once, one stamps the date and the history.
    first = uow.opt_outs.mark_opted_out(org_id, contact_id, at=at)
    if first:
        record_engagement(
            uow.engagement,
            org_id=org_id,
            contact_id=contact_id,
            event=EngagementEvent.OPTED_OUT,
            occurred_at=at,
            inbound_email_id=inbound_email_id,
            detail={"source": source},
        )
    stopped = uow.opt_outs.stop_enrollments(org_id, contact_id, reason=OPTED_OUT, at=at)
    cancelled = uow.opt_outs.cancel_queued_emails(
        org_id,
        contact_id,
        email=contact.email,
        reason=f"{contact.email} opted out; nothing was sent.",
    )
    return OptOutResult(
        contact_id=contact_id,
        email=contact.email,
        already_opted_out=not first,
        stopped_enrollments=stopped,
        cancelled_sends=cancelled,
    )
