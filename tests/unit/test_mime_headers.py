"""The parser's shortcuts for plain headers give exactly what the email package gives.

`integrations.gmail.mime` reads the plainest address lists, Subjects and Message-IDs
without the email package's header parser (most of the cost of parsing a message); these
tests generate header values around the edges of "plain" and check that wherever a
shortcut answers, the package answers the same, with no defect to report.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from integrations.gmail.mime import (
    _PARSE_POLICY,
    _Headers,
    _Notes,
    _plain_addresses,
    _plain_text,
    _unfold,
    parse_raw,
)

_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_NEAR = _ATEXT + ' .,;:<>()[]"\\@\t=?é'


def _word(alphabet: str, size: int = 6) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=1, max_size=size)


_address = st.builds(
    lambda local, dots, domain, tld: f"{local}{dots}@{domain}.{tld}",
    _word(_ATEXT),
    st.sampled_from(["", ".a", "..a", "."]),
    _word("abc-09", 8),
    _word("abcdefg", 4),
)
_display = st.one_of(
    st.builds(" ".join, st.lists(_word(_ATEXT + "."), min_size=1, max_size=3)),
    st.builds(lambda s: f'"{s}"', st.text(_NEAR, min_size=0, max_size=12)),
    st.text(_NEAR, max_size=12),
)
_mailbox = st.one_of(
    _address,
    st.builds(lambda a: f"<{a}>", _address),
    st.builds(
        lambda d, sp, a: f"{d}{sp}<{a}>", _display, st.sampled_from(["", " ", "  "]), _address
    ),
    st.text(_NEAR, max_size=20),
)
_address_list = st.builds(
    lambda boxes, sep, lead, trail: lead + sep.join(boxes) + trail,
    st.lists(_mailbox, min_size=1, max_size=3),
    st.sampled_from([",", ", ", " , ", ",,", " ", ";"]),
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(["", " ", ","]),
)


def _package_addresses(name: str, raw: str) -> tuple[list[tuple[str, str]], _Notes]:
    notes = _Notes()
    return _Headers([(name, raw)], notes)._parse_addresses(name, raw), notes


@settings(max_examples=600, deadline=None)
@given(raw=_address_list, name=st.sampled_from(["From", "To", "Cc", "Reply-To"]))
@example(raw="Dana Whitfield <dana@pinnaclelending.com>", name="From")
@example(raw='"Whitfield, Dana" <dana@x.example>, lee@y.example', name="To")
@example(raw="=?utf-8?q?Dana?= <dana@x.example>", name="From")
@example(raw="J. Smith <j@x.example>", name="From")
@example(raw="a@b.example,", name="To")
def test_a_plain_address_list_reads_as_the_email_package_reads_it(raw: str, name: str) -> None:
    plain = _plain_addresses(raw)
    if plain is None:
        return
    expected, notes = _package_addresses(name, raw)

    assert [(_unfold(display), addr.strip()) for display, addr in plain] == expected
    assert (notes.flags, notes.defects) == (set(), [])


_text_value = st.one_of(
    st.text(_NEAR + "\x00\x7f\x0b", max_size=30),
    st.builds(lambda a: f"<{a}>", _address),
    st.builds(lambda a, b: f"{a} {b}", st.text(_NEAR, max_size=10), st.text(_NEAR, max_size=10)),
)


@settings(max_examples=600, deadline=None)
@given(
    raw=_text_value,
    name=st.sampled_from(
        ["Subject", "Message-ID", "In-Reply-To", "References", "List-Id", "Content-Type"]
    ),
)
@example(raw="Re: Q4 lender win-back", name="Subject")
@example(raw="<pushed-17@lender17.example>", name="Message-ID")
@example(raw="=?utf-8?q?Caf=C3=A9?=", name="Subject")
def test_a_plain_header_reads_as_the_email_package_reads_it(raw: str, name: str) -> None:
    plain = _plain_text(name, raw)
    if plain is None:
        return
    header = _PARSE_POLICY.header_factory(name, raw)

    assert plain == str(header)
    assert list(header.defects) == []


def test_the_common_shapes_take_the_shortcut() -> None:
    assert _plain_addresses('Dana Whitfield <dana@x.example>, "Lee, Ann" <ann@y.example>') == [
        ("Dana Whitfield", "dana@x.example"),
        ("Lee, Ann", "ann@y.example"),
    ]
    assert _plain_addresses("lo7@lender7.example") == [("", "lo7@lender7.example")]
    assert _plain_text("Subject", "Re: Q4 lender win-back") == "Re: Q4 lender win-back"
    assert _plain_text("Message-ID", "<abc.1@mail.example>") == "<abc.1@mail.example>"
    assert _plain_text("Content-Type", "text/plain") is None
    assert _plain_addresses("=?utf-8?q?Dana?= <dana@x.example>") is None


def test_an_encoded_display_name_is_still_decoded() -> None:
    raw = (
        b"From: =?utf-8?q?Dana_Whitfi=C3=A9ld?= <dana@x.example>\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n\r\nHi\r\n"
    )

    parsed = parse_raw(raw)

    assert (parsed.from_name, parsed.from_email, parsed.subject) == (
        "Dana Whitfiéld",
        "dana@x.example",
        "Café",
    )
