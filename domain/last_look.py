"""The last look before a cadence follow-up: a reply Gmail holds that Salesbot missed.

A Gmail push can be lost. Before a follow-up step (cadence step > 0, an email) is drafted,
and again just before its email leaves, the rep's mailbox is asked (`ReplyLookout`, in
domain/ports.py) for the contact's thread and for mail from the contact since the last
send. A message found there that Salesbot had not stored yet is stored as the history sync
stores one, so the inbound pipeline classifies, links and acts on it as on a pushed
message; the step then does not run now. Its enrollment is put back for `RECHECK_AFTER`,
and the next tick judges it once the reply was read: a real reply stops the enrollment,
an out-of-office pauses it, anything else lets the step run then.

A failed look (Gmail unavailable, a revoked grant) never holds a step: the step runs as if
nothing was found, and the failure is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from domain.inbound import MessageToFetch

#: How long a step found a reply for waits before the tick judges it again: long enough
#: for the inbound pipeline to read the reply (seconds, or a retry after Claude was away).
RECHECK_AFTER: Final = timedelta(minutes=15)


@dataclass(frozen=True)
class LookResult:
    """What a last look in the rep's mailbox found since the contact's last send."""

    #: Messages from the contact's side (their address, or anyone in the thread but the
    #: rep) since the last send.
    found: int
    #: Of them, new to Salesbot: stored now for the inbound pipeline.
    stored: int
    #: Of them, stored before but not yet read by the inbound pipeline.
    unread: int = 0
    #: A short line for logs and the task's record (counts and addresses, never bodies).
    description: str = ""

    def __post_init__(self) -> None:
        if min(self.found, self.stored, self.unread) < 0:
            raise ValueError("a look counts messages: none of its counts can be negative")
        if self.stored + self.unread > self.found:
            raise ValueError("a look cannot store or wait for more messages than it found")

    @property
    def holds_step(self) -> bool:
        """True when the step must wait: a message is on its way through the pipeline."""
        return self.stored + self.unread > 0


@dataclass(frozen=True)
class RecordedFinds:
    """The message ids a look found, as storage recorded them."""

    #: Rows this call inserted: the caller fetches, parses and stores their content.
    to_fetch: tuple[MessageToFetch, ...]
    #: Found messages stored before whose content the pipeline has not read yet.
    unread: int = 0


def is_follow_up(step: int | None) -> bool:
    """Tell whether a cadence step is one a last look guards (a step after the first)."""
    return step is not None and step > 0


def waiting_reason(contact_email: str) -> str:
    """Why an enrollment waits after its last look found a reply (its defer reason)."""
    return (
        f"a reply from {contact_email} was found in Gmail at the last look; "
        "waiting for it to be read"
    )


def withdrawn_reason(contact_email: str) -> str:
    """What a follow-up's card tells the rep when the last look before sending found a reply."""
    return (
        f"Not sent: {contact_email} replied after this step was drafted (the reply was found "
        "in Gmail just before sending). Read the reply first; the cadence judges this step "
        "again once Salesbot has read it."
    )


def describe_look(
    *, found: int, stored: int, unread: int, contact_email: str, mailbox: str | None
) -> str:
    """A one-line account of a look, for logs and the task's record."""
    where = f" in {mailbox}" if mailbox else ""
    if not found:
        return f"no message from {contact_email} since the last send{where}"
    noun = "message" if found == 1 else "messages"
    return (
        f"{found} {noun} from {contact_email}'s side since the last send{where}: "
        f"{stored} new to Salesbot, {unread} not yet read"
    )
