"""The pure rules of reputation: sentiment from text and stars, escalation rules, which
reviews get a response, templates, the webhook's signature, the CSV, the review cards."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from domain.cards import Card, CardState, CardType, CardView, Priority
from domain.classification import Category, Classification, Decider, Sentiment
from domain.errors import InvalidInput
from domain.reputation import (
    EscalationKind,
    EscalationRule,
    RouteTo,
    Scenario,
    WebhookRefused,
    check_response_template,
    check_rule,
    compile_rules,
    evaluate_escalation,
    needs_response,
    parse_review_csv,
    pick_template,
    read_sentiment,
    scenario_for,
    sign_webhook,
    verify_webhook,
)
from domain.templates import TemplateProblem
from handlers.slack.ids import ActionId
from handlers.slack.reputation_blocks import review_card_message
from integrations.regex_re2 import Re2Engine

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def reading(sentiment: Sentiment, score: float) -> Classification:
    return Classification(
        category=Category.CASE,
        confidence=0.9,
        sentiment=sentiment,
        sentiment_score=score,
        decided_by=Decider.OFFLINE,
    )


def rule(rule_id: int, kind: EscalationKind, pattern: str, route: RouteTo) -> EscalationRule:
    return EscalationRule(
        id=rule_id, org_id=1, kind=kind, pattern=pattern, route_to=route, created_at=NOW
    )


def test_stars_alone_decide_without_text_and_weigh_more_offline_than_with_the_model() -> None:
    assert read_sentiment(1, None, source="rating", offline=True).score == -1.0
    assert read_sentiment(3, None, source="rating", offline=True).label == Sentiment.NEUTRAL
    text = reading(Sentiment.NEUTRAL, 0.0)
    offline = read_sentiment(2, text, source="offline:x", offline=True)
    model = read_sentiment(2, text, source="claude:x", offline=False)
    assert (offline.score, offline.label) == (-0.3, Sentiment.NEGATIVE)
    assert (model.score, model.label) == (-0.15, Sentiment.NEUTRAL)
    happy_text_low_stars = read_sentiment(
        1, reading(Sentiment.POSITIVE, 1.0), source="claude:x", offline=False
    )
    assert happy_text_low_stars.score == 0.4


def test_a_review_below_four_stars_or_negative_gets_a_response() -> None:
    assert needs_response(3, Sentiment.POSITIVE)
    assert needs_response(5, Sentiment.NEGATIVE)
    assert not needs_response(4, Sentiment.NEUTRAL)


def test_escalation_rules_match_words_names_ratings_and_legal_terms_and_legal_wins() -> None:
    engine = Re2Engine()
    rules = compile_rules(
        [
            rule(1, EscalationKind.KEYWORD, r"rude|unprofessional", RouteTo.ACCOUNT_MANAGER),
            rule(2, EscalationKind.STAFF, "Dana O'Neil", RouteTo.ACCOUNT_MANAGER),
            rule(3, EscalationKind.RATING, "1", RouteTo.ACCOUNT_MANAGER),
            rule(4, EscalationKind.LEGAL, "", RouteTo.LEGAL),
        ],
        engine,
    )
    assert evaluate_escalation("Nice people.", 4, rules) is None
    staff = evaluate_escalation("dana  o'neil was RUDE", 3, rules)
    assert staff is not None
    assert staff.route_to == RouteTo.ACCOUNT_MANAGER
    assert staff.reasons == (
        "matches 'rude|unprofessional' (rule #1)",
        'names staff member "Dana O\'Neil" (rule #2)',
    )
    assert evaluate_escalation("Danax was fine", 5, rules) is None  # a whole name only
    legal = evaluate_escalation("x" * 4_000 + " I will sue you", 1, rules)
    assert legal is not None
    assert legal.route_to == RouteTo.LEGAL  # found past the first 1,000 characters
    assert legal.reasons == ("rating at most 1★ (rule #3)", "legal terms (rule #4)")


@pytest.mark.parametrize(
    ("kind", "pattern", "route", "user", "words"),
    [
        (EscalationKind.RATING, "6", RouteTo.LEGAL, None, "1 to 5"),
        (EscalationKind.KEYWORD, "", RouteTo.LEGAL, None, "needs a pattern"),
        (EscalationKind.KEYWORD, "(?=x)", RouteTo.LEGAL, None, "look-ahead"),
        (EscalationKind.STAFF, "Bo", RouteTo.USER, None, "needs the user_id"),
        (EscalationKind.STAFF, "Bo", RouteTo.LEGAL, 7, "only for route_to 'user'"),
    ],
)
def test_a_bad_rule_is_refused_with_a_reason(
    kind: EscalationKind, pattern: str, route: RouteTo, user: int | None, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words):
        check_rule(kind, pattern, route, user, Re2Engine())


def test_templates_are_picked_by_scenario_and_checked_in_the_sandbox() -> None:
    assert scenario_for(Sentiment.NEGATIVE, None) == Scenario.NEGATIVE
    body, name = pick_template([], Scenario.POSITIVE)
    assert name is None
    assert "thank you for the kind words" in body
    check_response_template("Thanks {{ reviewer_name }} for {{ rating }} stars")
    with pytest.raises(TemplateProblem, match="unknown variable"):
        check_response_template("{{ contact.email }}")
    with pytest.raises(TemplateProblem):
        check_response_template("{% for i in range(10**9) %}{{ i }}{% endfor %}")


def test_the_webhook_signature_is_checked_in_time_and_content() -> None:
    body = b'{"platform":"google"}'
    stamp = str(int(NOW.timestamp()))
    good = sign_webhook("s3cret", stamp, body)
    verify_webhook("s3cret", timestamp=stamp, signature=good, body=body, now=NOW)
    for secret, timestamp, signature, at, words in (
        (None, stamp, good, NOW, "no review webhook secret"),
        ("s3cret", None, good, NOW, "missing"),
        ("s3cret", "12ab", good, NOW, "malformed"),
        ("s3cret", stamp, good, NOW + timedelta(minutes=6), "more than 5 minutes"),
        ("other", stamp, good, NOW, "invalid request signature"),
        ("s3cret", stamp, "v1=" + "0" * 64, NOW, "invalid request signature"),
    ):
        with pytest.raises(WebhookRefused, match=words):
            verify_webhook(secret, timestamp=timestamp, signature=signature, body=body, now=at)


def test_the_csv_reports_every_bad_row_and_skips_blank_lines() -> None:
    text = (
        "Platform,External_ID,Rating,Text\n"
        "GOOGLE,1,5,great\n"
        "\n"
        "myspace,2,1,bad\n"
        "yelp,3,x,\n"
        "zillow,4,2,a,extra\n"
    )
    reviews, errors = parse_review_csv(io.StringIO(text))
    assert [(r.platform.value, r.external_id) for r in reviews] == [("google", "1")]
    assert [str(e) for e in errors] == [
        "row 4, platform: unknown platform 'myspace'; use one of google, yelp, facebook, "
        "zillow, trustpilot",
        "row 5, rating: Input should be a valid integer, unable to parse string as an integer",
        "row 6: more cells than the header has columns",
    ]


def response_card(state: CardState = CardState.IN_REVIEW) -> Card:
    return Card(
        id=42,
        org_id=1,
        type=CardType.REVIEW_RESPONSE,
        state=state,
        priority=Priority.HIGH,
        title="Respond to <@U1>'s ★☆☆☆☆ Google review",
        created_at=NOW,
        updated_at=NOW,
        description="Awful <!channel> service",
        action_payload={
            "review_id": 7,
            "platform": "google",
            "rating": 1,
            "author": "Pat",
            "sentiment": "negative",
            "sentiment_score": -0.8,
            "sentiment_source": "offline:abc",
            "response": "Sorry, Pat.",
        },
        draft_fingerprint="fp1",
        executed_at=NOW,
    )


def test_a_response_card_shows_the_review_the_draft_and_its_three_buttons_escaped() -> None:
    text, blocks = review_card_message(CardView(card=response_card()))
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "waiting for you" in text
    assert "<!channel>" not in shown  # the public's text cannot ping a channel
    assert "<@U1>" not in shown
    assert "*Drafted response*\\nSorry, Pat." in shown
    actions = [b for b in blocks if b["type"] == "actions"][0]["elements"]
    assert [(a["action_id"], a["value"]) for a in actions] == [
        (ActionId.REVIEW_APPROVE, '{"card":42,"fp":"fp1"}'),
        (ActionId.REVIEW_EDIT, '{"card":42,"fp":"fp1"}'),
        (ActionId.REVIEW_REJECT, '{"card":42,"fp":"fp1"}'),
    ]
    done_text, done = review_card_message(
        CardView(card=response_card(CardState.DONE), actor_slack_id="U0MARIA01")
    )
    assert "✅ Response approved by <@U0MARIA01>" in json.dumps(done, ensure_ascii=False)
    assert not [b for b in done if b["type"] == "actions"]
    assert "Response approved" in done_text
