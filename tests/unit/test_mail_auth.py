"""Reading the provider's Authentication-Results header (domain.mail_auth), on real examples."""

from __future__ import annotations

import pytest

from domain.mail_auth import authentication_failure, authentication_results

GMAIL_PASS = (
    "mx.google.com; dkim=pass header.i=@pinnacle.example header.s=s1 header.b=Ab12Cd34; "
    "spf=pass (google.com: domain of dana@pinnacle.example designates 203.0.113.5 as "
    "permitted sender) smtp.mailfrom=dana@pinnacle.example; dmarc=pass (p=REJECT sp=REJECT "
    "dis=NONE) header.from=pinnacle.example"
)
GMAIL_DMARC_FAIL = (
    "mx.google.com; dkim=fail header.i=@pinnacle.example header.s=s1; "
    "spf=softfail (google.com: domain of transitioning dana@pinnacle.example does not "
    "designate 198.51.100.7 as permitted sender) smtp.mailfrom=dana@pinnacle.example; "
    "dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=pinnacle.example"
)
GMAIL_NO_DMARC_BOTH_FAIL = (
    "mx.google.com; dkim=fail (bad signature) header.i=@small.example; "
    "spf=fail (google.com: domain of x@small.example does not designate 198.51.100.7 as "
    "permitted sender) smtp.mailfrom=x@small.example"
)
GMAIL_NO_DMARC_DKIM_PASS = (
    "mx.google.com; dkim=pass header.i=@small.example; spf=fail smtp.mailfrom=x@small.example"
)


def test_the_results_are_read_by_method_and_comments_are_dropped() -> None:
    authserv, results = authentication_results(GMAIL_PASS)

    assert authserv == "mx.google.com"
    assert results == {"dkim": ["pass"], "spf": ["pass"], "dmarc": ["pass"]}


@pytest.mark.parametrize(
    ("header", "fails"),
    [
        (GMAIL_PASS, False),
        (GMAIL_DMARC_FAIL, True),
        (GMAIL_NO_DMARC_BOTH_FAIL, True),
        (GMAIL_NO_DMARC_DKIM_PASS, False),
        ("mx.google.com; dmarc=none header.from=x.example; spf=neutral", False),
        ("mx.google.com; dmarc=permerror header.from=x.example", True),
        # A header a sender wrote, naming a server we do not trust, decides nothing.
        ("evil.example; dmarc=fail header.from=pinnacle.example", False),
        (None, False),
        ("", False),
    ],
)
def test_only_an_explicit_failure_from_the_provider_counts(header: str | None, fails: bool) -> None:
    assert (authentication_failure(header) is not None) is fails
