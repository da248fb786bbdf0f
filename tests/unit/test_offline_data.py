"""The labelled set of the offline classifier: well-formed, large enough, and invented."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from domain.classification import Category, Intent, Sentiment
from integrations.offline_classifier import LABELLED_SET, read_labelled_examples

KEYS = {"subject", "body", "category", "sentiment", "sentiment_score", "intent", "language"}


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return LABELLED_SET.read_text(encoding="utf-8").splitlines()


def test_every_line_is_one_json_object_with_exactly_the_documented_keys(
    lines: list[str],
) -> None:
    for number, line in enumerate(lines, start=1):
        row = json.loads(line)
        assert set(row) == KEYS, f"line {number}"
        assert isinstance(row["subject"], str)
        assert isinstance(row["body"], str)
        assert row["body"].strip(), f"line {number} has an empty body"


def test_the_set_has_at_least_300_messages_and_no_duplicates() -> None:
    examples = read_labelled_examples()
    assert len(examples) >= 300
    messages = Counter((example.subject, example.body) for example in examples)
    assert [message for message, count in messages.items() if count > 1] == []


def test_every_category_and_every_intent_has_at_least_15_examples() -> None:
    examples = read_labelled_examples()
    categories = Counter(example.category for example in examples)
    intents = Counter(example.intent for example in examples)
    assert {
        category: categories[category] for category in Category if categories[category] < 15
    } == {}
    assert {intent: intents[intent] for intent in Intent if intents[intent] < 15} == {}


def test_every_sentiment_has_at_least_50_examples_and_scores_agree_with_labels() -> None:
    examples = read_labelled_examples()
    sentiments = Counter(example.sentiment for example in examples)
    assert min(sentiments[sentiment] for sentiment in Sentiment) >= 50
    for example in examples:
        score = example.sentiment_score
        assert -1.0 <= score <= 1.0
        if example.sentiment is Sentiment.POSITIVE:
            assert score >= 0.2, example.subject
        elif example.sentiment is Sentiment.NEGATIVE:
            assert score <= -0.2, example.subject
        else:
            assert abs(score) <= 0.3, example.subject


def test_spanish_french_and_german_each_cover_at_least_ten_categories() -> None:
    examples = read_labelled_examples()
    assert {example.language for example in examples} == {"en", "es", "fr", "de"}
    for language in ("es", "fr", "de"):
        categories = {example.category for example in examples if example.language == language}
        assert len(categories) >= 10, language


def test_mail_domains_are_reserved_example_domains(lines: list[str]) -> None:
    text = "\n".join(lines)
    domains = {
        domain.lower().rstrip(".") for domain in re.findall(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)", text)
    }
    assert domains  # the set does quote addresses
    assert (
        sorted(
            domain
            for domain in domains
            if not re.search(r"(^|\.)example(\.(com|net|org))?", domain)
        )
        == []
    )


def test_phone_numbers_are_fictional_555_numbers(lines: list[str]) -> None:
    text = "\n".join(lines)
    phones = re.findall(r"\(?\b\d{3}\)?[ .-]\d{3}-\d{4}\b", text)
    assert phones
    assert [phone for phone in phones if not re.search(r"555-01\d\d$", phone)] == []


def test_a_malformed_line_is_refused_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    good = json.dumps(
        {
            "subject": "s",
            "body": "b",
            "category": "AP",
            "sentiment": "neutral",
            "sentiment_score": 0.0,
            "intent": "none",
            "language": "en",
        }
    )
    path.write_text(good + "\n" + good.replace('"AP"', '"PAYABLES"') + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_labelled_examples(path)
