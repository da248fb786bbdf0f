"""How `/rules add` reads what was typed: the pattern as written, between type and category."""

from __future__ import annotations

import pytest

from handlers.slack.commands import parse_rule_args


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sender_domain pinnacle.com AMC_ORDER",
            ("sender_domain", "pinnacle.com", "AMC_ORDER", 100),
        ),
        (
            "sender_domain pinnacle.com AMC_ORDER 10",
            ("sender_domain", "pinnacle.com", "AMC_ORDER", 10),
        ),
        (
            'subject_contains "please remove me" REMOVE 5',
            ("subject_contains", "please remove me", "REMOVE", 5),
        ),
        (
            "subject_contains “rush order” amc_order",
            ("subject_contains", "rush order", "amc_order", 100),
        ),
        (
            "subject_contains invoice 2024 AP",
            ("subject_contains", "invoice 2024", "AP", 100),
        ),
        (
            r"subject_regex order #?\d{4,}  AMC_ORDER",
            ("subject_regex", r"order #?\d{4,}", "AMC_ORDER", 100),
        ),
        (
            "subject_regex (?i)^re: &lt;urgent&gt; &amp; more CASE",
            ("subject_regex", "(?i)^re: <urgent> & more", "CASE", 100),
        ),
        (
            "sender_email <mailto:dana@pinnacle.com|dana@pinnacle.com> CASE",
            ("sender_email", "dana@pinnacle.com", "CASE", 100),
        ),
        (
            "sender_domain <http://pinnacle.com|pinnacle.com> CASE",
            ("sender_domain", "pinnacle.com", "CASE", 100),
        ),
        # A number too long to be a priority stays out of bounds, for the domain to refuse.
        (
            "sender_domain pinnacle.com CASE 99999999999999999999",
            ("sender_domain", "pinnacle.com", "CASE", 10_001),
        ),
        # Three words: the last is the category, even when it is a number (refused later).
        ("subject_contains ticket 55", ("subject_contains", "ticket", "55", 100)),
    ],
)
def test_add_reads_type_pattern_category_and_priority(
    text: str, expected: tuple[str, str, str, int]
) -> None:
    assert parse_rule_args(text) == expected


@pytest.mark.parametrize("text", ["", "sender_domain", "sender_domain pinnacle.com"])
def test_add_without_a_pattern_or_category_is_not_understood(text: str) -> None:
    assert parse_rule_args(text) is None
