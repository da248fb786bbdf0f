"""A contact's email-type preferences over REST: read them, turn types off or on.

`PUT` changes only the types it names (types left out keep their value), records each
change in the contact's engagement history (source `api`), and stops the contact's
running cadences at once when it turns campaign emails or follow-ups off, as the
unsubscribe page does. The global opt-out is not changed here: it is "everything", and
only the contact (their unsubscribe link, their request) makes it.
"""

from __future__ import annotations

from fastapi import APIRouter

from domain.email_preferences import (
    EmailPreferencesUpdate,
    EmailPreferencesView,
    preferences_view,
)
from domain.errors import NotFound
from domain.fields import Id
from handlers.api.deps import IdentityDep, SuppressionDep

router = APIRouter(tags=["contacts"])


def _view(suppression: SuppressionDep, org_id: int, contact_id: int) -> EmailPreferencesView:
    summary = suppression.contact(org_id, contact_id)
    preferences = suppression.email_preferences(org_id, contact_id)
    if summary is None or preferences is None:
        raise NotFound(f"contact {contact_id} not found")
    return preferences_view(
        contact_id,
        summary.email,
        opted_out=summary.opted_out_at is not None,
        preferences=preferences,
    )


@router.get("/api/contacts/{contact_id}/email-preferences", response_model=EmailPreferencesView)
def get_email_preferences(
    contact_id: Id, who: IdentityDep, suppression: SuppressionDep
) -> EmailPreferencesView:
    """Return a contact's choice per type of email and what actually goes to them."""
    return _view(suppression, who.org_id, contact_id)


@router.put("/api/contacts/{contact_id}/email-preferences", response_model=EmailPreferencesView)
def put_email_preferences(
    contact_id: Id, body: EmailPreferencesUpdate, who: IdentityDep, suppression: SuppressionDep
) -> EmailPreferencesView:
    """Turn types of email off (false) or on (true) for a contact; types left out keep
    their value. `transactional` cannot be turned off. Unknown types answer 422."""
    changed = suppression.change_email_preferences(
        who.org_id, contact_id, body.changes(), source="api"
    )
    if changed is None:
        raise NotFound(f"contact {contact_id} not found")
    return _view(suppression, who.org_id, contact_id)
