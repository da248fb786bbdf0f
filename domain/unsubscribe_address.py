"""The mailto: address of our List-Unsubscribe header: a plus-address that carries a token.

Mail sent to `replies+unsub-<token>@firm.example` reaches the `replies@firm.example`
mailbox (Gmail and most providers deliver plus-addresses to the base mailbox), and the
detectors recognise it as an unsubscribe request by its address alone, whatever its subject
and body say: a mail client that follows a `mailto:` List-Unsubscribe link (RFC 2369)
often sends an empty message. The token is opaque here; whoever builds the header signs it
and whoever acts on the request checks it.
"""

from __future__ import annotations

import re
from typing import Final

TAG: Final = "unsub-"
# RFC 5321 limits the local part to 64 octets; a longer one is refused by some servers.
MAX_LOCAL_PART: Final = 64
# URL-safe base64 and dot-separated signed values ("payload.signature") fit in a local part
# without quoting; case is kept, though a few relays lower-case addresses (prefer tokens that
# survive that, e.g. lower-case base32).
_TOKEN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+)*")


def build_unsubscribe_address(mailbox: str, token: str) -> str:
    """Return the plus-address of `mailbox` that carries `token` (ValueError if it cannot)."""
    local, at, domain = mailbox.strip().rpartition("@")
    if not at or not local or not domain or not _PLAIN_LOCAL.fullmatch(local):
        raise ValueError(f"not a plain mailbox address without a plus tag: {mailbox!r}")
    if not _TOKEN.fullmatch(token):
        raise ValueError("the token must be URL-safe base64 characters, dots between them")
    tagged = f"{local}+{TAG}{token}"
    if len(tagged) > MAX_LOCAL_PART:
        raise ValueError(
            f"the address's local part would be {len(tagged)} characters, more than "
            f"{MAX_LOCAL_PART}: use a shorter token"
        )
    return f"{tagged}@{domain}"


def parse_unsubscribe_address(address: str, *, mailboxes: frozenset[str]) -> str | None:
    """Return the token if `address` is an unsubscribe plus-address of one of `mailboxes`."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or len(local) > 2 * MAX_LOCAL_PART:
        return None
    base, plus, tag = local.partition("+")
    if not plus or tag[: len(TAG)].lower() != TAG:
        return None
    if f"{base}@{domain}".lower() not in {m.lower() for m in mailboxes}:
        return None
    token = tag[len(TAG) :]
    return token if _TOKEN.fullmatch(token) else None
