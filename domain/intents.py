"""What a reply's intent carries, read out of its text (issue 12 item 6).

A referral names the person to write to instead; a meeting request proposes times; a
"not now" says when to come back. `integrations/reply_intents.py` reads them; the card
conversion shows them on the card (the referral to enroll, the times to confirm) and acts
on them (a contact paused until the resume date). Everything here is as the text wrote it,
bounded, and in UTC.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReferralCandidate(_Frozen):
    """A person the reply points us to, best first in a list.

    `email` is normalized (the domain lower-cased); `name` and `role` are as written, or
    None when the text gives none (the card asks the rep).
    """

    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=120)
    role: str | None = Field(default=None, max_length=120)
    #: How sure the reading is, 0 to 1: a referral cue beside the address, a name, a role.
    score: float = Field(ge=0.0, le=1.0)
    #: The words around the address, for the card.
    words: str = Field(max_length=300)


class ProposedTime(_Frozen):
    """A time the sender proposed: a moment, a window (`end` set), or only words.

    `start` is None when the words name an hour but no day we can place ("2pm works"):
    the card shows the words and the rep reads them.
    """

    start: datetime | None = None
    end: datetime | None = None
    words: str = Field(max_length=200)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("a proposed time must be timezone-aware")
        return value


class ResumeDate(_Frozen):
    """When a "not now" says to come back: the first business day of the period named."""

    on: date
    words: str = Field(max_length=200)


class KnownPerson(_Frozen):
    """A contact of the organization a referral names, as enrolling them needs it."""

    id: int
    email: str = Field(max_length=320)
    client_id: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    opted_out: bool = False
    email_status: str = "valid"

    @property
    def name(self) -> str:
        """First and last name, or the address."""
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email

    def refusal(self) -> str | None:
        """Say why this person may not be enrolled (opted out, bounced), or None."""
        if self.opted_out:
            return f"{self.name} ({self.email}) opted out: Salesbot never enrolls them again."
        if self.email_status != "valid":
            return (
                f"{self.name} ({self.email}) cannot receive email ({self.email_status}): "
                "Salesbot does not enroll them; ask the sender for another address."
            )
        return None
