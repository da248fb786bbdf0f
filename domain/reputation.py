"""Reputation (seed §7): public reviews, their sentiment, escalations, responses, trends.

Pure rules, no I/O: what a valid review is, how its sentiment is read from the classifier's
answer and its stars, which escalation rules it meets and where it goes, which reviews get
a drafted response and from which template, and how a webhook request is signed. The use
cases that store and present them are in `domain/reputation_service.py`; the whole flow is
in docs/reputation.md.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.classification import Classification, Sentiment
from domain.errors import InvalidInput, SalesbotError
from domain.fields import Text
from domain.ports import CompiledPattern, RegexEngine
from domain.templates import check_template, render_text


class Platform(StrEnum):
    """The review sites of the original system."""

    GOOGLE = "google"
    YELP = "yelp"
    FACEBOOK = "facebook"
    ZILLOW = "zillow"
    TRUSTPILOT = "trustpilot"


PLATFORMS: Final = ", ".join(p.value for p in Platform)
#: A review's text is kept up to this many characters (the longest sites allow ~5,000).
MAX_REVIEW_CHARS: Final = 5_000
#: Reviews one REST or webhook request may carry.
MAX_BATCH: Final = 1_000


def parse_platform(value: object) -> Platform:
    """Read a platform name (any case); raise InvalidInput naming the five otherwise."""
    text = str(value or "").strip().lower()
    try:
        return Platform(text)
    except ValueError:
        raise InvalidInput(
            f"unknown platform {str(value)[:40]!r}; use one of {PLATFORMS}", field="platform"
        ) from None


class ReviewIn(BaseModel):
    """A review as a site, a CSV row or a caller gives it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    platform: Platform = Field(description=f"One of {PLATFORMS}.")
    external_id: Text = Field(
        min_length=1, max_length=200, description="The site's id of the review."
    )
    author: Text | None = Field(default=None, max_length=200)
    rating: int = Field(ge=1, le=5, description="Stars, 1 to 5.")
    text: Text = Field(default="", max_length=MAX_REVIEW_CHARS)
    url: Text | None = Field(default=None, max_length=2_000)
    posted_at: datetime | None = Field(
        default=None, description="When the review was posted (ISO 8601; UTC if no zone)."
    )

    @field_validator("platform", mode="before")
    @classmethod
    def _known_platform(cls, value: object) -> Platform:
        try:
            return parse_platform(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("posted_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class ReviewStatus(StrEnum):
    """Where a review stands: no response needed, a response drafted, responded."""

    NEW = "new"  # stored; no response card (4-5 stars and not negative)
    AWAITING_RESPONSE = "awaiting_response"  # a response card waits for a person
    RESPONDED = "responded"  # a person approved a response (posting it is theirs to do)
    DECLINED = "declined"  # the response card was rejected: no response


class EscalationKind(StrEnum):
    """What an escalation rule looks at."""

    KEYWORD = "keyword"  # an RE2 regex in the text (case-insensitive)
    RATING = "rating"  # the rating is at most the pattern (1-5)
    STAFF = "staff"  # a named staff member appears in the text (a whole-word match)
    LEGAL = "legal"  # legal terms: the pattern, or the built-in list when it is empty


class RouteTo(StrEnum):
    """Who an escalated review goes to."""

    ACCOUNT_MANAGER = "account_manager"
    LEGAL = "legal"
    USER = "user"


#: Legal words and threats; an empty `legal` rule searches for these.
LEGAL_TERMS: Final = (
    r"\b(lawyers?|attorneys?|lawsuits?|sue|suing|sued|legal action|court|small claims|"
    r"bbb|better business bureau|fraud|fraudulent|defamation|libel|slander|"
    r"attorney general|class action)\b"
)


class EscalationRule(BaseModel):
    """A rule that flags matching reviews for a person."""

    model_config = ConfigDict(frozen=True)

    id: int
    org_id: int
    kind: EscalationKind
    pattern: str
    route_to: RouteTo
    user_id: int | None = Field(default=None, description="The person, for route_to=user.")
    is_active: bool = True
    created_at: datetime


def rule_regex(kind: EscalationKind, pattern: str) -> str | None:
    """The RE2 pattern a rule searches the text with (None for a rating rule)."""
    if kind == EscalationKind.RATING:
        return None
    if kind == EscalationKind.STAFF:
        name = " ".join(pattern.split())
        # Quote the name for RE2 (its syntax has no \Q..\E in every build): escape ASCII
        # punctuation, let the spaces match any run of white space.
        quoted = "".join(
            f"\\{c}" if c.isascii() and not c.isalnum() and c != " " else c for c in name
        )
        return r"(?i)\b" + quoted.replace(" ", r"\s+") + r"\b"
    if kind == EscalationKind.LEGAL and not pattern.strip():
        return "(?i)" + LEGAL_TERMS
    return "(?i)" + pattern


def check_rule(
    kind: EscalationKind, pattern: str, route_to: RouteTo, user_id: int | None, engine: RegexEngine
) -> str:
    """Check a rule before it is stored; return its pattern as stored (trimmed)."""
    pattern = pattern.strip()
    if route_to == RouteTo.USER and user_id is None:
        raise InvalidInput("route_to 'user' needs the user_id of the person", field="user_id")
    if route_to != RouteTo.USER and user_id is not None:
        raise InvalidInput("user_id is only for route_to 'user'", field="user_id")
    if kind == EscalationKind.RATING:
        if pattern not in {"1", "2", "3", "4", "5"}:
            raise InvalidInput(
                "a rating rule's pattern is the highest rating it flags, 1 to 5", field="pattern"
            )
        return pattern
    if not pattern and kind != EscalationKind.LEGAL:
        raise InvalidInput(f"a {kind.value} rule needs a pattern", field="pattern")
    regex = rule_regex(kind, pattern)
    if regex is not None:
        engine.compile(regex)
    return pattern


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to run: its regex compiled once per evaluation round."""

    rule: EscalationRule
    regex: CompiledPattern | None


def compile_rules(rules: Sequence[EscalationRule], engine: RegexEngine) -> list[CompiledRule]:
    """Compile the active rules (a stored rule that no longer compiles is skipped)."""
    compiled: list[CompiledRule] = []
    for rule in rules:
        if not rule.is_active:
            continue
        regex = rule_regex(rule.kind, rule.pattern)
        try:
            compiled.append(CompiledRule(rule, engine.compile(regex) if regex else None))
        except InvalidInput:
            continue
    return compiled


#: The engine searches a text's first 1,000 characters; a review is searched in windows
#: that overlap by this much, so a phrase shorter than it is never cut in two.
_WINDOW: Final = 1_000
_OVERLAP: Final = 100


def _search(regex: CompiledPattern, text: str) -> bool:
    step = _WINDOW - _OVERLAP
    return any(regex.search(text[i : i + _WINDOW]) for i in range(0, max(len(text), 1), step))


@dataclass(frozen=True)
class Escalation:
    """Where an escalated review goes and why (every rule it met)."""

    route_to: RouteTo
    user_id: int | None
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        """The reasons in one line."""
        return "; ".join(self.reasons)


def _describe(rule: EscalationRule) -> str:
    if rule.kind == EscalationKind.RATING:
        return f"rating at most {rule.pattern}★ (rule #{rule.id})"
    if rule.kind == EscalationKind.STAFF:
        return f"names staff member {rule.pattern!r} (rule #{rule.id})"
    if rule.kind == EscalationKind.LEGAL:
        return f"legal terms (rule #{rule.id})"
    return f"matches {rule.pattern[:60]!r} (rule #{rule.id})"


def evaluate_escalation(text: str, rating: int, rules: Sequence[CompiledRule]) -> Escalation | None:
    """Return where a review escalates to, or None. Every matching rule is a reason; a
    rule routed to legal wins (a legal matter cannot wait for an account manager), else
    the first match (rules in id order) routes it."""
    matched: list[EscalationRule] = []
    for compiled in rules:
        rule = compiled.rule
        if rule.kind == EscalationKind.RATING:
            hit = rating <= int(rule.pattern)
        else:
            hit = compiled.regex is not None and _search(compiled.regex, text)
        if hit:
            matched.append(rule)
    if not matched:
        return None
    router = next((r for r in matched if r.route_to == RouteTo.LEGAL), matched[0])
    return Escalation(
        route_to=router.route_to,
        user_id=router.user_id,
        reasons=tuple(_describe(r) for r in matched),
    )


# --- sentiment ------------------------------------------------------------------------------

#: What the stars say, on the classifier's -1..1 scale.
_STARS: Final = {1: -1.0, 2: -0.5, 3: 0.0, 4: 0.5, 5: 1.0}
#: How much of the score the text's reading carries: Claude reads reviews well; the offline
#: model was trained on email replies and mostly answers "neutral, 0.0" on review text
#: (4 of 6 sample reviews), so offline the stars carry most of the weight.
TEXT_WEIGHT_MODEL: Final = 0.7
TEXT_WEIGHT_OFFLINE: Final = 0.4
#: A score at or beyond these is negative / positive.
NEGATIVE_AT: Final = -0.2
POSITIVE_AT: Final = 0.2


@dataclass(frozen=True)
class SentimentReading:
    """A review's sentiment: label, score -1..1, and who read the text."""

    label: Sentiment
    score: float
    source: str


def read_sentiment(
    rating: int, classification: Classification | None, *, source: str, offline: bool
) -> SentimentReading:
    """Blend the classifier's reading of the text with the stars (see the weights above);
    without a reading (no text) the stars alone decide."""
    stars = _STARS[rating]
    if classification is None:
        score, source = stars, "rating"
    else:
        weight = TEXT_WEIGHT_OFFLINE if offline else TEXT_WEIGHT_MODEL
        score = weight * classification.sentiment_score + (1 - weight) * stars
    score = round(max(-1.0, min(1.0, score)), 3)
    if score <= NEGATIVE_AT:
        label = Sentiment.NEGATIVE
    elif score >= POSITIVE_AT:
        label = Sentiment.POSITIVE
    else:
        label = Sentiment.NEUTRAL
    return SentimentReading(label=label, score=score, source=source)


def needs_response(rating: int, sentiment: Sentiment) -> bool:
    """A review below 4 stars, or read as negative, gets a drafted response card."""
    return rating < 4 or sentiment == Sentiment.NEGATIVE


# --- response templates ---------------------------------------------------------------------


class Scenario(StrEnum):
    """Which kind of review a response template answers."""

    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"
    LEGAL = "legal"  # the review was escalated to legal: say little, take it offline


#: The variables a response template may use, with the sample values a check renders with.
REVIEW_TEMPLATE_VARIABLES: Final[dict[str, Any]] = {
    "reviewer_name": "Dana W.",
    "platform": "Google",
    "rating": 2,
    "review_text": "The report came in late and nobody called me back.",
    "firm_name": "Lone Star Appraisals",
}

#: The built-in response of each scenario, used when the organization has none active.
DEFAULT_TEMPLATES: Final[dict[Scenario, str]] = {
    Scenario.NEGATIVE: (
        "Hi {{ reviewer_name }}, thank you for telling us about your experience, and we are "
        "sorry it fell short. We would like to make this right: please contact our office "
        "so we can look into it with you.\n— {{ firm_name }}"
    ),
    Scenario.NEUTRAL: (
        "Hi {{ reviewer_name }}, thank you for your feedback. We are always working to do "
        "better, and we would welcome the chance to hear more about your experience.\n"
        "— {{ firm_name }}"
    ),
    Scenario.POSITIVE: (
        "Hi {{ reviewer_name }}, thank you for the kind words! We are glad we could help.\n"
        "— {{ firm_name }}"
    ),
    Scenario.LEGAL: (
        "Hi {{ reviewer_name }}, thank you for your review. We take concerns like yours "
        "seriously; please contact our office directly so the right person can respond.\n"
        "— {{ firm_name }}"
    ),
}


class ResponseTemplate(BaseModel):
    """A response template of an organization (Jinja2, rendered in the sandbox)."""

    model_config = ConfigDict(frozen=True)

    id: int
    org_id: int
    scenario: Scenario
    name: str
    body: str
    is_active: bool = True
    created_at: datetime
    updated_at: datetime


def check_response_template(body: str) -> None:
    """Check a response template parses, uses only review variables and renders in the
    sandbox; raise TemplateProblem with the line and reason."""
    check_template(body, field="body", variables=dict(REVIEW_TEMPLATE_VARIABLES))


def scenario_for(sentiment: Sentiment, escalation: Escalation | None) -> Scenario:
    """The scenario a review's response is drafted for."""
    if escalation is not None and escalation.route_to == RouteTo.LEGAL:
        return Scenario.LEGAL
    return Scenario(sentiment.value)


def platform_label(platform: Platform) -> str:
    """The site's name as people write it."""
    return {Platform.YELP: "Yelp", Platform.ZILLOW: "Zillow"}.get(platform, platform.value.title())


def draft_response(
    *,
    template: str,
    platform: Platform,
    author: str | None,
    rating: int,
    text: str,
    firm_name: str,
) -> str:
    """Render a response from a template in the sandbox (raises TemplateProblem)."""
    variables = {
        "reviewer_name": (author or "there").strip() or "there",
        "platform": platform_label(platform),
        "rating": rating,
        "review_text": text,
        "firm_name": firm_name,
    }
    return render_text(template, variables, field="body").strip()


def pick_template(
    templates: Sequence[ResponseTemplate], scenario: Scenario
) -> tuple[str, str | None]:
    """The body to draft with and the name of the template (None: the built-in one): the
    organization's oldest active template of the scenario, else the built-in one."""
    for template in sorted(templates, key=lambda t: t.id):
        if template.is_active and template.scenario == scenario:
            return template.body, template.name
    return DEFAULT_TEMPLATES[scenario], None


# --- stored reviews, settings, trends -------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """A stored review."""

    id: int
    org_id: int
    platform: Platform
    external_id: str
    author: str | None
    rating: int
    text: str
    url: str | None
    posted_at: datetime | None
    received_at: datetime
    sentiment: Sentiment
    sentiment_score: float
    sentiment_source: str
    status: ReviewStatus
    escalated: bool = False
    escalation_reason: str | None = None
    escalated_to: RouteTo | None = None
    escalated_user_id: int | None = None
    response_text: str | None = None
    responded_at: datetime | None = None
    responded_by: int | None = None
    response_card_id: int | None = None
    escalation_card_id: int | None = None
    source: str = "api"


@dataclass(frozen=True)
class ReputationSettings:
    """Who gets a review's cards, and whether a webhook secret is set."""

    org_id: int
    account_manager_user_id: int | None = None
    legal_user_id: int | None = None
    #: Where response cards are posted; none: the account manager's DM.
    channel_id: str | None = None
    firm_name: str = ""
    has_webhook_secret: bool = False


class TrendDay(BaseModel):
    """One UTC day of reviews."""

    day: date
    reviews: int
    average_rating: float | None
    positive: int
    neutral: int
    negative: int
    average_score: float | None


class ReputationTotals(BaseModel):
    """A window's totals: what the trends API and the digest's reputation line show."""

    reviews: int = 0
    average_rating: float | None = None
    positive: int = 0
    neutral: int = 0
    negative: int = 0
    #: Reviews that got a response card, and those of them a person responded to.
    needing_response: int = 0
    responded: int = 0
    #: Reviews of the window with a response card still waiting.
    unresponded: int = 0
    escalated: int = 0
    response_rate: float | None = Field(
        default=None, description="responded / needing_response, None when none needed one."
    )
    average_response_hours: float | None = Field(
        default=None, description="Posted (else received) to responded, for those responded."
    )
    median_response_hours: float | None = None


class ReputationTrends(BaseModel):
    """`GET /api/reputation/trends`: a window's days and totals."""

    since: datetime
    until: datetime
    days: list[TrendDay]
    totals: ReputationTotals


def response_totals(
    *, needing: int, responded: int, hours: Sequence[float]
) -> dict[str, float | None]:
    """Response rate and times from the counts and each responded review's hours."""
    ordered = sorted(hours)
    median: float | None = None
    if ordered:
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {
        "response_rate": round(responded / needing, 4) if needing else None,
        "average_response_hours": round(sum(ordered) / len(ordered), 2) if ordered else None,
        "median_response_hours": round(median, 2) if median is not None else None,
    }


def default_window(now: datetime, days: int = 30) -> tuple[datetime, datetime]:
    """The last `days` whole UTC days, today included (until the start of tomorrow)."""
    end = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)
    return end - timedelta(days=days), end


# --- the webhook's signature ----------------------------------------------------------------

#: A signed request older (or newer) than this is refused: a captured one cannot be replayed.
SIGNATURE_WINDOW: Final = timedelta(minutes=5)
SIGNATURE_VERSION: Final = "v1"


class WebhookRefused(SalesbotError):
    """A webhook request whose signature is missing, wrong or expired."""

    code = "unauthorized"


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value of a body sent at `timestamp` (unix seconds)."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_webhook(
    secret: str | None, *, timestamp: str | None, signature: str | None, body: bytes, now: datetime
) -> None:
    """Refuse a request unless it is signed with the secret within SIGNATURE_WINDOW."""
    if secret is None:
        raise WebhookRefused(
            "this organization has no review webhook secret; an admin makes one with "
            "POST /api/reputation/settings/webhook-secret"
        )
    if not timestamp or not signature:
        raise WebhookRefused("missing X-Salesbot-Timestamp or X-Salesbot-Signature header")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise WebhookRefused("malformed X-Salesbot-Timestamp: unix seconds expected")
    sent = datetime.fromtimestamp(int(timestamp), tz=UTC)
    if abs(now - sent) > SIGNATURE_WINDOW:
        raise WebhookRefused(
            "the request's timestamp is more than 5 minutes from the server's clock"
        )
    if not hmac.compare_digest(sign_webhook(secret, timestamp, body), signature.strip()):
        raise WebhookRefused("invalid request signature")


# --- what one ingestion round reports ---------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    """What storing a batch of reviews did."""

    created: list[int] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    response_cards: int = 0
    escalations: int = 0

    def as_json(self) -> Mapping[str, Any]:
        """The API's answer."""
        return {
            "created": len(self.created),
            "review_ids": self.created,
            "duplicates": [{"platform": p, "external_id": e} for p, e in self.duplicates],
            "response_cards": self.response_cards,
            "escalations": self.escalations,
        }


# --- CSV import -----------------------------------------------------------------------------

#: The columns of a review CSV (docs/reputation.md); the first three are required.
REVIEW_COLUMNS: Final = ("platform", "external_id", "rating", "author", "text", "url", "posted_at")
REQUIRED_COLUMNS: Final = REVIEW_COLUMNS[:3]


@dataclass(frozen=True)
class RowError:
    """Why one row of a review CSV was refused (`row`: its line, the header being 1)."""

    row: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", {self.column}" if self.column else "")
        return f"{where}: {self.reason}"


def parse_review_csv(lines: Iterable[str]) -> tuple[list[ReviewIn], list[RowError]]:
    """Read a review CSV: the reviews, and every row's errors (a caller stores nothing when
    there is one). A header that lacks a required column, or names an unknown one, raises
    InvalidInput."""
    reader = csv.DictReader(lines)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REVIEW_COLUMNS]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        raise InvalidInput(
            f"{'; '.join(problems)}; the columns are {', '.join(REVIEW_COLUMNS)}", field="header"
        )
    reader.fieldnames = header
    reviews: list[ReviewIn] = []
    errors: list[RowError] = []
    for raw in reader:
        # The line the row ends on: a spreadsheet's row number (blank lines included) when
        # no cell spans several lines.
        number = reader.line_num
        if None in raw:
            errors.append(RowError(number, None, "more cells than the header has columns"))
            continue
        values = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(values.values()):
            continue  # a blank line
        fields: dict[str, Any] = {k: v for k, v in values.items() if v != ""}
        fields.setdefault("text", "")
        try:
            reviews.append(ReviewIn.model_validate(fields))
        except ValidationError as exc:
            for problem in exc.errors():
                column = ".".join(str(p) for p in problem["loc"]) or None
                errors.append(RowError(number, column, validation_message(problem)))
    return reviews, errors


def validation_message(problem: Mapping[str, Any]) -> str:
    """Pydantic's message of one problem, without its "Value error, " prefix."""
    return str(problem.get("msg", "invalid")).removeprefix("Value error, ")
