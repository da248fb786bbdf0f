"""Email templates: Jinja2 rendered in the sandbox, checked before they are stored."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.errors import InvalidInput
from domain.fields import Text
from domain.template_sandbox import (
    BudgetedEnvironment,
    BudgetExceeded,
    RenderBudget,
    Unsupported,
    VariableFinder,
    metered,
    prepare,
)


class TemplateCategory(StrEnum):
    """Kinds of email template, as in the original system."""

    NEWSLETTER = "newsletter"
    CAMPAIGN = "campaign"
    FOLLOW_UP = "follow_up"
    ANNOUNCEMENT = "announcement"
    TRANSACTIONAL = "transactional"


# The variables a template may use, with the sample values a check renders with.
TEMPLATE_VARIABLES: dict[str, Any] = {
    "first_name": "Dana",
    "last_name": "Whitfield",
    "full_name": "Dana Whitfield",
    "email": "dana@pinnaclelending.com",
    "title": "Loan Officer",
    "role_code": "LO",
    "state": "TX",
    "company_name": "Pinnacle Lending",
    "company_domain": "pinnaclelending.com",
    "last_order_date": "2026-07-05",
    "days_since_last_order": 143,
    "orders_last_year": 72,
    "last_property_address": "1200 Barton Springs Rd, Austin, TX 78704",
    "rep_name": "Maria Lopez",
    "rep_email": "maria@appraisalfirm.com",
    "rep_phone": "(512) 555-0100",
    "firm_name": "Lone Star Appraisals",
    "campaign_name": "Q4 lender win-back",
    "step_number": 1,
    "unsubscribe_url": "https://salesbot.example.com/unsubscribe/sample",
}

MAX_TEMPLATE_CHARS = 100_000
MAX_RENDERED_CHARS = 200_000


@lru_cache(maxsize=1)
def _environment() -> BudgetedEnvironment:
    """The one sandboxed environment (thread-safe for rendering), made on first use."""
    return BudgetedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def _parse(source: str, field: str) -> nodes.Template:
    """Parse a template (nothing in it is evaluated) and prepare it for the budget."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(field, f"longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        return prepare(_environment().parse(source))
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", line=exc.lineno) from exc
    except Unsupported as exc:
        raise TemplateProblem(field, str(exc), line=exc.lineno) from exc
    except RecursionError as exc:
        raise TemplateProblem(field, "brackets or tags nested too deeply") from exc
    except ValueError as exc:  # a number literal longer than Python reads (4,300 digits)
        raise TemplateProblem(field, f"cannot read the template: {exc}") from exc


@lru_cache(maxsize=512)
def _compiled(source: str, field: str) -> Template:
    """Compile a template once: a launch renders the same few templates thousands of times."""
    parsed = _parse(source, field)
    try:
        return _environment().from_string(parsed)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", line=exc.lineno) from exc
    except RecursionError as exc:
        raise TemplateProblem(field, "brackets or tags nested too deeply") from exc


_DEFAULT_BUDGET = RenderBudget()


class TemplateProblem(InvalidInput):
    """A template that cannot be used: where and why."""

    def __init__(self, field: str, reason: str, *, line: int | None = None) -> None:
        where = f"{field}, line {line}" if line else field
        super().__init__(f"{where}: {reason}", field=field)
        self.line = line
        self.reason = reason


class TemplateTooSlow(TemplateProblem):
    """A template that ran out of its render budget (steps, time or text made): it loops.

    The drafting worker does not try such a template again for the rest of its batch.
    """


def check_template(
    source: str,
    *,
    field: str,
    budget: RenderBudget | None = None,
    variables: dict[str, Any] | None = None,
) -> set[str]:
    """Check a template parses, uses only known variables and renders in the sandbox.

    Nothing the template computes runs before the render, and the render runs within
    `budget`. `variables` are the known ones with their sample values (default: an email
    template's). Returns the variables it uses. Raises TemplateProblem with the line and
    reason.
    """
    known_variables = TEMPLATE_VARIABLES if variables is None else variables
    parsed = _parse(source, field)
    finder = VariableFinder(_environment())
    try:
        finder.visit(parsed)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", line=exc.lineno) from exc
    except RecursionError as exc:
        raise TemplateProblem(field, "brackets or tags nested too deeply") from exc
    used = finder.undeclared
    unknown = sorted(used - known_variables.keys())
    if unknown:
        known = ", ".join(sorted(known_variables))
        raise TemplateProblem(
            field,
            f"unknown variable(s) {', '.join(unknown)}; available: {known}",
            line=_line_of(source, unknown[0]),
        )
    render_text(source, known_variables, field=field, budget=budget)
    return set(used)


def render_text(
    source: str,
    context: dict[str, Any],
    *,
    field: str = "template",
    budget: RenderBudget | None = None,
) -> str:
    """Render a template in the sandbox within `budget`; raise TemplateProblem if it cannot.

    The budget (default: 2 s and 100,000 steps) is checked inside the template at every
    loop iteration, call and operator, so a looping template is stopped where it is.
    """
    budget = budget or _DEFAULT_BUDGET
    pieces: list[str] = []
    size = 0
    try:
        template = _compiled(source, field)
        with metered(budget):
            # Streamed and counted: a loop writing straight out stops at the limit.
            for chunk in template.generate(**context):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    raise TemplateProblem(
                        field, f"renders to more than {MAX_RENDERED_CHARS} characters"
                    )
                pieces.append(chunk)
    except BudgetExceeded as exc:
        if exc.exhausted:
            raise TemplateTooSlow(field, _too_slow(exc.reason, context)) from exc
        raise TemplateProblem(field, exc.reason, line=_traceback_line(exc)) from exc
    except SecurityError as exc:
        raise TemplateProblem(field, f"not allowed in a template: {exc}") from exc
    except UndefinedError as exc:
        raise TemplateProblem(field, f"missing value: {exc.message}") from exc
    except RecursionError as exc:
        raise TemplateProblem(field, "nested too deeply to render") from exc
    except MemoryError as exc:
        raise TemplateProblem(field, "needs too much memory to render") from exc
    except TemplateProblem:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the user's template raised is its problem
        # TypeError, ValueError, AttributeError (`1|dictsort`), TemplateRuntimeError
        # (`{% set x.y = 1 %}`), AssertionError (`|truncate` with a long end)...: the
        # template fails, for this contact; it must not fail a whole drafting batch.
        reason = str(exc) or type(exc).__name__
        raise TemplateProblem(field, f"cannot render: {reason}", line=_traceback_line(exc)) from exc
    return "".join(pieces)


def _too_slow(reason: str, context: dict[str, Any]) -> str:
    who = str(context.get("full_name") or context.get("email") or "the contact")
    return f"the template {reason} for {who}: check loops"


def _line_of(source: str, name: str) -> int | None:
    for number, line in enumerate(source.splitlines(), start=1):
        if name in line:
            return number
    return None


def _traceback_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class EmailTemplateFields(BaseModel):
    """Fields of an email template."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    category: TemplateCategory = TemplateCategory.CAMPAIGN
    subject: Text = Field(min_length=1, max_length=998)
    body: Text = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    body_html: Text | None = Field(default=None, max_length=MAX_TEMPLATE_CHARS)

    @field_validator("name", "subject")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    def check(self) -> list[str]:
        """Check every part renders in the sandbox; return the variables used."""
        if "\n" in self.subject or "\r" in self.subject:
            raise TemplateProblem("subject", "must be a single line")
        used = check_template(self.subject, field="subject")
        used |= check_template(self.body, field="body")
        if self.body_html is not None:
            used |= check_template(self.body_html, field="body_html")
        return sorted(used)


class EmailTemplateUpdate(BaseModel):
    """A partial change to a template."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    category: TemplateCategory | None = None
    subject: Text | None = Field(default=None, min_length=1, max_length=998)
    body: Text | None = Field(default=None, min_length=1, max_length=MAX_TEMPLATE_CHARS)
    body_html: Text | None = Field(default=None, max_length=MAX_TEMPLATE_CHARS)

    def apply_to(self, current: EmailTemplateFields) -> EmailTemplateFields:
        """Return the template with this change applied, validated as a whole."""
        merged = current.model_dump(include=set(EmailTemplateFields.model_fields))
        merged.update(self.model_dump(exclude_unset=True))
        return EmailTemplateFields.model_validate(merged)


class EmailTemplate(EmailTemplateFields):
    """A stored template."""

    model_config = ConfigDict(extra="ignore")

    id: int
    variables: list[str]
    created_by: int | None = None
    created_at: datetime
    updated_at: datetime
