"""User classification rules: what matching one inbound message costs once the rules are
kept in memory (the path of every message but one a minute per organization).

- ordinary: 500 rules of every type, none matching (each is tried), an 80-character subject;
- hostile: subject regexes at RE2's bounds (integrations/regex_re2.py) up to the
  organization's budget of instructions (domain/rules.py), as a few large patterns and as
  100 small ones, against a 10,000-character subject (searched on its first 1,000) made to
  keep RE2's NFA busy;
- `(a+)+$` and `^(a+)+$` against 100 kB subjects (a backtracking engine never returns).
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime

from domain.classification import Category
from domain.rules import (
    MAX_REGEX_PROGRAM_PER_ORG,
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


def _hostile(engine: Re2Engine, repeat: int) -> list[CompiledRule]:
    """Regexes shaped to keep many NFA threads alive at once, `repeat` times repeated (110 is
    near the 1,000-instruction bound of one rule), as many as the organization's budget of
    instructions and of regex rules allows."""
    shapes = [r"(\w*\s*){{{k}}}z{n}", r"(\w+\s?){{{k}}}q{n}", r".{{{k}}}x{n}"]
    rules: list[CompiledRule] = []
    used = 0
    for n in range(MAX_REGEX_RULES_PER_ORG):
        pattern = shapes[n % 3].format(k=repeat + n % 9, n=n)
        rule = compile_rule(_rule(n, RuleType.SUBJECT_REGEX, pattern), engine)
        if used + rule.program_size > MAX_REGEX_PROGRAM_PER_ORG:
            break
        used += rule.program_size
        rules.append(rule)
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

    noise = ["".join(random.choice("ab cd019_") for _ in range(10_000)) for _ in range(2)]
    for repeat in (110, 20):
        hostile = _hostile(engine, repeat)
        program = sum(rule.program_size for rule in hostile)
        ms = _per_message_ms(hostile, "x@y.example.com", noise, rounds=3)
        print(
            f"hostile: {len(hostile)} regexes of {program:,} RE2 instructions in all, "
            f"10,000-char subject: {ms:.1f} ms/message"
        )

    for pattern, subject in (
        (r"(a+)+$", "a" * 100_000),
        (r"^(a+)+$", "a" * 900 + "!" + "b" * 99_099),
    ):
        ruleset = RuleSet([compile_rule(_rule(1, RuleType.SUBJECT_REGEX, pattern), engine)])
        started = time.thread_time()
        found = ruleset.first_match(sender_email=None, subject=subject)
        took = (time.thread_time() - started) * 1000
        print(f"{pattern} on a 100 kB subject: matched={found is not None} in {took:.2f} ms")
