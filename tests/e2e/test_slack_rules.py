"""`/rules` from Slack: an admin adds rules and anyone lists them; the inbound matcher sees a
new rule at once. Commands are signed as Slack signs them; answers are read from the
response URLs of the Slack stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from domain.classification import Category
from domain.clock import FixedClock
from domain.contacts import UserRole
from storage import models as m
from tests.support.accounts import ensure_user
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

ADMIN = "U0ANA0001"
ADMIN_EMAIL = "ana@lonestar.example.com"


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock, contacts=1) as built:
        built.slack.add_user(ADMIN, "ana", ADMIN_EMAIL, real_name="Ana Admin")
        with built.session_factory() as session:
            ensure_user(session, built.org_id, email=ADMIN_EMAIL, role=UserRole.ADMIN)
            session.commit()
        yield built


def rules(world: SlackWorld, text: str, *, user: str = ADMIN) -> dict[str, Any]:
    """Send `/rules <text>` as a user; return the one answer it gets (text and blocks)."""
    before = len(world.slack.calls("response_url"))
    assert world.command(text, command="/rules", user=user).status_code == 200
    answers = wait_until(
        lambda: world.slack.calls("response_url")[before:], what=f"answer to /rules {text}"
    )
    assert len(answers) == 1, answers
    [answer] = answers
    assert answer.status == 200, answer
    return dict(answer.params)


def stored_rules(world: SlackWorld) -> list[tuple[str, str, str, int]]:
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.ClassifierRule).where(m.ClassifierRule.org_id == world.org_id)
        )
        return [(r.rule_type, r.pattern, r.category, r.priority) for r in rows]


def test_an_admin_adds_rules_and_a_rep_lists_them(world: SlackWorld) -> None:
    added = rules(world, "add sender_domain pinnacle.example.com AMC_ORDER 10")
    assert added["text"].startswith("Added rule `#")
    assert "sender_domain `pinnacle.example.com` → *AMC_ORDER*" in added["text"]
    quoted = rules(world, 'add subject_contains "please remove me" remove')
    assert "subject_contains `please remove me` → *REMOVE*" in quoted["text"]

    listed = rules(world, "list", user=REP)

    assert listed["text"] == "2 classification rules"
    lines = listed["blocks"][1]["text"]["text"].split("\n")
    assert [line.split(" · ", 2)[2] for line in lines] == [
        "sender_domain `pinnacle.example.com` → *AMC_ORDER*",
        "subject_contains `please remove me` → *REMOVE*",
    ]
    assert stored_rules(world) == [
        ("sender_domain", "pinnacle.example.com", "AMC_ORDER", 10),
        ("subject_contains", "please remove me", "REMOVE", 100),
    ]


def test_a_rule_added_in_slack_classifies_the_next_message_at_once(world: SlackWorld) -> None:
    matcher = world.runtime.rules
    sender = "dana@mail.pinnacle.example.com"
    assert matcher.classify(world.org_id, sender_email=sender, subject="Order 7") is None

    rules(world, "add sender_domain pinnacle.example.com AMC_ORDER")

    found = matcher.classify(world.org_id, sender_email=sender, subject="Order 7")
    assert found is not None
    assert (found.category, found.confidence) == (Category.AMC_ORDER, 1.0)


def test_an_admin_removes_a_rule_by_its_number(world: SlackWorld) -> None:
    rules(world, "add sender_email orders@pinnacle.example.com AMC_ORDER")
    with world.session_factory() as session:
        rule_id = session.scalars(select(m.ClassifierRule.id)).one()

    removed = rules(world, f"remove #{rule_id}")

    assert removed["text"].startswith(f"Removed rule `#{rule_id}`")
    assert stored_rules(world) == []
    assert rules(world, "list")["blocks"][0]["text"]["text"] == "*Classification rules*: none yet."


def test_a_rep_cannot_add_or_remove_rules_and_is_told_who_can(world: SlackWorld) -> None:
    rules(world, "add sender_domain pinnacle.example.com AMC_ORDER")
    with world.session_factory() as session:
        rule_id = session.scalars(select(m.ClassifierRule.id)).one()

    refused = rules(world, "add sender_domain other.example.com CASE", user=REP)
    assert refused["text"] == (
        "⚠️ Only an admin can add classification rules; ask an admin of your organization."
    )
    assert rules(world, f"remove {rule_id}", user=REP)["text"].startswith(
        "⚠️ Only an admin can remove classification rules"
    )
    assert len(stored_rules(world)) == 1


def test_a_regex_re2_cannot_run_is_refused_with_its_reason(world: SlackWorld) -> None:
    refused = rules(world, r"add subject_regex (a)\1 CASE")

    assert refused["text"].startswith(r"⚠️ RE2 cannot compile the pattern '(a)\1'")
    assert "invalid escape sequence: \\1" in refused["text"]
    assert stored_rules(world) == []


def test_a_catastrophic_regex_is_accepted_and_answers_a_100_kb_subject(world: SlackWorld) -> None:
    rules(world, "add subject_regex ^(a+)+$ CASE")

    matcher = world.runtime.rules
    hostile = "a" * 900 + "b" + "a" * 99_099  # the "b" within the 1,000 characters searched
    assert matcher.classify(world.org_id, sender_email=None, subject=hostile) is None


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("", "*Usage of /rules*"),
        ("frobnicate", "I don't know `/rules frobnicate`."),
        ("add sender_domain", "`/rules add` needs a type, a pattern and a category."),
        ("remove twelve", "`/rules remove` needs a rule number"),
    ],
)
def test_wrong_usage_answers_with_the_usage(world: SlackWorld, text: str, start: str) -> None:
    answer = rules(world, text)

    assert answer["text"].startswith(start)
    usage = "• `/rules add &lt;type&gt; &lt;pattern&gt; &lt;CATEGORY&gt; [priority]`"
    assert usage in answer["text"]


def test_an_unknown_category_is_named_in_the_answer(world: SlackWorld) -> None:
    answer = rules(world, "add sender_domain pinnacle.example.com SPAM")

    assert answer["text"].startswith("⚠️ unknown category 'SPAM'; use one of AMC_ORDER,")
