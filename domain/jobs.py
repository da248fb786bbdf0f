"""Jobs: multi-step outreach runs, their parameters, tasks and the planner."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.audience import AudienceCriteria
from domain.cadence import Channel
from domain.campaigns import Cadence as Cadence  # re-exported: defined with the campaigns
from domain.campaigns import CadenceStep as CadenceStep  # that carry a cadence
from domain.campaigns import Campaign, field_errors
from domain.errors import InvalidTransition
from domain.fields import STORED, Id, Label, Text
from domain.templates import MAX_TEMPLATE_CHARS


class JobStatus(StrEnum):
    """Where a job is, as in the original system."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobKind(StrEnum):
    """What a job is for."""

    #: Outreach: a campaign's (or the jobs API's) multi-step cadence of drafted emails.
    CAMPAIGN = "campaign"
    #: The organization's one replies inbox: the reply cards that answer no campaign job
    #: (issue 12). It runs for ever: it never finishes, and it cannot be paused or cancelled.
    INBOX = "inbox"


#: The name of an organization's replies inbox job; shown as "Replies inbox".
INBOX_JOB_NAME: Final = "Replies"


class TaskKind(StrEnum):
    """What a job task does."""

    DRAFT_EMAIL = "draft_email"
    SEND_EMAIL = "send_email"
    CREATE_TASK = "create_task"
    SCHEDULE_CALL = "schedule_call"
    CHECK_PORTAL = "check_portal"
    UPDATE_PROFILE = "update_profile"
    RESEARCH = "research"
    FOLLOW_UP = "follow_up"
    CREATE_DEAL = "create_deal"
    # A cadence's LinkedIn step: a card for the rep (connect, comment, message).
    LINKEDIN_TOUCH = "linkedin_touch"
    # Internal: post a drafted card's message to Slack, paced by Slack's rate limit on
    # its own worker so that drafting is never held up by posting.
    POST_CARD = "post_card"
    # Internal: draft the answer of a reply card (issue 12) with Replies.draft_for, then
    # queue its post; the card belongs to the job of the campaign send it answers.
    DRAFT_REPLY = "draft_reply"


# Kinds whose tasks count in a job's task metrics (posting is bookkeeping, not work).
COUNTED_KINDS: Final = frozenset(
    k for k in TaskKind if k not in (TaskKind.POST_CARD, TaskKind.DRAFT_REPLY)
)


class TaskStatus(StrEnum):
    """Where a task is."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EnrollmentStatus(StrEnum):
    """Where a contact is in a job's cadence."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"


TERMINAL_JOB_STATES: Final = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_JOB_MOVES: Final[dict[JobStatus, frozenset[JobStatus]]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.PAUSED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.PAUSED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def check_job_move(current: JobStatus, to: JobStatus) -> None:
    """Raise InvalidTransition unless a job may go from `current` to `to`."""
    if to not in _JOB_MOVES[current]:
        raise InvalidTransition(f"a {current.value} job cannot become {to.value}")


# --- parameters -------------------------------------------------------------------------

#: The most stale clients a job may target (`--stale-top`, `stale_top`).
MAX_STALE_TOP: Final = 1000


class TargetSelection(BaseModel):
    """Who a job reaches: explicit clients/contacts/emails, and/or audience filters."""

    model_config = ConfigDict(extra="forbid")

    client_ids: list[Id] = Field(default_factory=list, max_length=10_000)
    contact_ids: list[Id] = Field(default_factory=list, max_length=100_000)
    emails: list[Annotated[Text, Field(max_length=320)]] = Field(
        default_factory=list, max_length=10_000
    )
    filters: AudienceCriteria | None = None
    stale_top: int | None = Field(
        default=None,
        ge=1,
        le=MAX_STALE_TOP,
        description="Only the reachable contacts of the N best-ranked stale clients of the "
        "daily ranking (GET /api/marketing/stale-clients), each client's best contact first.",
    )

    @field_validator("client_ids", "contact_ids")
    @classmethod
    def _unique(cls, values: list[int]) -> list[int]:
        seen: set[int] = set()
        for value in values:
            if value in seen:
                raise ValueError(f"{value} is listed more than once; list each id once")
            seen.add(value)
        return values

    @field_validator("emails")
    @classmethod
    def _emails(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip().lower() for v in values if v.strip()]
        bad = [v for v in cleaned if "@" not in v or " " in v]
        if bad:
            raise ValueError(f"not an email address: {bad[0]}")
        return list(dict.fromkeys(cleaned))

    @model_validator(mode="after")
    def _something(self) -> TargetSelection:
        if not (
            self.client_ids or self.contact_ids or self.emails or self.filters or self.stale_top
        ):
            raise ValueError(
                "a job needs a target: clients, contacts, emails, filters or stale_top"
            )
        return self


class StepTemplate(BaseModel):
    """The email of one cadence step: a stored template or inline Jinja2."""

    model_config = ConfigDict(extra="forbid")

    template_id: Id | None = None
    subject: Text | None = Field(default=None, max_length=998)
    body: Text | None = Field(default=None, max_length=MAX_TEMPLATE_CHARS)
    variables: dict[Label, Annotated[Text, Field(max_length=5000)]] = Field(
        default_factory=dict, max_length=50
    )

    @model_validator(mode="after")
    def _one_source(self) -> StepTemplate:
        inline = self.subject is not None or self.body is not None
        if self.template_id is None and not (self.subject and self.body):
            raise ValueError("a step needs a template_id, or both subject and body")
        if self.template_id is not None and inline:
            raise ValueError("a step takes a template_id or an inline subject/body, not both")
        return self


@dataclass(frozen=True)
class PlannedStep:
    """A cadence step as the engine runs it: its index, day, channel and email template."""

    index: int
    day: int
    channel: Channel
    #: The index in `JobParams.templates` of an email step's template; None for others.
    template_index: int | None
    title: str | None = None
    description: str | None = None


class Behaviour(BaseModel):
    """How a human takes part in a job."""

    model_config = ConfigDict(extra="forbid")

    # Strict: "yes" or 1 is not a choice a person made (a typo would turn auto-approve on).
    review_mode: StrictBool = True
    edit_mode: StrictBool = True
    bulk_mode: StrictBool = False
    batch_size: int = Field(default=50, ge=1, le=1000)
    auto_approve: StrictBool = False


class PortalCheck(BaseModel):
    """Lender portals to check (a human's task); credentials are stored encrypted."""

    model_config = ConfigDict(extra="forbid")

    urls: list[AnyHttpUrl] = Field(default_factory=list, max_length=50)
    username: Text | None = Field(default=None, max_length=320)
    password: SecretStr | None = Field(default=None, max_length=1000)


#: What an update_profile task may change on its contact.
PROFILE_FIELDS: Final = frozenset({"add_tags", "remove_tags", "role_code", "lead_score", "title"})


class TaskTemplate(BaseModel):
    """A task a job creates per contact, e.g. 'call after step 2' (`after_step`: the
    cadence step, counted from 0, the task is created with)."""

    model_config = ConfigDict(extra="forbid")

    kind: TaskKind
    title: Text = Field(min_length=1, max_length=300)
    description: Text | None = Field(default=None, max_length=5000)
    after_step: int = Field(default=0, ge=0, le=100)
    changes: dict[Label, object] | None = Field(
        default=None,
        max_length=10,
        description="For `update_profile`: what to change (add_tags, remove_tags, role_code, "
        "lead_score, title).",
    )

    @model_validator(mode="after")
    def _runnable(self) -> TaskTemplate:
        if self.kind in (TaskKind.POST_CARD, TaskKind.DRAFT_REPLY):
            raise ValueError(f"{self.kind.value} is Salesbot's own task, not a task template")
        if self.kind in (TaskKind.SEND_EMAIL, TaskKind.DRAFT_EMAIL, TaskKind.FOLLOW_UP):
            raise ValueError(
                f"a {self.kind.value} task template has no email to send: add an email step "
                "to the cadence (with its template) instead"
            )
        if self.kind == TaskKind.UPDATE_PROFILE:
            if not self.changes:
                raise ValueError(
                    "an update_profile task template needs `changes`, e.g. "
                    '{"add_tags": ["re-engaged"]}'
                )
            unknown = set(self.changes) - PROFILE_FIELDS
            if unknown:
                raise ValueError(
                    f"update_profile cannot change {', '.join(sorted(unknown))}; it changes "
                    f"{', '.join(sorted(PROFILE_FIELDS))}"
                )
        elif self.changes:
            raise ValueError("`changes` is for update_profile task templates only")
        return self


class JobGuard(BaseModel):
    """A job's own deliverability thresholds (instead of the organization's)."""

    model_config = ConfigDict(extra="forbid")

    max_bounce_rate: float | None = Field(default=None, gt=0, le=1)
    max_opt_out_rate: float | None = Field(default=None, gt=0, le=1)
    min_sends: int | None = Field(default=None, ge=1, le=100_000)


class JobParams(BaseModel):
    """Everything a job runs on (stored as the job's `params`)."""

    model_config = ConfigDict(extra="forbid")

    target: TargetSelection
    templates: list[StepTemplate] = Field(min_length=1, max_length=20)
    cadence: Cadence = Field(default_factory=Cadence)
    behaviour: Behaviour = Field(default_factory=Behaviour)
    portal: PortalCheck | None = None
    task_templates: list[TaskTemplate] = Field(default_factory=list, max_length=20)
    review_channel_id: Text | None = Field(default=None, max_length=64)
    guard: JobGuard | None = None

    @model_validator(mode="after")
    def _steps(self) -> JobParams:
        if self.cadence.steps is None:
            if len(self.templates) > len(self.cadence.days):
                raise field_errors(
                    [
                        (
                            ("templates",),
                            f"{len(self.templates)} templates but only "
                            f"{len(self.cadence.days)} cadence days: give one day per template",
                            len(self.templates),
                        )
                    ]
                )
            return self
        emails = self.cadence.email_steps()
        if emails > len(self.templates):
            raise field_errors(
                [
                    (
                        ("cadence", "steps"),
                        f"the cadence has {emails} email steps but the job has only "
                        f"{len(self.templates)} template{'' if len(self.templates) == 1 else 's'}"
                        ": give one template per email step",
                        emails,
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _tasks_within_cadence(self, info: ValidationInfo) -> JobParams:
        """Refuse a task template after a step the cadence does not have: it would never run."""
        if isinstance(info.context, dict) and info.context.get("stored") is True:
            return self  # a stored job is served as it was accepted; its enrollments go on
        steps = self.steps
        late = [
            (
                ("task_templates", n, "after_step"),
                f"after_step {task.after_step} is past the cadence, which has {steps} "
                f"step{'' if steps == 1 else 's'} (after_step counts from 0, so 0 to "
                f"{steps - 1})",
                task.after_step,
            )
            for n, task in enumerate(self.task_templates)
            if task.after_step >= steps
        ]
        if late:
            raise field_errors(late)
        return self

    def plan(self) -> list[PlannedStep]:
        """Return the cadence's steps in order, each with its email template's index."""
        if self.cadence.steps is None:
            return [
                PlannedStep(index=i, day=day, channel=Channel.EMAIL, template_index=i)
                for i, day in enumerate(self.cadence.days[: len(self.templates)])
            ]
        planned: list[PlannedStep] = []
        emails = 0
        for i, step in enumerate(self.cadence.steps):
            template = None
            if step.channel == Channel.EMAIL:
                template, emails = emails, emails + 1
            planned.append(
                PlannedStep(
                    index=i,
                    day=step.day,
                    channel=step.channel,
                    template_index=template,
                    title=step.title,
                    description=step.description,
                )
            )
        return planned

    def template_index(self, step: int) -> int | None:
        """Return the template index of cadence step `step` (None: not an email step)."""
        plan = self.plan()
        return plan[step].template_index if 0 <= step < len(plan) else None

    @property
    def steps(self) -> int:
        """How many steps the cadence has (emails, LinkedIn touches, calls, tasks)."""
        return len(self.plan())


class CreateJobRequest(BaseModel):
    """A new job, as the original system's jobs API takes it."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=5000)
    campaign_id: Id | None = None
    params: JobParams


class UpdateJobRequest(BaseModel):
    """A change to a job: name, description, behaviour."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=5000)
    behaviour: Behaviour | None = None


def params_from_campaign(campaign: Campaign) -> JobParams:
    """Derive a job's params from a campaign's targeting, templates and cadence (its
    multi-channel `cadence` when it has one, else an all-email cadence on `cadence_days`)."""
    if not campaign.email_template_ids:
        raise ValueError(
            f"campaign {campaign.name!r} has no email templates; add email_template_ids first"
        )
    if campaign.cadence is not None and campaign.cadence.steps is not None:
        cadence = campaign.cadence.model_copy(deep=True)
    else:
        cadence = Cadence(days=campaign.cadence_days[: max(1, len(campaign.email_template_ids))])
    return JobParams(
        target=TargetSelection(filters=campaign.criteria()),
        templates=[StepTemplate(template_id=t) for t in campaign.email_template_ids],
        cadence=cadence,
        review_channel_id=campaign.review_channel_id,
    )


# --- planning ---------------------------------------------------------------------------


def batches(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    """Split ids into batches of at most `size`, keeping their order."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    batch: list[int] = []
    for item in ids:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


#: The task each channel's step becomes: an email's draft, or a card for the rep.
STEP_TASKS: Final[dict[Channel, TaskKind]] = {
    Channel.EMAIL: TaskKind.DRAFT_EMAIL,
    Channel.LINKEDIN: TaskKind.LINKEDIN_TOUCH,
    Channel.CALL: TaskKind.SCHEDULE_CALL,
    Channel.TASK: TaskKind.CREATE_TASK,
}
#: The title of a rep's step without its own (the Slack card tells a custom one apart).
STEP_TITLES: Final[dict[Channel, str]] = {
    Channel.LINKEDIN: "LinkedIn touch",
    Channel.CALL: "Call",
    Channel.TASK: "Task",
}


def step_task_rows(
    params: JobParams,
    step: int,
    *,
    contact_id: int,
    enrollment_id: int,
    time_zone: str | None = None,
) -> list[dict[str, object]]:
    """The tasks cadence step `step` of a contact becomes: its own (the email's draft, a
    LinkedIn/call/task card with Done / Skip) and the job's task templates planned with
    it (`after_step`). Each row is a dict of kind, step, contact_id and input."""
    planned = params.plan()[step]
    own: dict[str, object] = {"enrollment_id": enrollment_id, "cadence_step": step}
    if time_zone:
        own["time_zone"] = time_zone
    if planned.channel != Channel.EMAIL:
        own.update(
            channel=planned.channel.value,
            title=planned.title or STEP_TITLES[planned.channel],
            description=planned.description,
        )
    rows: list[dict[str, object]] = [
        {
            "kind": STEP_TASKS[planned.channel].value,
            "step": step,
            "contact_id": contact_id,
            "input": own,
        }
    ]
    for template in params.task_templates:
        if template.after_step != step:
            continue
        extra: dict[str, object] = {
            "enrollment_id": enrollment_id,
            "title": template.title,
            "description": template.description,
        }
        if template.changes:
            extra["changes"] = dict(template.changes)
        rows.append(
            {"kind": template.kind.value, "step": step, "contact_id": contact_id, "input": extra}
        )
    return rows


def due_at(enrolled_at: datetime, cadence_days: Sequence[int], step: int) -> datetime:
    """When step `step` (0-based) of a cadence is due for a contact enrolled at `enrolled_at`."""
    return enrolled_at + timedelta(days=cadence_days[step])


# --- views ------------------------------------------------------------------------------

JOB_METRICS: Final = (
    "total_tasks",
    "completed_tasks",
    "failed_tasks",
    "cards_created",
    "cards_approved",
    "cards_executed",
    "emails_sent",
    "errors_count",
)


class Job(BaseModel):
    """A job as the API and Slack show it."""

    id: int
    org_id: int
    owner_id: int | None
    campaign_id: int | None
    kind: JobKind = Field(
        default=JobKind.CAMPAIGN,
        description="`campaign`: an outreach job; `inbox`: the organization's replies inbox, "
        "which holds the reply cards that answer no campaign, never finishes and cannot be "
        "paused or cancelled.",
    )
    name: str
    description: str | None
    status: JobStatus
    params: dict[str, object]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_run_at: datetime | None
    total_tasks: int = 0
    completed_tasks: int = 0
    failed_tasks: int = 0
    cards_created: int = 0
    cards_approved: int = 0
    cards_executed: int = 0
    emails_sent: int = 0
    errors_count: int = 0
    last_error: str | None = Field(
        default=None,
        description="The latest failure: planning stopped, a card not posted, an email not sent.",
    )
    cancelled_by: int | None = Field(default=None, description="The user who cancelled the job.")

    def parsed_params(self) -> JobParams:
        """Return the params as a validated model (a campaign job's; the inbox has none)."""
        return JobParams.model_validate(self.params, context=STORED)

    @property
    def is_inbox(self) -> bool:
        """True for the organization's replies inbox job."""
        return self.kind == JobKind.INBOX

    @property
    def review_channel_id(self) -> str | None:
        """The channel the job's cards are reviewed in, if it names one (read without
        validating the params: the inbox job has none)."""
        channel = self.params.get("review_channel_id")
        return channel if isinstance(channel, str) and channel else None


class JobTaskView(BaseModel):
    """A task of a job."""

    id: int
    org_id: int
    job_id: int
    contact_id: int | None
    step: int
    batch: int
    kind: TaskKind
    status: TaskStatus
    input: dict[str, object]
    output: dict[str, object]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error_message: str | None
    retry_count: int
