"""Reading the sender-authentication verdict the receiving mailbox's provider wrote.

Gmail adds an `Authentication-Results` header (RFC 8601) on top of every message it
receives, naming itself (`mx.google.com`) and giving the DMARC, DKIM and SPF results for
the message. A sender can add headers of the same name, but only below the provider's, so
only the top one is read, and only when it names a provider we trust.

The verdict is used to refuse, never to permit: a message whose DMARC (or, without a DMARC
result, both SPF and DKIM) explicitly fails is not allowed to opt anyone out or mark anyone
bounced. A message without any result is judged by the other proofs (docs/inbound.md).
"""

from __future__ import annotations

import re
from typing import Final

#: Authentication servers whose `Authentication-Results` we read (the mailbox provider's).
TRUSTED_AUTHSERV_IDS: Final = frozenset({"mx.google.com"})

_RESULT: Final = re.compile(r"(?i)(?:^|[;\s])(dmarc|dkim|spf)\s*=\s*([a-z]+)")
_FAILING: Final = frozenset({"fail", "permerror"})


def authentication_results(value: str | None) -> tuple[str | None, dict[str, list[str]]]:
    """Return the authserv-id and the results by method (`dmarc`, `dkim`, `spf`) of a header.

    Comments in parentheses are dropped; each method maps to every result it was given
    (a message may carry several DKIM signatures).
    """
    if not value:
        return None, {}
    text = re.sub(r"\([^()]*\)", " ", value[:4000])
    head, _, rest = text.partition(";")
    authserv = head.strip().split()[0].lower() if head.strip() else None
    results: dict[str, list[str]] = {}
    for method, result in _RESULT.findall(";" + rest):
        results.setdefault(method.lower(), []).append(result.lower())
    return authserv, results


def authentication_failure(
    value: str | None, *, trusted: frozenset[str] = TRUSTED_AUTHSERV_IDS
) -> str | None:
    """Return why the message fails sender authentication, or None when it does not.

    `value` is the top `Authentication-Results` header. None is returned when there is no
    header, when it names a server we do not trust, or when nothing explicitly fails.
    """
    authserv, results = authentication_results(value)
    if authserv is None or authserv not in trusted:
        return None
    dmarc = results.get("dmarc", [])
    if dmarc:
        if any(r in _FAILING for r in dmarc):
            return f"the sender's domain fails DMARC ({authserv})"
        return None
    spf = results.get("spf", [])
    dkim = results.get("dkim", [])
    spf_fails = any(r in _FAILING for r in spf) and "pass" not in spf
    dkim_fails = any(r in _FAILING for r in dkim) and "pass" not in dkim
    if spf_fails and dkim_fails:
        return f"the sender fails SPF and DKIM ({authserv})"
    return None
