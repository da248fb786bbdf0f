"""The RE2 engine of rule regexes: linear time on hostile input, refusals in words."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from integrations.regex_re2 import MAX_TEXT_CHARS, Re2Engine


@pytest.fixture
def engine() -> Re2Engine:
    return Re2Engine()


def test_the_classic_catastrophic_pattern_answers_a_100_kb_subject(engine: Re2Engine) -> None:
    pattern = engine.compile(r"(a+)+$")

    # Backtracking engines try every split of the run of a's before the "!": 2^900 ways.
    assert pattern.search("a" * 900 + "!" + "b" * 99_099) is False
    assert pattern.search("b" * 900 + "a" * 99_100) is True


def test_a_subject_is_searched_on_its_first_1000_characters(engine: Re2Engine) -> None:
    pattern = engine.compile("needle")

    assert MAX_TEXT_CHARS == 1_000
    assert pattern.search("x" * 994 + "needle") is True
    assert pattern.search("x" * 995 + "needle") is False


def test_a_pattern_tells_its_program_size(engine: Re2Engine) -> None:
    assert engine.compile(r"order #?\d{4,}").program_size == 17
    assert engine.compile(r".{110}x1").program_size == 886


def test_a_backreference_is_refused_with_re2_s_reason_in_words(engine: Re2Engine) -> None:
    with pytest.raises(InvalidInput) as refused:
        engine.compile(r"(a)\1")

    assert refused.value.field == "pattern"
    assert refused.value.message == (
        r"RE2 cannot compile the pattern '(a)\1': invalid escape sequence: \1 (RE2 has no "
        r"backreferences such as \1; match the text itself instead). Rules use RE2 syntax: "
        "https://github.com/google/re2/wiki/Syntax"
    )


@pytest.mark.parametrize("pattern", [r"(?P<x>a)(?P=x)", r"(?P<x>a)\k<x>"])
def test_named_backreferences_are_refused_as_backreferences(
    engine: Re2Engine, pattern: str
) -> None:
    with pytest.raises(InvalidInput, match="RE2 has no backreferences"):
        engine.compile(pattern)


@pytest.mark.parametrize("pattern", ["(?=a)b", "(?!a)b", "(?<=a)b", "(?<!a)b"])
def test_look_around_is_refused_in_words(engine: Re2Engine, pattern: str) -> None:
    with pytest.raises(InvalidInput, match="RE2 has no look-ahead or look-behind"):
        engine.compile(pattern)


def test_a_pattern_past_the_memory_budget_is_refused_in_words(engine: Re2Engine) -> None:
    with pytest.raises(InvalidInput, match="pattern too large - compile failed") as refused:
        engine.compile(r"\pL{1000}")

    assert "more than the 1024 KiB a rule may use" in refused.value.message


def test_case_is_matched_as_written_unless_the_pattern_says_otherwise(engine: Re2Engine) -> None:
    assert engine.compile("Invoice").search("invoice 12") is False
    assert engine.compile("(?i)Invoice").search("invoice 12") is True
