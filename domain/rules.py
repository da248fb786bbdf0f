"""User classification rules: an organization's own "mail like this is that category".

A rule matches the sender's address exactly, the sender's domain (and its subdomains), a
substring of the subject or a regular expression over it. The inbound pipeline asks
`Rules.classify` after its detectors and before any model; the first active rule by
priority (lower first, ties by id) decides, with confidence 1.0.

Regular expressions are compiled by the `RegexEngine` port (RE2 in production: time linear in
the subject whatever the pattern, within the bounds integrations/regex_re2.py sets), so no
rule can stall the pipeline; a pattern the engine refuses is refused when the rule is
created, with the engine's reason, and so is one that matches every subject.

Rules are read per organization at most once a minute per process: `Rules` keeps them, with
their compiled regexes, for `CACHE_SECONDS` and drops them at once when they change through
it. Another process (the worker beside a web process) sees a change within the minute.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from typing import TYPE_CHECKING, Final, TypeVar

from pydantic import BaseModel, ConfigDict

from domain.classification import Category, Classification, Decider, Intent, Sentiment
from domain.deps import Deps
from domain.errors import Conflict, InvalidInput, NotPermitted

if TYPE_CHECKING:
    from domain.outreach.common import Actor
    from domain.ports import CompiledPattern, RegexEngine, RulesUnitOfWork

log = logging.getLogger(__name__)

#: classifier_rules.pattern is a String(500).
MAX_PATTERN_CHARS: Final = 500
#: More rules than this are a sign of a script gone wrong, not of a filing scheme.
MAX_RULES_PER_ORG: Final = 500
#: Regex rules cost the most per message (see integrations/regex_re2.py for the bounds of one).
MAX_REGEX_RULES_PER_ORG: Final = 100
#: The compiled programs of an organization's regex rules (active or not) may hold this many
#: RE2 instructions together: a search costs about the subject's length times its program,
#: so this bounds what one organization's rules cost every message. `order #?\d{4,}` is 17
#: instructions, so 100 ordinary rules use a tenth of it; at this cap the costliest rules
#: answer a 1,000-character subject in about 15 ms (`python -m bench rules`).
MAX_REGEX_PROGRAM_PER_ORG: Final = 20_000
MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 10_000
DEFAULT_PRIORITY: Final = 100
#: Subjects are matched on their first 1,000 characters: RFC 5322 limits a header line to
#: 998 characters and a real subject is under 100, and a hostile one costs every rule no more
#: than this.
MAX_SUBJECT_CHARS: Final = 1_000
#: How long an organization's rules are kept in memory before they are read again.
CACHE_SECONDS: Final = 60

#: An address is at most 320 characters (RFC 3696); anything longer is no sender to match.
_MAX_SENDER_CHARS: Final = 320
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_PART = re.compile(r"^[^\s@\"(),:;<>\[\\\]]{1,64}$")


class RuleType(StrEnum):
    """What a rule looks at."""

    SENDER_EMAIL = "sender_email"  # the sender's address, exactly (case-insensitive)
    SENDER_DOMAIN = "sender_domain"  # the sender's domain or any of its subdomains
    SUBJECT_CONTAINS = "subject_contains"  # a substring of the subject (case-insensitive)
    SUBJECT_REGEX = "subject_regex"  # an RE2 regular expression searched in the subject


class Rule(BaseModel):
    """A stored rule of one organization."""

    model_config = ConfigDict(frozen=True)

    id: int
    org_id: int
    rule_type: RuleType
    pattern: str
    category: Category
    priority: int
    is_active: bool
    created_by: int | None
    created_at: datetime


# --- validation -----------------------------------------------------------------------------


_Choice = TypeVar("_Choice", bound=StrEnum)


def parse_choice(
    kind: type[_Choice], raw: str | _Choice, *, field: str, upper: bool = False
) -> _Choice:
    """Return the member of `kind` named (any case; its values are upper case when
    `upper`), or refuse the value as the `field` it was given for, saying which exist."""
    named = str(raw).strip()
    try:
        return kind(named.upper() if upper else named.lower())
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise InvalidInput(
            f"unknown {field.replace('_', ' ')} {str(raw)[:40]!r}; use one of {known}",
            field=field,
        ) from None


def parse_rule_type(raw: str | RuleType) -> RuleType:
    """Return the rule type named, or say which ones exist."""
    return parse_choice(RuleType, raw, field="rule_type")


def parse_category(raw: str | Category) -> Category:
    """Return the category named (any case), or say which ones exist."""
    return parse_choice(Category, raw, field="category", upper=True)


def check_priority(priority: int) -> int:
    """Return a priority within bounds (lower numbers are tried first)."""
    if isinstance(priority, bool) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            f"priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} "
            "(lower numbers are tried first)",
            field="priority",
        )
    return priority


def normalize_pattern(rule_type: RuleType, raw: str) -> str:
    """Return the stored form of a rule's pattern, or say what is wrong with it.

    Addresses and domains are trimmed and lower-cased (a domain may be given as
    `@pinnacle.com`); subject texts and regexes are kept as written, trimmed. A regex is
    checked by the engine separately (`Rules.add_rule`).
    """
    pattern = raw.strip()
    if not pattern:
        raise InvalidInput("pattern must not be empty", field="pattern")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidInput(
            f"pattern is {len(pattern):,} characters; the limit is {MAX_PATTERN_CHARS}",
            field="pattern",
        )
    if "\x00" in pattern:
        raise InvalidInput("pattern must not contain NUL characters (\\u0000)", field="pattern")
    if rule_type is RuleType.SENDER_EMAIL:
        return _checked_email(pattern)
    if rule_type is RuleType.SENDER_DOMAIN:
        return _checked_domain(pattern.lower().removeprefix("@"), whole=pattern)
    return pattern


def _checked_email(raw: str) -> str:
    address = raw.lower()
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.match(local):
        raise InvalidInput(
            f"{raw[:80]!r} is not an email address; write it as name@example.com",
            field="pattern",
        )
    _checked_domain(domain, whole=raw)
    return address


def _checked_domain(domain: str, *, whole: str) -> str:
    domain = domain.rstrip(".")
    if not domain.isascii():
        raise InvalidInput(
            f"{whole[:80]!r}: write an internationalized domain in its ASCII form (xn--…)",
            field="pattern",
        )
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(_LABEL.match(x) for x in labels):
        raise InvalidInput(
            f"{whole[:80]!r} is not a domain; write it as example.com "
            "(its subdomains are included)",
            field="pattern",
        )
    return domain


# --- matching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to match: its pattern in the form compared, its regex compiled."""

    rule: Rule
    needle: str
    regex: CompiledPattern | None = None

    @property
    def order(self) -> tuple[int, int]:
        """Where the rule comes in the order rules are tried: priority, then id."""
        return self.rule.priority, self.rule.id

    @property
    def program_size(self) -> int:
        """The instructions of its compiled regex; 0 for a rule without one."""
        return self.regex.program_size if self.regex is not None else 0


def compile_rule(rule: Rule, regex: RegexEngine) -> CompiledRule:
    """Prepare a stored rule for matching; raise InvalidInput when it cannot match."""
    needle = normalize_pattern(rule.rule_type, rule.pattern)
    if rule.rule_type is RuleType.SUBJECT_REGEX:
        return CompiledRule(rule, needle, check_regex(needle, regex))
    if rule.rule_type is RuleType.SUBJECT_CONTAINS:
        return CompiledRule(rule, needle.casefold())
    return CompiledRule(rule, needle)


def check_regex(pattern: str, regex: RegexEngine) -> CompiledPattern:
    """Compile a subject regex, refusing one the engine cannot run (its reason) and one
    that matches every subject: such a rule would file all mail under one category."""
    compiled = regex.compile(pattern)
    if compiled.search(""):
        raise InvalidInput(
            f"the pattern '{_printable(pattern[:80])}' matches every subject, even an empty "
            "one; a rule must single some mail out",
            field="pattern",
        )
    return compiled


def _printable(pattern: str) -> str:
    """The pattern as typed (repr would double each backslash); a newline or tab escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in pattern)


def in_order(rules: Iterable[CompiledRule]) -> list[CompiledRule]:
    """Active rules in the order they are tried: priority (lower first), then id."""
    return sorted((r for r in rules if r.rule.is_active), key=lambda r: r.order)


def sender_address(sender_email: str | None) -> str | None:
    """Return the bare lower-case address of a sender (`Dana <dana@x.com>` or `dana@x.com`),
    or None when there is none."""
    if not sender_email or len(sender_email) > _MAX_SENDER_CHARS:
        return None
    _, address = parseaddr(sender_email)
    address = (address or sender_email).strip().lower()
    return address if "@" in address else None


class RuleSet:
    """An organization's active rules, ready to match a message.

    The answer is the first rule, in the order tried, that matches, as if each were tried
    in turn; but sender rules are found by dictionary (the address, then each domain the
    sender's domain belongs to: `mail.pinnacle.com`, `pinnacle.com`, `com`), so only subject
    rules cost a look at each, and the subject is folded to compare once.
    """

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules = tuple(in_order(rules))
        self._by_address: dict[str, CompiledRule] = {}
        self._by_domain: dict[str, CompiledRule] = {}
        self._by_subject: list[CompiledRule] = []
        for compiled in self.rules:  # in order: the first of equal patterns is kept
            if compiled.rule.rule_type is RuleType.SENDER_EMAIL:
                self._by_address.setdefault(compiled.needle, compiled)
            elif compiled.rule.rule_type is RuleType.SENDER_DOMAIN:
                self._by_domain.setdefault(compiled.needle, compiled)
            else:
                self._by_subject.append(compiled)

    def first_match(self, *, sender_email: str | None, subject: str) -> Rule | None:
        """Return the first rule, in the order tried, that matches the message.

        Subjects are matched on their first MAX_SUBJECT_CHARS characters.
        """
        best = self._sender_match(sender_address(sender_email))
        cut = (subject or "")[:MAX_SUBJECT_CHARS]
        folded: str | None = None
        for compiled in self._by_subject:
            if best is not None and compiled.order > best.order:
                break
            if compiled.regex is not None:
                hit = compiled.regex.search(cut)
            else:
                folded = cut.casefold() if folded is None else folded
                hit = compiled.needle in folded
            if hit:
                return compiled.rule
        return best.rule if best is not None else None

    def _sender_match(self, sender: str | None) -> CompiledRule | None:
        if sender is None:
            return None
        found = [self._by_address.get(sender)]
        labels = sender.rpartition("@")[2].rstrip(".").split(".")
        found += [self._by_domain.get(".".join(labels[i:])) for i in range(len(labels))]
        return min((f for f in found if f is not None), key=lambda f: f.order, default=None)


def rule_classification(rule: Rule) -> Classification:
    """What a matching rule decides: its category, with certainty."""
    return Classification(
        category=rule.category,
        confidence=1.0,
        sentiment=Sentiment.NEUTRAL,
        intent=Intent.UNSUBSCRIBE if rule.category is Category.REMOVE else Intent.NONE,
        decided_by=Decider.RULE,
        decided_detail=f"rule {rule.id} ({rule.rule_type.value})",
    )


# --- use cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cached:
    loaded_at: datetime
    rules: RuleSet


class Rules:
    """An organization's classification rules: listed by anyone of it, changed by admins,
    and matched against inbound mail (`classify`)."""

    def __init__(
        self,
        deps: Deps[RulesUnitOfWork],
        *,
        regex: RegexEngine,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._regex = regex
        self._ttl = timedelta(seconds=cache_seconds)
        # The web thread pool and the inbound workers share one Rules: the cache and the
        # generation counters are read and written under this lock, never a database call.
        self._lock = threading.Lock()
        self._cache: dict[int, _Cached] = {}
        self._generation: dict[int, int] = {}

    # reads

    def list_rules(self, org_id: int) -> list[Rule]:
        """Return every rule of the organization, in the order they are tried (inactive too)."""
        with self._uow() as uow:
            return uow.classifier_rules.list(org_id)

    def get_rule(self, org_id: int, rule_id: int) -> Rule:
        """Return one rule of the organization, or raise NotFound."""
        with self._uow() as uow:
            return uow.classifier_rules.get(org_id, rule_id)

    # changes (admins)

    def add_rule(
        self,
        actor: Actor | None,
        org_id: int,
        *,
        rule_type: str | RuleType,
        pattern: str,
        category: str | Category,
        priority: int = DEFAULT_PRIORITY,
        is_active: bool = True,
    ) -> Rule:
        """Add a rule; refused with the reason when its pattern cannot match as written.

        `actor` None is an API token of the whole organization (an integration), which may
        change rules as an admin may.
        """
        with self._uow() as uow:
            rule = self.add_rule_in(
                uow,
                actor,
                org_id,
                rule_type=rule_type,
                pattern=pattern,
                category=category,
                priority=priority,
                is_active=is_active,
                now=self._clock.now(),
            )
            uow.commit()
        self.forget_rules(org_id)
        return rule

    def add_rule_in(
        self,
        uow: RulesUnitOfWork,
        actor: Actor | None,
        org_id: int,
        *,
        rule_type: str | RuleType,
        pattern: str,
        category: str | Category,
        priority: int = DEFAULT_PRIORITY,
        is_active: bool = True,
        now: datetime,
    ) -> Rule:
        """Add a rule inside the caller's unit of work (it commits, then calls
        `forget_rules`), with every check of `add_rule`: a rule a reps' proposal makes is
        held to the same validation and budgets as one typed by an admin."""
        _authorize(actor, org_id, "add classification rules")
        kind = parse_rule_type(rule_type)
        stored = normalize_pattern(kind, pattern)
        program = 0
        if kind is RuleType.SUBJECT_REGEX:
            # raises InvalidInput with the engine's reason
            program = check_regex(stored, self._regex).program_size
        chosen = parse_category(category)
        rank = check_priority(priority)
        repo = uow.classifier_rules
        # Two admins adding at once may pass this check together: the cap is a guard
        # against runaway scripts, not an exact quota.
        if repo.count(org_id) >= MAX_RULES_PER_ORG:
            raise InvalidInput(
                f"this organization already has {MAX_RULES_PER_ORG} rules, the most it "
                "may have; remove rules it no longer needs first"
            )
        if (
            kind is RuleType.SUBJECT_REGEX
            and repo.count(org_id, rule_type=kind) >= MAX_REGEX_RULES_PER_ORG
        ):
            raise InvalidInput(
                f"this organization already has {MAX_REGEX_RULES_PER_ORG} subject_regex "
                "rules, the most it may have; combine patterns (a|b) or use "
                "subject_contains"
            )
        if kind is RuleType.SUBJECT_REGEX:
            self._check_program_budget(repo.list(org_id), org_id, program)
        same = repo.find(org_id, rule_type=kind, pattern=stored)
        if same is not None:
            raise Conflict(
                f"rule {same.id} already has this {kind.value} pattern "
                f"(category {same.category.value}); change or remove it instead"
            )
        rule = repo.add(
            org_id,
            rule_type=kind,
            pattern=stored,
            category=chosen,
            priority=rank,
            is_active=is_active,
            created_by=actor.user_id if actor is not None else None,
            now=now,
        )
        log.info(
            "classification rule added",
            extra={"org_id": org_id, "rule_id": rule.id, "rule_type": kind.value},
        )
        return rule

    def update_rule(
        self,
        actor: Actor | None,
        org_id: int,
        rule_id: int,
        *,
        category: str | Category | None = None,
        priority: int | None = None,
        is_active: bool | None = None,
    ) -> Rule:
        """Change a rule's category, priority or whether it is active (its pattern stays:
        a new pattern is a new rule)."""
        _authorize(actor, org_id, "change classification rules")
        if category is None and priority is None and is_active is None:
            raise InvalidInput("nothing to change: give category, priority or is_active")
        chosen = parse_category(category) if category is not None else None
        rank = check_priority(priority) if priority is not None else None
        with self._uow() as uow:
            rule = uow.classifier_rules.update(
                org_id, rule_id, category=chosen, priority=rank, is_active=is_active
            )
            uow.commit()
        self.forget_rules(org_id)
        log.info("classification rule changed", extra={"org_id": org_id, "rule_id": rule_id})
        return rule

    def remove_rule(self, actor: Actor | None, org_id: int, rule_id: int) -> Rule:
        """Delete a rule; return it as it was."""
        _authorize(actor, org_id, "remove classification rules")
        with self._uow() as uow:
            rule = uow.classifier_rules.get(org_id, rule_id)
            uow.classifier_rules.delete(org_id, rule_id)
            uow.commit()
        self.forget_rules(org_id)
        log.info("classification rule removed", extra={"org_id": org_id, "rule_id": rule_id})
        return rule

    # matching (the inbound pipeline)

    def classify(
        self, org_id: int, *, sender_email: str | None, subject: str
    ) -> Classification | None:
        """Classify a message by the organization's first matching rule; None if none does."""
        rule = self._rules_of(org_id).first_match(sender_email=sender_email, subject=subject)
        return rule_classification(rule) if rule is not None else None

    def _rules_of(self, org_id: int) -> RuleSet:
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(org_id)
            generation = self._generation.get(org_id, 0)
        # A clock that went back also reloads: the age of what is kept is unknown.
        if cached is not None and cached.loaded_at <= now < cached.loaded_at + self._ttl:
            return cached.rules
        with self._uow() as uow:
            stored = uow.classifier_rules.list_active(org_id)
        fresh = _Cached(now, RuleSet(self._compiled(stored)))
        with self._lock:
            # A change made while these were read bumped the generation: what was read may
            # predate it, so it is used for this message but not kept.
            if self._generation.get(org_id, 0) == generation:
                self._cache[org_id] = fresh
        return fresh.rules

    def _check_program_budget(self, existing: Sequence[Rule], org_id: int, program: int) -> None:
        """Refuse a regex of `program` instructions that would take the organization's regex
        rules past MAX_REGEX_PROGRAM_PER_ORG together."""
        used = 0
        for rule in existing:
            if rule.rule_type is RuleType.SUBJECT_REGEX:
                try:
                    used += compile_rule(rule, self._regex).program_size
                except InvalidInput:
                    continue  # a stored rule that cannot compile is skipped, and costs nothing
        if used + program > MAX_REGEX_PROGRAM_PER_ORG:
            raise InvalidInput(
                f"this pattern compiles to {program:,} RE2 instructions and this "
                f"organization's regex rules already use {used:,} of the "
                f"{MAX_REGEX_PROGRAM_PER_ORG:,} they may use together; remove regex rules it "
                "no longer needs, or use simpler patterns or subject_contains",
                field="pattern",
            )

    def _compiled(self, stored: Sequence[Rule]) -> list[CompiledRule]:
        compiled = []
        program = 0
        for rule in stored:
            try:
                ready = compile_rule(rule, self._regex)
                program += ready.program_size
                if program > MAX_REGEX_PROGRAM_PER_ORG:
                    # Stored around add_rule (which refuses it): the rules past the budget,
                    # in the order tried, are not matched, as the budget promises.
                    raise InvalidInput(
                        f"the organization's regex rules exceed {MAX_REGEX_PROGRAM_PER_ORG:,} "
                        "RE2 instructions together"
                    )
                compiled.append(ready)
            except InvalidInput as exc:
                # Stored before a check existed or written around this service: it cannot
                # match, and one such rule must not stop the organization's others.
                log.warning(
                    "classification rule skipped",
                    extra={"org_id": rule.org_id, "rule_id": rule.id, "reason": exc.message},
                )
        return compiled

    def forget_rules(self, org_id: int) -> None:
        """Drop the organization's kept rules, and any read of them still in flight, so the
        next message reads them again (the use cases here call it after each change)."""
        with self._lock:
            self._cache.pop(org_id, None)
            self._generation[org_id] = self._generation.get(org_id, 0) + 1


def _authorize(actor: Actor | None, org_id: int, verb: str) -> None:
    if actor is None:
        return
    if actor.org_id != org_id:
        raise NotPermitted("You can only change the rules of your own organization.")
    if not actor.is_admin:
        raise NotPermitted(f"Only an admin can {verb}; ask an admin of your organization.")
