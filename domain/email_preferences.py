"""Email-type preferences: a contact chooses, per type of email, whether to receive it.

The original system's email templates come in five categories (newsletter, campaign,
follow_up, announcement, transactional) and its contacts keep "email type preferences"
beside the opt-out. Salesbot keeps the same model in `contacts.email_preferences`, a JSON
object of `{type: bool}`:

- a type that is missing is subscribed: a contact receives every type until they turn
  one off (that is what the contact agreed to by being a contact at all);
- only the JSON value `false` turns a type off: the SQL of the audience reads the column
  the same way (`storage/audience.py`), so the two never disagree;
- `transactional` cannot be turned off: it is our answer to an email the contact wrote
  to us, which they asked for by writing;
- the global opt-out (`contacts.opted_out_at`, `domain/suppression.py`) is "everything"
  and stays above all of this: an opted-out contact gets nothing whatever their
  preferences say.

What Salesbot sends maps to a type by `email_type_of_step`: a campaign's first step is a
`campaign` email, its later cadence steps are `follow_up` emails, and an answer to the
contact's own email is `transactional`. `newsletter` and `announcement` are for the
senders to come (newsletters, one-off announcements); their unsubscribe links work today.

This module is pure: the use cases that read and write a contact's preferences take the
suppression unit of work (`SuppressionUnitOfWork`), as opting out does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from domain.engagement import EngagementEvent, record_engagement
from domain.errors import InvalidInput

if TYPE_CHECKING:
    from domain.ports import SuppressionUnitOfWork


class EmailType(StrEnum):
    """The types of email a contact chooses between (the seed's template categories)."""

    NEWSLETTER = "newsletter"
    CAMPAIGN = "campaign"
    FOLLOW_UP = "follow_up"
    ANNOUNCEMENT = "announcement"
    TRANSACTIONAL = "transactional"


#: How each type is named to the contact ("Unsubscribe from follow-up emails only").
LABELS: Final[Mapping[EmailType, str]] = {
    EmailType.NEWSLETTER: "newsletters",
    EmailType.CAMPAIGN: "campaign emails",
    EmailType.FOLLOW_UP: "follow-up emails",
    EmailType.ANNOUNCEMENT: "announcements",
    EmailType.TRANSACTIONAL: "answers to your own emails",
}

#: The types a contact may turn off (all but transactional).
OPTIONAL_TYPES: Final = tuple(t for t in EmailType if t != EmailType.TRANSACTIONAL)

#: The valid type names, as error messages list them.
VALID_TYPES: Final = ", ".join(t.value for t in EmailType)

#: Why the cadence stopped for a contact who turned a type off (enrollments' stop_reason,
#: at most 64 characters).
UNSUBSCRIBED_FROM_FOLLOW_UPS: Final = "unsubscribed from follow-ups"
UNSUBSCRIBED_FROM_CAMPAIGNS: Final = "unsubscribed from campaign emails"


def stop_reason(email_type: EmailType) -> str:
    """The stop reason of an enrollment whose next email is of a type the contact turned off."""
    if email_type == EmailType.FOLLOW_UP:
        return UNSUBSCRIBED_FROM_FOLLOW_UPS
    if email_type == EmailType.CAMPAIGN:
        return UNSUBSCRIBED_FROM_CAMPAIGNS
    return f"unsubscribed from {LABELS[email_type]}"


def email_type_of_step(step: int | None, *, answers_contact: bool = False) -> EmailType:
    """The type of an email Salesbot sends: an answer to the contact's own email is
    transactional; a campaign's first step (0, or no cadence step: a one-off campaign
    email) is a campaign email; every later cadence step is a follow-up."""
    if answers_contact:
        return EmailType.TRANSACTIONAL
    if step is None or step <= 0:
        return EmailType.CAMPAIGN
    return EmailType.FOLLOW_UP


def parse_email_type(value: object, *, field: str = "email_type") -> EmailType:
    """Return the type named by `value`; raise InvalidInput naming the valid types."""
    if isinstance(value, str):
        try:
            return EmailType(value.strip().lower().replace("-", "_").replace(" ", "_"))
        except ValueError:
            pass
    raise InvalidInput(f"unknown email type {value!r}: use one of {VALID_TYPES}", field=field)


def email_type_or_none(value: object) -> EmailType | None:
    """Return the type `value` names, or None (an old token, a row written before types)."""
    try:
        return parse_email_type(value)
    except InvalidInput:
        return None


@dataclass(frozen=True)
class EmailPreferences:
    """A contact's choices: the types they turned off (every other type is subscribed)."""

    turned_off: frozenset[EmailType] = frozenset()

    def __post_init__(self) -> None:
        if EmailType.TRANSACTIONAL in self.turned_off:
            raise InvalidInput(_TRANSACTIONAL_ALWAYS)

    @classmethod
    def from_stored(cls, stored: Mapping[str, object] | None) -> EmailPreferences:
        """Read `contacts.email_preferences` leniently: only a known type set to `false` is
        off; unknown keys and other values (never written by Salesbot) are ignored."""
        if not stored:
            return cls()
        off = {
            EmailType(key)
            for key, value in stored.items()
            if value is False and key in _OPTIONAL_NAMES
        }
        return cls(frozenset(off))

    def allows(self, email_type: EmailType) -> bool:
        """True when the contact receives emails of this type (transactional: always).

        A follow-up belongs to a campaign: a contact who turned campaign emails off gets
        no follow-ups either (else one click on a campaign's first email would leave its
        follow-ups coming); one who turned only follow-ups off still gets first emails."""
        if email_type == EmailType.TRANSACTIONAL:
            return True
        if email_type == EmailType.FOLLOW_UP and EmailType.CAMPAIGN in self.turned_off:
            return False
        return email_type not in self.turned_off

    def subscriptions(self) -> dict[EmailType, bool]:
        """Every type with whether the contact receives it, in the types' order."""
        return {t: self.allows(t) for t in EmailType}

    def with_changes(self, changes: Mapping[EmailType, bool]) -> EmailPreferences:
        """Return the preferences after these changes (type → subscribed)."""
        off = set(self.turned_off)
        for email_type, subscribed in changes.items():
            if email_type == EmailType.TRANSACTIONAL:
                if not subscribed:
                    raise InvalidInput(_TRANSACTIONAL_ALWAYS, field=email_type.value)
                continue
            if subscribed:
                off.discard(email_type)
            else:
                off.add(email_type)
        return EmailPreferences(frozenset(off))

    def changed_from(self, before: EmailPreferences) -> dict[EmailType, bool]:
        """The types whose own choice differs from `before`, with their new value."""
        return {
            t: t not in self.turned_off
            for t in OPTIONAL_TYPES
            if (t in self.turned_off) != (t in before.turned_off)
        }

    def stored(self) -> dict[str, bool]:
        """The JSON to store: every optional type with its value, so a reader sees the
        contact's choices whole (missing keys read as subscribed anyway)."""
        return {t.value: t not in self.turned_off for t in OPTIONAL_TYPES}


_OPTIONAL_NAMES: Final = frozenset(t.value for t in OPTIONAL_TYPES)
_TRANSACTIONAL_ALWAYS: Final = (
    "transactional emails cannot be turned off: they answer emails the contact wrote to us"
    " (to stop everything, opt the contact out)"
)


def parse_changes(data: object) -> dict[EmailType, bool]:
    """Validate a `{type: bool}` object from the outside (REST); raise InvalidInput naming
    the valid types for an unknown type, and the type for a value that is not a boolean."""
    if not isinstance(data, Mapping):
        raise InvalidInput(
            f"email preferences must be an object of type → true/false, with types among"
            f" {VALID_TYPES}"
        )
    changes: dict[EmailType, bool] = {}
    for key, value in data.items():
        email_type = parse_email_type(key, field=str(key))
        if not isinstance(value, bool):
            raise InvalidInput(
                f"{email_type.value} must be true or false, not {value!r}", field=str(key)
            )
        if email_type == EmailType.TRANSACTIONAL and not value:
            raise InvalidInput(_TRANSACTIONAL_ALWAYS, field=str(key))
        changes[email_type] = value
    return changes


_ON: Final = frozenset({"on", "yes", "y", "true", "t", "1", "subscribed", "in"})
_OFF: Final = frozenset({"off", "no", "n", "false", "f", "0", "unsubscribed", "out"})
_CELL_SEPARATORS: Final = re.compile(r"[;,]")


def parse_preference_cell(raw: str) -> dict[EmailType, bool]:
    """Read a CSV cell such as `newsletter:off;campaign:on`; raise ValueError with what is
    wrong (each pair is `type:on|off`; yes/no, true/false and 1/0 are understood)."""
    changes: dict[EmailType, bool] = {}
    for part in _CELL_SEPARATORS.split(raw):
        pair = part.strip()
        if not pair:
            continue
        name, sep, value = pair.partition(":")
        if not sep:
            name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"{pair!r} is not type:on or type:off")
        try:
            email_type = parse_email_type(name)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        flag = value.strip().lower()
        if flag in _ON:
            subscribed = True
        elif flag in _OFF:
            subscribed = False
        else:
            raise ValueError(f"{email_type.value}:{value.strip()!r} is neither on nor off")
        if email_type == EmailType.TRANSACTIONAL and not subscribed:
            raise ValueError("transactional cannot be turned off")
        if changes.get(email_type, subscribed) != subscribed:
            raise ValueError(f"{email_type.value} is both on and off")
        changes[email_type] = subscribed
    return changes


def refusal(email: str, email_type: EmailType, preferences: EmailPreferences) -> str | None:
    """Why an email of this type must not go to the contact (a sentence for the card), or
    None when their preferences allow it."""
    if preferences.allows(email_type):
        return None
    return f"{email} unsubscribed from {LABELS[email_type]}; nothing was sent."


class UnsubscribeLinks(Protocol):
    """Makes the signed unsubscribe link of an email to a contact; the link carries the
    email's type when it is known, so that the page and one-click act on that type."""

    def __call__(self, org_id: int, contact_id: int, email_type: EmailType | None = None) -> str:
        """Return the unsubscribe URL."""
        ...


# --- use cases (inside the caller's unit of work) -------------------------------------


@dataclass(frozen=True)
class PreferencesChange:
    """What a change of preferences did."""

    contact_id: int
    email: str
    preferences: EmailPreferences
    changed: Mapping[EmailType, bool]
    stopped_enrollments: int = 0


def read_preferences_in(
    uow: SuppressionUnitOfWork, org_id: int, contact_id: int
) -> EmailPreferences | None:
    """Return a contact's preferences; None if the contact does not exist."""
    stored = uow.opt_outs.email_preferences(org_id, contact_id, lock=False)
    return None if stored is None else EmailPreferences.from_stored(stored)


def change_preferences_in(
    uow: SuppressionUnitOfWork,
    org_id: int,
    contact_id: int,
    changes: Mapping[EmailType, bool],
    *,
    source: str,
    at: datetime,
) -> PreferencesChange | None:
    """Apply `changes` (type → subscribed) to a contact's preferences in the caller's unit
    of work (which commits), and record each type that changed in the contact's engagement
    history with when and how (`source`: unsubscribe_page, one_click, api, import).

    The contact's row is locked while its preferences are read and written, so two changes
    at once both land. None if the contact does not exist; a change that changes nothing
    records nothing.
    """
    stored = uow.opt_outs.email_preferences(org_id, contact_id, lock=True)
    summary = uow.opt_outs.summary(org_id, contact_id)
    if stored is None or summary is None:
        return None
    before = EmailPreferences.from_stored(stored)
    after = before.with_changes(changes)
    changed = after.changed_from(before)
    stopped = 0
    if changed:
        uow.opt_outs.save_email_preferences(org_id, contact_id, after.stored(), at=at)
        # The contact's choice wins at once, as an opt-out does: their running cadences
        # stop now (the tick and the send-time check would stop them anyway, later).
        if before.allows(EmailType.CAMPAIGN) and not after.allows(EmailType.CAMPAIGN):
            stopped = uow.opt_outs.stop_enrollments(
                org_id, contact_id, reason=UNSUBSCRIBED_FROM_CAMPAIGNS, at=at
            )
        elif before.allows(EmailType.FOLLOW_UP) and not after.allows(EmailType.FOLLOW_UP):
            # Only cadences past their first email: what remains of them is follow-ups.
            stopped = uow.opt_outs.stop_enrollments(
                org_id, contact_id, reason=UNSUBSCRIBED_FROM_FOLLOW_UPS, at=at, min_step=1
            )
        for email_type, subscribed in changed.items():
            record_engagement(
                uow.engagement,
                org_id=org_id,
                contact_id=contact_id,
                event=EngagementEvent.EMAIL_PREFERENCE,
                occurred_at=at,
                detail={"email_type": email_type.value, "subscribed": subscribed, "source": source},
            )
    return PreferencesChange(
        contact_id=contact_id,
        email=summary.email,
        preferences=after,
        changed=changed,
        stopped_enrollments=stopped,
    )


# --- what the REST API reads and writes --------------------------------------------------


class EmailTypeChoices(BaseModel):
    """One flag per type of email."""

    newsletter: bool
    campaign: bool
    follow_up: bool
    announcement: bool
    transactional: bool


class EmailPreferencesView(BaseModel):
    """A contact's email-type preferences, as the REST API shows them."""

    contact_id: int
    email: str
    opted_out: bool = Field(
        description="The contact opted out of everything: no email of any type goes to them,"
        " whatever their preferences say."
    )
    email_preferences: EmailTypeChoices = Field(
        description="The contact's own choice per type (a type never chosen is true)."
    )
    receives: EmailTypeChoices = Field(
        description="What actually goes to them: campaign emails off turns their follow-ups"
        " off too, and an opt-out turns everything off."
    )


class EmailPreferencesUpdate(BaseModel):
    """Types to turn on (true) or off (false); types left out keep their value."""

    model_config = ConfigDict(extra="allow")

    newsletter: StrictBool | None = None
    campaign: StrictBool | None = None
    follow_up: StrictBool | None = None
    announcement: StrictBool | None = None
    transactional: StrictBool | None = Field(
        default=None, description="Only true: answers to the contact's own emails always go."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_types_and_booleans(cls, data: object) -> object:
        try:
            parse_changes(
                {k: v for k, v in data.items() if v is not None}
                if isinstance(data, Mapping)
                else data
            )
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return data

    def changes(self) -> dict[EmailType, bool]:
        """The changes asked for, type → subscribed."""
        return {t: value for t in EmailType if (value := getattr(self, t.value)) is not None}


def preferences_view(
    contact_id: int, email: str, *, opted_out: bool, preferences: EmailPreferences
) -> EmailPreferencesView:
    """Build the REST view of a contact's preferences."""
    own = {t.value: t not in preferences.turned_off for t in EmailType}
    receives = {t.value: not opted_out and preferences.allows(t) for t in EmailType}
    return EmailPreferencesView(
        contact_id=contact_id,
        email=email,
        opted_out=opted_out,
        email_preferences=EmailTypeChoices.model_validate(own),
        receives=EmailTypeChoices.model_validate(receives),
    )
