"""User classification rules: what matching one inbound message costs once the rules are
kept in memory (the path of every message but one a minute per organization).

- ordinary: 500 rules of every type, none matching (each is tried), an 80-character subject;
- hostile: 100 subject regexes at RE2's bounds (integrations/regex_re2.py) against a
  10,000-character subject made to keep RE2's NFA busy;
- `(a+)+$` and `^(a+)+$` against 100 kB subjects (a backtracking engine never returns).
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime

from domain.classification import Category
from domain.rules import (
    MAX_REGEX_RULES_PER_ORG,
    MAX_RULES_PER_ORG,
    CompiledRule,
    Rule,
    RuleSet,
    RuleType,
    compile_rule,
)
from integrations.regex_re2 import Re2Engine

AT = datetime(2026, 12, 3, tzinfo=UTC)
ROUNDS = 7


def _rule(rule_id: int, rule_type: RuleType, pattern: str) -> Rule:
    return Rule(
        id=rule_id,
        org_id=1,
        rule_type=rule_type,
        pattern=pattern,
        category=Category.STATUS,
        priority=100,
        is_active=True,
        created_by=None,
        created_at=AT,
    )


def _ordinary(engine: Re2Engine) -> list[CompiledRule]:
    kinds = [
        (RuleType.SENDER_EMAIL, "orders{n}@lender{n}.example.com"),
        (RuleType.SENDER_DOMAIN, "lender{n}.example.com"),
        (RuleType.SUBJECT_CONTAINS, "order number {n}"),
        (RuleType.SUBJECT_REGEX, r"(?i)^(re: )?invoice #?{n}\d{{3,6}}"),
    ]
    return [
        compile_rule(_rule(n, *_fill(kinds[n % 4], n)), engine) for n in range(MAX_RULES_PER_ORG)
    ]


def _fill(kind: tuple[RuleType, str], n: int) -> tuple[RuleType, str]:
    return kind[0], kind[1].format(n=n)


def _hostile(engine: Re2Engine) -> list[CompiledRule]:
    # Near the 1,000-instruction bound, shaped to keep many NFA threads alive at once.
    shapes = [r"(\w*\s*){{{k}}}z{n}", r"(\w+\s?){{{k}}}q{n}", r".{{{k}}}x{n}"]
    rules = []
    for n in range(MAX_REGEX_RULES_PER_ORG):
        pattern = shapes[n % 3].format(k=110 + n % 9, n=n)
        rules.append(compile_rule(_rule(n, RuleType.SUBJECT_REGEX, pattern), engine))
    return rules


def _per_message_ms(
    rules: list[CompiledRule], sender: str, subjects: list[str], *, rounds: int = ROUNDS
) -> float:
    ruleset = RuleSet(rules)
    took = []
    for _ in range(rounds):
        started = time.thread_time()
        for subject in subjects:
            ruleset.first_match(sender_email=sender, subject=subject)
        took.append((time.thread_time() - started) / len(subjects) * 1000)
    return statistics.median(took)


def main() -> None:
    """Print the median CPU time of matching one message against an organization's rules."""
    engine = Re2Engine()
    random.seed(7)
    ordinary = _ordinary(engine)
    subjects = [f"Re: appraisal for 12{n} Elm St, turn time question #{n}" for n in range(200)]
    ms = _per_message_ms(ordinary, "dana@pinnacle.example.com", subjects)
    print(f"ordinary: {len(ordinary)} rules, 80-char subject, no match: {ms * 1000:.0f} µs/message")

    hostile = _hostile(engine)
    noise = ["".join(random.choice("ab cd019_") for _ in range(10_000)) for _ in range(2)]
    ms = _per_message_ms(hostile, "x@y.example.com", noise, rounds=3)
    print(
        f"hostile: {len(hostile)} regexes at RE2's bounds, 10,000-char subject: {ms:.0f} ms/message"
    )

    for pattern, subject in (
        (r"(a+)+$", "a" * 100_000),
        (r"^(a+)+$", "a" * 9_000 + "!" + "b" * 91_000),
    ):
        ruleset = RuleSet([compile_rule(_rule(1, RuleType.SUBJECT_REGEX, pattern), engine)])
        started = time.thread_time()
        found = ruleset.first_match(sender_email=None, subject=subject)
        took = (time.thread_time() - started) * 1000
        print(f"{pattern} on a 100 kB subject: matched={found is not None} in {took:.2f} ms")
