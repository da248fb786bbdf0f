"""Clients (lenders, AMCs), contacts and their reachability."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EmailStatus(StrEnum):
    """Whether a contact's address can still be mailed."""

    VALID = "valid"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class EngagementTrend(StrEnum):
    """Direction of a contact's engagement over recent interactions."""

    UNKNOWN = "unknown"
    RISING = "rising"
    STEADY = "steady"
    FALLING = "falling"


class RoleCategory(StrEnum):
    """Broad families of contact roles at lenders and AMCs."""

    LOAN_ORIGINATION = "loan_origination"
    PROCESSING = "processing"
    UNDERWRITING = "underwriting"
    VENDOR_MANAGEMENT = "vendor_management"
    LEADERSHIP = "leadership"
    OPERATIONS = "operations"
    OTHER = "other"


class UserRole(StrEnum):
    """What a Salesbot user (a rep or an admin) may do."""

    ADMIN = "admin"
    REP = "rep"


class TokenScope(StrEnum):
    """What an API token may do."""

    READ = "read"
    WRITE = "write"


class OrderStatus(StrEnum):
    """Life cycle of an appraisal order."""

    ORDERED = "ordered"
    ASSIGNED = "assigned"
    INSPECTED = "inspected"
    IN_REVIEW = "in_review"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ON_HOLD = "on_hold"


US_STATES: frozenset[str] = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI AS MP".split()
)


def normalize_email(raw: str) -> str:
    """Return an address trimmed and lower-cased, the form contacts are keyed by."""
    return raw.strip().lower()


def normalize_domain(raw: str) -> str:
    """Return a bare lower-case domain from a domain, URL or address."""
    value = raw.strip().lower()
    if "@" in value:
        value = value.rsplit("@", 1)[1]
    for prefix in ("https://", "http://"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    value = value.split("/", 1)[0]
    if value.startswith("www."):
        value = value[4:]
    return value.rstrip(".")


@dataclass(frozen=True)
class ContactContext:
    """A contact with its client and order history, as drafting and cards need it."""

    contact_id: int
    email: str
    first_name: str | None
    last_name: str | None
    title: str | None
    role_code: str | None
    state: str | None
    client_id: int | None
    company_name: str | None
    company_domain: str | None
    last_order_at: datetime | None
    orders_last_year: int
    orders_year_before_last: int
    last_property_address: str | None
    last_contacted_at: datetime | None
    last_replied_at: datetime | None
    opted_out: bool
    email_status: str
    phone: str | None = None

    @property
    def full_name(self) -> str:
        """First and last name, or the address when there is none."""
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email

    @property
    def reachable(self) -> bool:
        """True when the contact may be emailed."""
        return not self.opted_out and self.email_status == "valid"


@dataclass(frozen=True)
class ContactMatch:
    """A contact found by its address or the start of its name (`/engagement`)."""

    contact_id: int
    name: str
    email: str
    client_name: str | None
    lead_score: int | None
    engagement_score: float
