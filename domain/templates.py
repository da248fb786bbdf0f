"""Email templates: Jinja2 rendered in the sandbox, checked before they are stored."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.errors import InvalidInput
from domain.fields import Text


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
def _environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment (thread-safe for rendering), made on first use."""
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    """Compile a template once: a launch renders the same few templates thousands of times."""
    return _environment().from_string(source)


class TemplateProblem(InvalidInput):
    """A template that cannot be used: where and why."""

    def __init__(self, field: str, reason: str, *, line: int | None = None) -> None:
        where = f"{field}, line {line}" if line else field
        super().__init__(f"{where}: {reason}", field=field)
        self.line = line
        self.reason = reason


def check_template(source: str, *, field: str) -> set[str]:
    """Check a template parses, uses only known variables and renders in the sandbox.

    Returns the variables it uses. Raises TemplateProblem with the line and reason.
    """
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(field, f"longer than {MAX_TEMPLATE_CHARS} characters")
    env = _environment()
    try:
        parsed = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", line=exc.lineno) from exc
    used = meta.find_undeclared_variables(parsed)
    unknown = sorted(used - TEMPLATE_VARIABLES.keys())
    if unknown:
        known = ", ".join(sorted(TEMPLATE_VARIABLES))
        raise TemplateProblem(
            field,
            f"unknown variable(s) {', '.join(unknown)}; available: {known}",
            line=_line_of(source, unknown[0]),
        )
    render_text(source, TEMPLATE_VARIABLES, field=field)
    return set(used)


def render_text(source: str, context: dict[str, Any], *, field: str = "template") -> str:
    """Render a template in the sandbox; raise TemplateProblem if it cannot render."""
    try:
        template = _compiled(source)
        rendered = template.render(**context)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", line=exc.lineno) from exc
    except SecurityError as exc:
        raise TemplateProblem(field, f"not allowed in a template: {exc}") from exc
    except UndefinedError as exc:
        raise TemplateProblem(field, f"missing value: {exc.message}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateProblem(field, f"cannot render: {exc}", line=_traceback_line(exc)) from exc
    if len(rendered) > MAX_RENDERED_CHARS:
        raise TemplateProblem(field, f"renders to more than {MAX_RENDERED_CHARS} characters")
    return rendered


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
