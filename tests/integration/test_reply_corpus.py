"""Reply stripping on the third-party corpus in tests/corpus/replies.

Each source corpus has a floor a little under the share `strip_reply` matched when it was
written (`python -m bench reply_stripping` prints the current figures), so a change that
makes stripping worse fails here with the cases it broke. The sources disagree on
sign-offs and on quoted lines kept above an answer, so no stripper can reach 100% on all.
"""

from __future__ import annotations

import re

import pytest

from integrations.gmail.mime import parse_raw
from integrations.gmail.reply_text import (
    _HEADER_PATTERN,
    _library_first_reply,
    _library_message,
    _MatchStarts,
    html_to_text,
    strip_reply,
)
from tests.support.corpus import ReplyCase, Score, reply_cases, score_reply_cases

# Measured: trimmer 59/64, talon 85/99, mail_parser_reply 13/23, crisp 61/65, all 218/251.
FLOORS = {
    "email_reply_trimmer": 57,
    "talon": 83,
    "mail_parser_reply": 12,
    "crisp_email_reply_parser": 59,
    "overall": 213,
}
TOTALS = {
    "email_reply_trimmer": 64,
    "talon": 99,
    "mail_parser_reply": 23,
    "crisp_email_reply_parser": 65,
    "overall": 251,
}


def _read_eml(raw: bytes) -> tuple[str, str | None]:
    parsed = parse_raw(raw)
    return parsed.text, parsed.html


@pytest.fixture(scope="module")
def cases() -> list[ReplyCase]:
    return reply_cases(read_eml=_read_eml, html_to_text=html_to_text)


@pytest.fixture(scope="module")
def scores(cases: list[ReplyCase]) -> dict[str, Score]:
    return score_reply_cases(cases, lambda text, html: strip_reply(text, html=html))


def test_every_case_of_the_corpus_is_measured(cases: list[ReplyCase]) -> None:
    counts = {corpus: sum(1 for c in cases if c.corpus == corpus) for corpus in TOTALS}
    counts["overall"] = len(cases)
    assert counts == TOTALS


@pytest.mark.parametrize("corpus", sorted(FLOORS))
def test_stripping_stays_above_its_measured_floor(scores: dict[str, Score], corpus: str) -> None:
    score = scores[corpus]
    missed = sorted(
        m for key, s in scores.items() if corpus in ("overall", key.split("/")[0]) for m in s.missed
    )
    assert score.matched >= FLOORS[corpus], f"{score.line(corpus)}; missed: {missed}"


def test_stripping_never_returns_more_than_it_was_given(cases: list[ReplyCase]) -> None:
    for case in cases:
        out = strip_reply(case.text, html=case.html)
        assert len(out) <= len(case.text) or case.html is not None, case.name


def test_the_newest_reply_is_split_off_as_mail_parser_reply_splits_it(
    cases: list[ReplyCase],
) -> None:
    # strip_reply walks the library's quote headers only up to the newest reply; what it
    # reads of that reply must be what the library's own read() gives.
    texts = [case.text for case in cases] + [case.html or "" for case in cases] + _SPLIT_EDGES
    assert len(texts) == 2 * TOTALS["overall"] + len(_SPLIT_EDGES)
    for text in texts:
        library = _library_message(text).read().replies[0]

        mine = _library_first_reply(text)

        assert (mine.headers, mine.content, list(mine.disclaimers)) == (
            library.headers,
            library.content,
            library.disclaimers,
        )


_ON_WROTE = "On Tue, Jan 2, 2024 at 10:00 AM Bob Lee <bob@lender.example> wrote:"
_SPLIT_EDGES = [
    f"\n\n{_ON_WROTE}\n> Turn times are down.\n\nThanks, that helps.",
    f"\n{_ON_WROTE}\n{_ON_WROTE}\n> twice\n\nSee above.",
    f"Sounds good.\n\n{_ON_WROTE}\n> one\n\n{_ON_WROTE}\n> two",
    "From: Bob <bob@lender.example>\nSent: Tuesday\nTo: Rep\nSubject: Re: turn times\n\nOld.",
    "Yes please.\n\n-----Original Message-----\nFrom: Bob\nTo: Rep\n\nEarlier text.",
    "",
]


def test_quote_headers_are_found_where_a_search_of_every_character_finds_them(
    cases: list[ReplyCase],
) -> None:
    starts = _MatchStarts.of(_HEADER_PATTERN)
    assert starts is not None  # else every text is searched at every character (slower)
    texts = [case.text for case in cases] + _SPLIT_EDGES + _START_EDGES
    texts += [_library_message(text).text for text in texts]  # as the library normalises
    for text in texts:
        expected = [(m.span(), m.groups()) for m in _HEADER_PATTERN.finditer(text)]

        found = [(m.span(), m.groups()) for m in starts.finditer(text)]

        assert found == expected, text[:200]


def test_match_starts_are_told_only_for_patterns_that_start_on_lines_or_fixed_text() -> None:
    told = [
        r"^a|\nb|(?:\n)?(?:^|\n)c",
        r"(?:--x)?^y",
        r"a|^b",  # "a" where it occurs, "b" at a line start
        r"(?:^x)?yz",
        r"(?=q)qq|(?!p)^r",
        r"(?<=a)b",  # lookbehinds see the text before the position tried
    ]
    texts = ["", "a", "ba\nb\n\nc", "--x\ny --xy", "xyz yz\nxyz", "qqq\nr\npr", "\n\nb", "ab b"]
    for source in told:
        pattern = re.compile(source, re.M | re.I)
        starts = _MatchStarts.of(pattern)
        assert starts is not None, source
        for text in texts:
            assert [m.span() for m in starts.finditer(text)] == [
                m.span() for m in pattern.finditer(text)
            ], (source, text)
    for unsure in (r"[ab]c|^d", r".*x", r"^(?:x)?", r"(?i:--x)^y", r"\bx"):
        assert _MatchStarts.of(re.compile(unsure, re.M)) is None, unsure


_START_EDGES = [
    "Thanks!\n-----Oprindelig meddelelse-----\nFra: Bob\nSendt: 2. jan\nTil: Rep\nEmne: Re",
    "ok ------OPRINDELIG MEDDELELSE-----\nFra: Bob\nSendt: i dag\n\nhistorik",
    "\n\n\nFrom: Bob <bob@lender.example>\nSent: Tuesday\nTo: Rep\n",
    "no header here\r\nFrom: nobody\r\n",
    "\n",
    "a\n\n\n" + "On Tue, Bob wrote:\n" * 3,
]
