"""Outreach use cases: launch a campaign as a job, plan it, draft cards, act on cards.

Each public method owns its units of work; slow calls (Claude, Slack, Gmail) happen
between transactions, never inside one, and pass ids rather than rows.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from domain import faults
from domain.campaigns import CampaignStatus
from domain.cards import (
    Card,
    CardState,
    CardType,
    Priority,
    describe_refusal,
    draft_fingerprint,
)
from domain.clock import Clock
from domain.drafting import DraftModel, DraftRequest, draft_email
from domain.errors import (
    Conflict,
    ExternalServiceError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    NotPermitted,
    SalesbotError,
)
from domain.jobs import (
    TERMINAL_JOB_STATES,
    CreateJobRequest,
    Job,
    JobParams,
    JobStatus,
    JobTaskView,
    TaskKind,
    TaskStatus,
    batches,
    check_job_move,
    params_from_campaign,
)
from domain.mail import Mailer, OutgoingEmail, SendOutcome, SendStatus
from domain.templates import TemplateProblem, TemplateTooSlow, render_text

log = logging.getLogger(__name__)


# --- read models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactContext:
    """A contact with its client and order history, as drafting and cards need it."""

    contact_id: int
    email: str
    first_name: str | None
    last_name: str | None
    title: str | None
    role_code: str | None
    state: str | None
    client_id: int | None
    company_name: str | None
    company_domain: str | None
    last_order_at: datetime | None
    orders_last_year: int
    orders_year_before_last: int
    last_property_address: str | None
    last_contacted_at: datetime | None
    last_replied_at: datetime | None
    opted_out: bool
    email_status: str

    @property
    def full_name(self) -> str:
        """First and last name, or the address when there is none."""
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email

    @property
    def reachable(self) -> bool:
        """True when the contact may be emailed."""
        return not self.opted_out and self.email_status == "valid"


def template_variables(
    ctx: ContactContext,
    *,
    now: datetime,
    rep_name: str | None,
    rep_email: str | None,
    firm_name: str,
    campaign_name: str,
    step_number: int,
    unsubscribe_url: str,
) -> dict[str, Any]:
    """Return the variables a template is rendered with for one contact."""
    days = (now - ctx.last_order_at).days if ctx.last_order_at else None
    return {
        "first_name": ctx.first_name or "there",
        "last_name": ctx.last_name or "",
        "full_name": ctx.full_name,
        "email": ctx.email,
        "title": ctx.title or "",
        "role_code": ctx.role_code or "",
        "state": ctx.state or "",
        "company_name": ctx.company_name or "your team",
        "company_domain": ctx.company_domain or "",
        "last_order_date": ctx.last_order_at.date().isoformat() if ctx.last_order_at else "",
        "days_since_last_order": days if days is not None else "",
        "orders_last_year": ctx.orders_last_year,
        "last_property_address": ctx.last_property_address or "",
        "rep_name": rep_name or "",
        "rep_email": rep_email or "",
        "rep_phone": "",
        "firm_name": firm_name,
        "campaign_name": campaign_name,
        "step_number": step_number,
        "unsubscribe_url": unsubscribe_url,
    }


def rationale_for(ctx: ContactContext, *, now: datetime) -> str:
    """Say in a line why this contact is worth reaching: their ordering history."""
    if ctx.last_order_at is None:
        if ctx.company_name:
            return f"{ctx.company_name} has never ordered from us."
        return "Not linked to a client with orders."
    days = (now - ctx.last_order_at).days
    orders = ctx.orders_year_before_last
    per_month = orders / 12
    if per_month >= 1:
        rate = f"was {per_month:.0f}/month"
    elif orders:
        rate = f"{orders} order{'s' if orders != 1 else ''} in the year before"
    else:
        rate = "no orders in the year before"
    line = f"No orders in {days} day{'s' if days != 1 else ''} ({rate})."
    if ctx.last_replied_at:
        line += f" Last replied {ctx.last_replied_at.date().isoformat()}."
    return line


@dataclass(frozen=True)
class CardView:
    """Everything a chat message needs to show a card."""

    card: Card
    contact_name: str | None = None
    contact_email: str | None = None
    contact_title: str | None = None
    company_name: str | None = None
    campaign_name: str | None = None
    job_name: str | None = None
    step_number: int | None = None
    total_steps: int | None = None
    actor_slack_id: str | None = None
    owner_slack_id: str | None = None
    thread_emails: int = 0


# --- ports ------------------------------------------------------------------------------------


class ChatNotifier(Protocol):
    """Shows cards to humans (Slack in production)."""

    def post_card(
        self, view: CardView, *, channel: str | None, owner_slack_id: str | None
    ) -> tuple[str, str]:
        """Post a card; return (channel id, message ts). Raise ExternalServiceError."""
        ...

    def update_card(self, view: CardView) -> None:
        """Update a card's message in place after a transition."""
        ...

    def post_bulk(
        self,
        org_id: int,
        *,
        job_name: str,
        job_id: int,
        batch: int,
        cards: list[Card],
        channel: str | None,
        owner_slack_id: str | None,
    ) -> None:
        """Post one message for a batch of cards with an "Approve all" button."""
        ...


class SecretBoxPort(Protocol):
    """Encrypts secrets kept inside JSON params."""

    def encrypt(self, plaintext: str) -> str:
        """Encrypt text to a printable token."""
        ...


class OutreachUnitOfWork(Protocol):
    """The repositories outreach needs, in one transaction."""

    jobs: Any
    tasks: Any
    enrollments: Any
    cards: Any
    contexts: Any
    events: Any
    campaigns: Any
    templates: Any
    session: Any

    def __enter__(self) -> OutreachUnitOfWork: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...


@dataclass(frozen=True)
class Actor:
    """Who acts: a user of an organization, with their role and Slack id."""

    org_id: int
    user_id: int
    role: str
    slack_user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """True for admins, who may act on any card of their organization."""
        return self.role == "admin"


_JOB_VERBS: dict[JobStatus, str] = {
    JobStatus.CANCELLED: "cancel",
    JobStatus.PAUSED: "pause",
    JobStatus.RUNNING: "resume",
}
_CAMPAIGN_VERBS: dict[CampaignStatus, str] = {
    CampaignStatus.PAUSED: "pause",
    CampaignStatus.ACTIVE: "resume",
    CampaignStatus.COMPLETED: "complete",
    CampaignStatus.ARCHIVED: "archive",
}


@dataclass(frozen=True)
class LaunchResult:
    """A launched campaign: its job and how many contacts it will reach."""

    job: Job
    audience_count: int
    campaign_name: str


ContactSource = Callable[[Any, int, JobParams, datetime], Iterator[list[int]]]


# --- the service ---------------------------------------------------------------------------


class Outreach:
    """The outreach use cases, built once by the composition root."""

    def __init__(
        self,
        *,
        uow: Callable[[], OutreachUnitOfWork],
        clock: Clock,
        contact_source: ContactSource,
        audience_count: Callable[[Any, int, JobParams, datetime], int],
        unsubscribe_url: Callable[[int, int], str],
        mailer: Mailer | None = None,
        notifier: ChatNotifier | None = None,
        drafter: DraftModel | None = None,
        secrets: SecretBoxPort | None = None,
        work_lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._contact_source = contact_source
        self._audience_count = audience_count
        self._unsubscribe_url = unsubscribe_url
        self.mailer = mailer
        self.notifier = notifier
        self.drafter = drafter
        self._secrets = secrets
        # How long planning a job, or a card between approval and the outbox, may go
        # without progress before the recovery sweep takes it as abandoned.
        self.work_lease = work_lease

    # jobs ------------------------------------------------------------------------------

    def create_job(
        self,
        org_id: int,
        request: CreateJobRequest,
        *,
        owner_id: int | None,
        request_key: str | None = None,
    ) -> Job:
        """Create a pending job from the jobs API's request (planned by the recovery sweep).

        `request_key` names the request (an Idempotency-Key): the same request sent again
        returns the job it created instead of a second one.
        """
        params = request.params.model_copy(deep=True)
        with self._uow() as uow:
            if request_key is not None:
                earlier: Job | None = uow.jobs.find_by_request_key(org_id, request_key)
                if earlier is not None:
                    if earlier.name != request.name or earlier.campaign_id != request.campaign_id:
                        raise Conflict(
                            "this Idempotency-Key was used for another job; use a new key"
                        )
                    return earlier
            self._check_step_templates(uow, org_id, params)
            if request.campaign_id is not None:
                uow.campaigns.get(org_id, request.campaign_id)
            job: Job = uow.jobs.add(
                org_id,
                name=request.name,
                description=request.description,
                params=self._stored_params(params),
                owner_id=owner_id,
                campaign_id=request.campaign_id,
                request_key=request_key,
            )
            uow.commit()
        faults.reach("launch.committed")
        return job

    def launch_campaign(
        self,
        org_id: int,
        campaign_ref: str,
        *,
        owner_id: int | None,
        request_key: str | None = None,
        by_id: bool = False,
    ) -> LaunchResult:
        """Turn a campaign (by name or id; `by_id`: by id only) into a pending job and count
        its audience.

        `request_key` names the request (a Slack command's trigger id): the same request
        run again, after a crash, returns the job it created instead of a second one.
        """
        ref = campaign_ref.strip()
        if not ref:
            raise InvalidInput(
                "name the campaign to launch, e.g. `/campaign launch Q4 lender win-back`"
            )
        now = self._clock.now()
        with self._uow() as uow:
            campaign = None
            if ref.isdigit():
                try:
                    campaign = uow.campaigns.get(org_id, int(ref))
                except NotFound:
                    campaign = None
            if campaign is None and by_id:
                raise NotFound(f"campaign {ref} not found")
            if campaign is None:
                campaign = uow.campaigns.find_by_name(org_id, ref)
            if campaign is None:
                raise NotFound(f"no campaign named “{ref}”; `/campaign list` shows them")
            if request_key is not None:
                # Before the checks below: the campaign may have moved on since the first run.
                earlier: Job | None = uow.jobs.find_by_request_key(org_id, request_key)
                if earlier is not None:
                    if earlier.campaign_id != campaign.id:
                        raise Conflict(
                            "this request key was used to launch another campaign; use a new key"
                        )
                    count = self._audience_count(uow, org_id, earlier.parsed_params(), now)
                    return LaunchResult(
                        job=earlier, audience_count=count, campaign_name=campaign.name
                    )
            if campaign.status.value in ("completed", "archived"):
                raise InvalidInput(
                    f"campaign “{campaign.name}” is {campaign.status.value}; it cannot be launched"
                )
            try:
                params = params_from_campaign(campaign)
            except (ValueError, ValidationError) as exc:
                raise InvalidInput(str(exc).splitlines()[0]) from exc
            self._check_step_templates(uow, org_id, params)
            # One open job a campaign: a second launch would draft a second card (and, once
            # approved, a second email) for every contact the first one is still working on.
            for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED):
                for open_job in uow.jobs.list(
                    org_id, status=status.value, campaign_id=campaign.id, limit=1
                ):
                    raise Conflict(
                        f"campaign “{campaign.name}” already has job #{open_job.id}"
                        f" ({open_job.status.value}); let it finish, or cancel it with"
                        f" `/job cancel {open_job.id}`, before launching it again"
                    )
            count = self._audience_count(uow, org_id, params, now)
            job: Job = uow.jobs.add(
                org_id,
                name=f"{campaign.name} · launch",
                description=campaign.description,
                params=self._stored_params(params),
                owner_id=owner_id,
                campaign_id=campaign.id,
                request_key=request_key,
            )
            if campaign.status.value in ("draft", "paused"):
                fields = campaign.model_copy(update={"status": CampaignStatus.ACTIVE})
                uow.campaigns.update(org_id, campaign.id, fields, now=now)
            uow.commit()
        faults.reach("launch.committed")
        return LaunchResult(job=job, audience_count=count, campaign_name=campaign.name)

    def plan_job(self, org_id: int, job_id: int) -> int:
        """Start a pending job: enroll its contacts and create step-0 draft tasks in batches.

        Returns how many contacts were enrolled. Planning that fails marks the job failed
        with the reason (shown by the API and `/job status`) and raises PlanningFailed,
        instead of leaving a running job without tasks.
        """
        try:
            return self._plan_job(org_id, job_id)
        except (InvalidTransition, NotFound):
            raise  # not this planning's failure: the job is gone or was stopped
        except Exception as exc:  # noqa: BLE001 - recorded on the job, logged, raised again
            if isinstance(exc, SalesbotError):
                reason = f"planning failed: {exc.message}"
            else:
                error_id = uuid.uuid4().hex[:12]
                log.error(
                    "planning failed",
                    exc_info=exc,
                    extra={"job_id": job_id, "error_id": error_id},
                )
                reason = f"planning failed on our side (error id {error_id}); launch it again"
            try:
                self._stop_job(org_id, job_id, JobStatus.FAILED, reason=reason)
            except InvalidTransition:
                pass  # stopped meanwhile (cancelled): nothing more to record
            raise PlanningFailed(f"Job #{job_id} failed: {reason}") from exc

    def _plan_job(self, org_id: int, job_id: int) -> int:
        """Plan a job (see plan_job).

        Returns how many contacts were enrolled. Planning is taken under a lease
        (`jobs.plan_lease_until`, renewed at every chunk) and ends by recording
        `planned_at`: a second caller while it runs, or after it finished, does nothing,
        and a planner that died is replaced by the recovery sweep once its lease ran out.
        Each chunk commits on its own, so a large launch shows progress; planning again
        skips contacts already enrolled, so a resumed run finishes what a crash stopped.
        """
        now = self._clock.now()
        with self._uow() as uow:
            job: Job = uow.jobs.get(org_id, job_id)
            if not uow.jobs.claim_planning(
                org_id, job_id, now=now, lease_until=now + self.work_lease
            ):
                if job.status not in (JobStatus.PENDING, JobStatus.RUNNING):
                    check_job_move(job.status, JobStatus.RUNNING)
                return 0
            if job.status != JobStatus.RUNNING and not uow.jobs.set_status(
                org_id, job_id, JobStatus.RUNNING, expected=[JobStatus.PENDING], now=now
            ):
                return 0
            uow.commit()
            # Resumed planning numbers its batches after the ones already planned, so
            # "Approve all" of a batch never covers two.
            batch_no = uow.tasks.next_batch(org_id, job_id)
        faults.reach("plan.claimed")
        params = job.parsed_params()
        size = params.behaviour.batch_size
        enrolled = 0
        with self._uow() as uow:
            # One transaction per chunk of the audience (a thousand contacts); tasks are
            # numbered in batches of the job's batch_size for review and bulk approval.
            for chunk in self._contact_source(uow, org_id, params, now):
                mapping = uow.enrollments.add_many(org_id, job_id, chunk, next_due_at=now)
                rows: list[dict[str, Any]] = []
                for part in batches([cid for cid in chunk if cid in mapping], size):
                    for cid in part:
                        rows.append(
                            {
                                "kind": TaskKind.DRAFT_EMAIL.value,
                                "step": 0,
                                "batch": batch_no,
                                "contact_id": cid,
                                "input": {"enrollment_id": mapping[cid]},
                            }
                        )
                        rows.extend(
                            {
                                "kind": template.kind.value,
                                "step": 0,
                                "batch": batch_no,
                                "contact_id": cid,
                                "input": {
                                    "enrollment_id": mapping[cid],
                                    "title": template.title,
                                    "description": template.description,
                                },
                            }
                            for template in params.task_templates
                            if template.after_step == 0
                        )
                    batch_no += 1
                added = uow.tasks.add_many(org_id, job_id, rows)
                uow.jobs.bump(job_id, total_tasks=added)
                uow.jobs.extend_planning(job_id, lease_until=self._clock.now() + self.work_lease)
                enrolled += len(mapping)
                uow.commit()
                faults.reach("plan.chunk")
            uow.jobs.mark_planned(job_id, now=self._clock.now())
            # An empty audience ends the job; planning that only found contacts enrolled
            # before (a resumed run) leaves their tasks to run.
            if enrolled == 0 and uow.enrollments.count(job_id) == 0:
                uow.jobs.set_status(
                    org_id, job_id, JobStatus.SUCCEEDED, expected=[JobStatus.RUNNING], now=now
                )
            uow.commit()
        # The drafts may all be done already (a small audience): finish the job then.
        self.finish_job_if_done(org_id, job_id)
        return enrolled

    def set_job_status(
        self, org_id: int, job_id: int, to: JobStatus, *, by: Actor | None = None
    ) -> Job:
        """Pause, resume or cancel a job (`by`: who asks).

        `by` must have launched the job or be an admin, as for the job's cards; None is
        Salesbot itself or an API token not tied to a user. Cancelling cancels its pending
        tasks, stops its enrollments and withdraws its cards not yet sent: they can no
        longer be approved, and their messages say so.
        """
        if to in (JobStatus.CANCELLED, JobStatus.FAILED):
            return self._stop_job(org_id, job_id, to, by=by)
        now = self._clock.now()
        with self._uow() as uow:
            job: Job = uow.jobs.get(org_id, job_id)
            self._authorize_job(uow, by, job, verb=_JOB_VERBS.get(to, "change"))
            check_job_move(job.status, to)
            if not uow.jobs.set_status(org_id, job_id, to, expected=[job.status], now=now):
                raise InvalidInput("the job changed meanwhile; try again")
            uow.commit()
        if to == JobStatus.RUNNING:
            # Its cards may all have been decided while it was paused.
            self.finish_job_if_done(org_id, job_id)
        with self._uow() as uow:
            refreshed: Job = uow.jobs.get(org_id, job_id)
        return refreshed

    def _authorize_job(
        self, uow: OutreachUnitOfWork, actor: Actor | None, job: Job, *, verb: str
    ) -> None:
        if actor is None or actor.is_admin or job.owner_id in (None, actor.user_id):
            return
        owner = _person(uow, job.org_id, job.owner_id)
        raise NotPermitted(f"Only {owner}, who launched job #{job.id}, or an admin can {verb} it.")

    def authorize_campaign_status(
        self, actor: Actor | None, org_id: int, campaign_id: int, *, to: CampaignStatus
    ) -> None:
        """Refuse to pause, resume (or otherwise move) a campaign unless the actor created
        it or is an admin. A campaign without an owner (made by an API token not tied to a
        user) is an admin's to move: pausing a campaign stops every rep's jobs of it."""
        if actor is None or actor.is_admin:
            return
        verb = _CAMPAIGN_VERBS.get(to, "change the status of")
        with self._uow() as uow:
            campaign = uow.campaigns.get(org_id, campaign_id)
            if campaign.created_by == actor.user_id:
                return
            if campaign.created_by is None:
                raise NotPermitted(
                    f"Only an admin can {verb} the campaign “{campaign.name}”: nobody owns it."
                )
            owner = _person(uow, org_id, campaign.created_by)
        raise NotPermitted(
            f"Only {owner}, who created the campaign “{campaign.name}”, or an admin can {verb} it."
        )

    def _stop_job(
        self,
        org_id: int,
        job_id: int,
        to: JobStatus,
        *,
        by: Actor | None = None,
        reason: str | None = None,
    ) -> Job:
        """Cancel or fail a job: no more work runs, and its cards not yet sent are withdrawn.

        The cards are withdrawn before the job's row is taken (approvals take a card,
        then the job: the same order never deadlocks), and again after, for cards a
        draft batch wrote meanwhile (drafting reads the job's status under its lock, so
        none comes after). Each withdrawn card that has a message gets a queued update.
        """
        now = self._clock.now()
        verb = "cancelled" if to == JobStatus.CANCELLED else "failed"
        why = f"job #{job_id} {verb}"
        with self._uow() as uow:
            job: Job = uow.jobs.get(org_id, job_id)
            self._authorize_job(uow, by, job, verb=_JOB_VERBS.get(to, "change"))
            check_job_move(job.status, to)
            withdrawn = uow.cards.withdraw_for_job(org_id, job_id, reason=why, now=now)
            if not uow.jobs.set_status(
                org_id,
                job_id,
                to,
                expected=[job.status],
                now=now,
                last_error=reason,
                cancelled_by=by.user_id if by is not None and to == JobStatus.CANCELLED else None,
            ):
                raise InvalidInput("the job changed meanwhile; try again")
            if reason is not None:
                uow.jobs.bump(job_id, errors_count=1)
            uow.tasks.cancel_pending(org_id, job_id, now=now)
            uow.enrollments.stop_for_job(org_id, job_id, reason=f"job {verb}", now=now)
            withdrawn += uow.cards.withdraw_for_job(org_id, job_id, reason=why, now=now)
            if self.notifier is not None:
                uow.tasks.add_many(
                    org_id,
                    job_id,
                    [
                        {"kind": TaskKind.POST_CARD.value, "input": {"card_id": card_id}}
                        for card_id, ts in withdrawn
                        if ts
                    ],
                )
            uow.commit()
            stopped: Job = uow.jobs.get(org_id, job_id)
        log.info(
            "job stopped",
            extra={"job_id": job_id, "status": to.value, "cards_withdrawn": len(withdrawn)},
        )
        return stopped

    def finish_job_if_done(self, org_id: int, job_id: int) -> None:
        """Mark a running job succeeded once none of its tasks is open and every card is
        decided (sent, rejected, withdrawn, or failed with its reason).

        Called after each step that may be the last: a task finished, a card decided.
        Each caller asks after its own commit, so the last of concurrent ones sees all.
        """
        now = self._clock.now()
        with self._uow() as uow:
            if not uow.tasks.has_open(org_id, job_id) and not uow.cards.has_undecided(
                org_id, job_id
            ):
                uow.jobs.set_status(
                    org_id, job_id, JobStatus.SUCCEEDED, expected=[JobStatus.RUNNING], now=now
                )
                uow.commit()

    # recovery ----------------------------------------------------------------------------

    def plan_unplanned(self, *, limit: int = 20) -> int:
        """Plan jobs left pending or half planned (a REST launch, a planner that died)."""
        with self._uow() as uow:
            found: list[tuple[int, int]] = uow.jobs.unplanned(now=self._clock.now(), limit=limit)
        planned = 0
        for org_id, job_id in found:
            try:
                self.plan_job(org_id, job_id)
                planned += 1
            except (InvalidInput, InvalidTransition, NotFound, PlanningFailed) as exc:
                # PlanningFailed is final: the job is marked failed with the reason.
                log.warning("planning failed", extra={"job_id": job_id, "reason": exc.message})
        return planned

    def recover_cards(self, *, limit: int = 100) -> int:
        """Carry on cards left `approved` or `executing` past the work lease, exactly once.

        `approved`: executed (approved → executing is a compare-and-set, so a live
        executor and the sweep never both send). `executing` with no outbox row, or a
        failed one: nothing was sent, so the card goes back to `approved` and is executed
        again (the outbox's unique `card_id` keeps one row per card whatever races).
        `executing` with a sent row: the card is told. Rows queued or being sent belong
        to the outbox, which reconciles them through `rfc822msgid:` and tells the card.
        """
        now = self._clock.now()
        before = now - self.work_lease
        with self._uow() as uow:
            stale = uow.cards.stale_in_flight(before=before, limit=limit)
            for item in stale:
                if item.state == CardState.EXECUTING and item.sent is None:
                    uow.cards.reset_unsent(item.org_id, item.card_id, before=before, now=now)
            uow.commit()
        for item in stale:
            log.warning(
                "carrying on a card its executor left",
                extra={"card_id": item.card_id, "state": item.state.value},
            )
            if item.sent is not None:
                self.finish_send(item.org_id, item.sent.email_send_id, item.card_id, item.sent)
            elif item.sends_email:
                self.execute_card(item.org_id, item.card_id)
            else:
                system = Actor(org_id=item.org_id, user_id=0, role="admin")
                self._complete_human_card(system, item.card_id)
        return len(stale)

    def finish_idle_jobs(self, *, after_id: int, limit: int = 100) -> list[int]:
        """Finish planned running jobs with no open task (a crash after their last task).

        Returns the ids looked at, so the sweep can go on after the last one next time.
        """
        with self._uow() as uow:
            found: list[tuple[int, int]] = uow.jobs.idle_running(after_id=after_id, limit=limit)
        for org_id, job_id in found:
            self.finish_job_if_done(org_id, job_id)
        return [job_id for _, job_id in found]

    def cancel_orphaned_tasks(self) -> int:
        """Cancel running tasks whose job ended while their worker was gone."""
        with self._uow() as uow:
            cancelled: int = uow.tasks.cancel_orphaned(now=self._clock.now())
            uow.commit()
        return cancelled

    # tasks -------------------------------------------------------------------------------

    def run_task(self, task: JobTaskView, *, org_id: int) -> None:
        """Execute one claimed task; a failure is recorded on the task and counted."""
        try:
            if task.kind == TaskKind.POST_CARD:
                self._post_task(task, org_id=org_id)
            elif task.kind in (TaskKind.DRAFT_EMAIL, TaskKind.FOLLOW_UP):
                self._draft_task(task, org_id=org_id)
            elif task.kind == TaskKind.SEND_EMAIL:
                card_id = int(str(task.input["card_id"]))
                self.execute_card(org_id, card_id)
                self._finish_task(org_id, task, TaskStatus.SUCCEEDED, output={"card_id": card_id})
            elif task.kind == TaskKind.UPDATE_PROFILE:
                self._update_profile_task(task, org_id=org_id)
            else:
                self._human_task(task, org_id=org_id)
        except (InvalidInput, NotFound, ExternalServiceError, TemplateProblem) as exc:
            log.warning(
                "task failed",
                extra={"task_id": task.id, "job_id": task.job_id, "reason": exc.message},
            )
            self._finish_task(org_id, task, TaskStatus.FAILED, error=exc.message)

    def fail_tasks(self, tasks: list[JobTaskView], *, reason: str) -> None:
        """Record that claimed tasks failed (they stay visible with the reason)."""
        now = self._clock.now()
        with self._uow() as uow:
            for task in tasks:
                if uow.tasks.finish(task.id, TaskStatus.FAILED, now=now, error=reason):
                    if task.kind != TaskKind.POST_CARD:
                        uow.jobs.bump(task.job_id, failed_tasks=1)
                    uow.jobs.note_error(task.job_id, f"task #{task.id} ({task.kind}): {reason}")
            uow.commit()

    def _finish_task(
        self,
        org_id: int,
        task: JobTaskView,
        status: TaskStatus,
        *,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        now = self._clock.now()
        with self._uow() as uow:
            if uow.tasks.finish(task.id, status, now=now, output=output, error=error):
                if status == TaskStatus.SUCCEEDED:
                    uow.jobs.bump(task.job_id, completed_tasks=1)
                else:
                    uow.jobs.bump(task.job_id, failed_tasks=1)
                    uow.jobs.note_error(task.job_id, f"task #{task.id} ({task.kind}): {error}")
            uow.commit()
        self.finish_job_if_done(org_id, task.job_id)

    def _draft_task(self, task: JobTaskView, *, org_id: int) -> None:
        self.run_draft_batch([task], org_id=org_id)

    def run_draft_batch(self, tasks: list[JobTaskView], *, org_id: int) -> None:
        """Draft the email cards of claimed draft tasks of one org, a batch at a time.

        One transaction reads every contact's context, drafts happen outside any
        transaction (Claude is slow), and one transaction writes the cards, finishes
        the tasks and queues the Slack posts.
        """
        now = self._clock.now()
        by_job: dict[int, list[JobTaskView]] = {}
        for task in tasks:
            by_job.setdefault(task.job_id, []).append(task)
        for job_id, job_tasks in by_job.items():
            self._draft_job_batch(org_id, job_id, job_tasks, now=now)

    def _draft_job_batch(
        self, org_id: int, job_id: int, tasks: list[JobTaskView], *, now: datetime
    ) -> None:
        with self._uow() as uow:
            job: Job = uow.jobs.get(org_id, job_id)
            params = job.parsed_params()
            contexts: dict[int, ContactContext] = uow.contexts.contact_contexts(
                org_id, [t.contact_id for t in tasks if t.contact_id is not None], now=now
            )
            sources: dict[int, tuple[str, str]] = {}
            for step, step_template in enumerate(params.templates):
                if step_template.template_id is not None:
                    stored = uow.templates.get(org_id, step_template.template_id)
                    sources[step] = (stored.subject, stored.body)
                else:
                    sources[step] = (step_template.subject or "", step_template.body or "")
            rep_name, rep_email = uow.contexts.user_name(org_id, job.owner_id)
            firm = uow.contexts.firm_name(org_id)
            campaign_name = job.name.split(" · ")[0]
            if job.campaign_id is not None:
                campaign_name = uow.campaigns.get(org_id, job.campaign_id).name
        auto = params.behaviour.auto_approve or not params.behaviour.review_mode
        cards: list[dict[str, Any]] = []
        failures: list[tuple[JobTaskView, str]] = []
        # A template that ran out of its render budget (it loops) is not tried again for
        # the rest of the batch: each try would hold this worker thread for the budget.
        too_slow: dict[int, str] = {}
        for task in tasks:
            ctx = contexts.get(task.contact_id) if task.contact_id is not None else None
            if task.step in too_slow:
                failures.append((task, too_slow[task.step]))
                continue
            try:
                if ctx is None:
                    raise InvalidInput(f"contact {task.contact_id} not found")
                if not ctx.reachable:
                    raise InvalidInput(f"{ctx.email} opted out or cannot receive email; skipped")
                if task.step >= len(params.templates):
                    raise InvalidInput(f"the job has no template for step {task.step + 1}")
                cards.append(
                    self._card_row(
                        task,
                        ctx,
                        params,
                        sources[task.step],
                        now=now,
                        auto=auto,
                        owner_id=job.owner_id,
                        rep=(rep_name, rep_email),
                        firm=firm,
                        campaign_name=campaign_name,
                        goal=job.description,
                    )
                )
            except TemplateTooSlow as exc:
                failures.append((task, exc.message))
                too_slow[task.step] = (
                    f"not drafted, the template of step {task.step + 1} is too slow ({exc.message})"
                )
                log.warning(
                    "template over its render budget",
                    extra={"job_id": job_id, "step": task.step + 1, "reason": exc.message},
                )
            except (InvalidInput, TemplateProblem) as exc:
                failures.append((task, exc.message))
        with self._uow() as uow:
            # Only the tasks this claim still holds: one whose lease ran out while this
            # batch drafted is another worker's now, and its card must not be made twice.
            mine = uow.tasks.lock_claimed(tasks)
            if len(mine) < len(tasks):
                log.warning(
                    "draft tasks were claimed again while drafting; leaving them",
                    extra={"job_id": job_id, "tasks": [t.id for t in tasks if t.id not in mine]},
                )
                cards = [row for row in cards if row["task_id"] in mine]
                failures = [(task, reason) for task, reason in failures if task.id in mine]
            if uow.jobs.lock_status(org_id, job_id) in TERMINAL_JOB_STATES:
                # Cancelled (or failed) while these were drafted: no card for a stopped job.
                for task in tasks:
                    if task.id in mine:
                        uow.tasks.finish(task.id, TaskStatus.CANCELLED, now=now)
                uow.commit()
                return
            created = uow.cards.add_many(org_id, cards)
            finished = uow.tasks.finish_many(
                [
                    (row["task_id"], {"card_id": card_id})
                    for row, card_id in zip(cards, created, strict=True)
                ],
                TaskStatus.SUCCEEDED,
                now=now,
            )
            failed = 0
            for task, reason in failures:
                failed += uow.tasks.finish(task.id, TaskStatus.FAILED, now=now, error=reason)
            uow.jobs.bump(
                job_id,
                cards_created=len(created),
                cards_approved=len(created) if auto else 0,
                completed_tasks=finished,
                failed_tasks=failed,
            )
            if failed:
                last, why = failures[-1]
                uow.jobs.note_error(job_id, f"task #{last.id} ({last.kind}): {why}", count=failed)
            bulk = params.behaviour.bulk_mode and not auto
            if self.notifier is not None and created and bulk:
                # Bulk mode: one message per finished batch, with "Approve all N".
                for batch in sorted({row["batch"] for row in cards}):
                    if uow.tasks.batch_drafted(org_id, job_id, batch) and uow.events.claim(
                        "bulk_post", f"{job_id}:{batch}", org_id=org_id
                    ):
                        uow.tasks.add_many(
                            org_id,
                            job_id,
                            [
                                {
                                    "kind": TaskKind.POST_CARD.value,
                                    "batch": batch,
                                    "input": {"bulk_batch": batch},
                                }
                            ],
                        )
            elif self.notifier is not None and created:
                uow.tasks.add_many(
                    org_id,
                    job_id,
                    [
                        {
                            "kind": TaskKind.POST_CARD.value,
                            "step": row["step"],
                            "batch": row["batch"],
                            "contact_id": row["contact_id"],
                            "input": {"card_id": card_id},
                        }
                        for row, card_id in zip(cards, created, strict=True)
                    ],
                )
            uow.commit()
        faults.reach("draft.committed")
        for reason in {r for _, r in failures}:
            log.info("draft skipped", extra={"job_id": job_id, "reason": reason})
        if auto:
            for card_id in created:
                self.execute_card(org_id, card_id)
        self.finish_job_if_done(org_id, job_id)

    def _card_row(
        self,
        task: JobTaskView,
        ctx: ContactContext,
        params: JobParams,
        source: tuple[str, str],
        *,
        now: datetime,
        auto: bool,
        owner_id: int | None,
        rep: tuple[str | None, str | None],
        firm: str,
        campaign_name: str,
        goal: str | None,
    ) -> dict[str, Any]:
        """Render and draft one card; return the row to insert."""
        step = task.step
        step_template = params.templates[step]
        variables = template_variables(
            ctx,
            now=now,
            rep_name=rep[0],
            rep_email=rep[1],
            firm_name=firm,
            campaign_name=campaign_name,
            step_number=step + 1,
            unsubscribe_url=self._unsubscribe_url(task.org_id, ctx.contact_id),
        )
        variables.update(step_template.variables)
        subject = render_text(source[0], variables, field="subject").strip()
        body = render_text(source[1], variables, field="body")
        draft = draft_email(
            DraftRequest(
                campaign_name=campaign_name,
                campaign_goal=goal or "re-engagement",
                step_number=step + 1,
                total_steps=params.steps,
                template_subject=subject,
                template_body=body,
                rep_name=rep[0] or "",
                contact={
                    "first_name": ctx.first_name,
                    "last_name": ctx.last_name,
                    "title": ctx.title,
                    "company_name": ctx.company_name,
                    "state": ctx.state,
                    "days_since_last_order": variables["days_since_last_order"] or None,
                },
            ),
            self.drafter,
        )
        enrollment = task.input.get("enrollment_id")
        return {
            "job_id": task.job_id,
            "task_id": task.id,
            "step": step,
            "batch": task.batch,
            "enrollment_id": int(str(enrollment)) if enrollment else None,
            "client_id": ctx.client_id,
            "contact_id": ctx.contact_id,
            "type": (CardType.SEND_EMAIL if step == 0 else CardType.FOLLOW_UP).value,
            "state": (CardState.APPROVED if auto else CardState.IN_REVIEW).value,
            "priority": (
                Priority.HIGH if ctx.orders_year_before_last >= 24 else Priority.MEDIUM
            ).value,
            "title": f"Email {ctx.full_name}",
            "description": f"Step {step + 1} of {params.steps} · {campaign_name}",
            "rationale": rationale_for(ctx, now=now),
            "action_payload": {
                "to": ctx.email,
                "to_name": ctx.full_name,
                "subject": draft.subject,
                "body": draft.body,
                "step": step,
                "total_steps": params.steps,
                "draft_source": draft.source.value,
                "draft_note": draft.note,
                "campaign_name": campaign_name,
            },
            "draft_fingerprint": draft_fingerprint(
                to=ctx.email, subject=draft.subject, body=draft.body
            ),
            "approved_at": now if auto else None,
            "approved_by": owner_id if auto else None,
        }

    def _human_task(self, task: JobTaskView, *, org_id: int) -> None:
        """Tasks whose action is a human's (a call, a portal check) become cards."""
        kind_to_card = {
            TaskKind.SCHEDULE_CALL: CardType.SCHEDULE_CALL,
            TaskKind.CHECK_PORTAL: CardType.CREATE_TASK,
            TaskKind.CREATE_TASK: CardType.CREATE_TASK,
            TaskKind.RESEARCH: CardType.RESEARCH,
            TaskKind.CREATE_DEAL: CardType.CREATE_DEAL,
        }
        now = self._clock.now()
        with self._uow() as uow:
            job: Job = uow.jobs.get(org_id, task.job_id)
            ctx: ContactContext | None = (
                uow.contexts.contact_context(org_id, task.contact_id, now=now)
                if task.contact_id
                else None
            )
            title = str(task.input.get("title") or task.kind.value.replace("_", " ").capitalize())
            payload: dict[str, Any] = {"task_kind": task.kind.value}
            if task.kind == TaskKind.CHECK_PORTAL:
                portal = job.parsed_params().portal
                payload["portal_urls"] = [str(u) for u in portal.urls] if portal else []
            card: Card = uow.cards.add(
                org_id,
                job_id=task.job_id,
                task_id=task.id,
                contact_id=task.contact_id,
                client_id=ctx.client_id if ctx else None,
                type=kind_to_card[task.kind],
                state=CardState.IN_REVIEW,
                priority=Priority.MEDIUM,
                title=f"{title}: {ctx.full_name}" if ctx else title,
                description=str(task.input.get("description") or ""),
                rationale=rationale_for(ctx, now=now) if ctx else None,
                action_payload=payload,
            )
            uow.jobs.bump(task.job_id, cards_created=1)
            if uow.tasks.finish(
                task.id, TaskStatus.SUCCEEDED, now=now, output={"card_id": card.id}
            ):
                uow.jobs.bump(task.job_id, completed_tasks=1)
            self._enqueue_post(uow, org_id, task, card.id)
            uow.commit()
        self.finish_job_if_done(org_id, task.job_id)

    def _enqueue_post(
        self, uow: OutreachUnitOfWork, org_id: int, task: JobTaskView, card_id: int
    ) -> None:
        """Queue the card's Slack message; the posting worker paces it to Slack's limit."""
        if self.notifier is None:
            return
        uow.tasks.add_many(
            org_id,
            task.job_id,
            [
                {
                    "kind": TaskKind.POST_CARD.value,
                    "step": task.step,
                    "batch": task.batch,
                    "contact_id": task.contact_id,
                    "input": {"card_id": card_id},
                }
            ],
        )

    def _post_task(self, task: JobTaskView, *, org_id: int) -> None:
        """Post a card's message (its current state), falling back to the owner's DM."""
        if "bulk_batch" in task.input:
            output: dict[str, Any] = {"bulk_batch": task.input["bulk_batch"]}
            error = self._post_bulk(org_id, task.job_id, int(str(task.input["bulk_batch"])))
        else:
            card_id = int(str(task.input["card_id"]))
            output = {"card_id": card_id}
            error = self.show_card(org_id, card_id, post=True)
        now = self._clock.now()
        with self._uow() as uow:
            status = TaskStatus.FAILED if error else TaskStatus.SUCCEEDED
            if uow.tasks.finish(task.id, status, now=now, output=output, error=error) and error:
                # The error already names Slack; the sentence says where the cards wait.
                what, them = (
                    (f"batch {int(str(output['bulk_batch'])) + 1}", "its cards")
                    if "bulk_batch" in output
                    else (f"card #{output['card_id']}", "it")
                )
                uow.jobs.note_error(
                    task.job_id,
                    f"{what} could not be posted: {error}; review {them} from Salesbot's App Home",
                )
            uow.commit()
        self.finish_job_if_done(org_id, task.job_id)

    def _post_bulk(self, org_id: int, job_id: int, batch: int) -> str | None:
        """Post one message for a batch's drafts, with "Approve all N" behind a confirm."""
        assert self.notifier is not None
        with self._uow() as uow:
            job: Job = uow.jobs.get(org_id, job_id)
            cards: list[Card] = uow.cards.list_for_batch(
                org_id, job_id, batch, states=[CardState.IN_REVIEW]
            )
            owner_slack = uow.contexts.slack_id(org_id, job.owner_id)
        if not cards:
            return None
        try:
            self.notifier.post_bulk(
                org_id,
                job_name=job.name,
                job_id=job_id,
                batch=batch,
                cards=cards,
                channel=job.parsed_params().review_channel_id,
                owner_slack_id=owner_slack,
            )
        except ExternalServiceError as exc:
            log.warning("bulk message failed", extra={"job_id": job_id, "reason": exc.message})
            return exc.message
        return None

    def batch_cards(self, org_id: int, job_id: int, batch: int) -> list[Card]:
        """Return the cards of a job's batch that still wait for review."""
        with self._uow() as uow:
            cards: list[Card] = uow.cards.list_for_batch(
                org_id, job_id, batch, states=[CardState.IN_REVIEW]
            )
        return cards

    def _update_profile_task(self, task: JobTaskView, *, org_id: int) -> None:
        """Apply profile changes (tags, role, lead score) to the task's contact."""
        changes = task.input.get("changes")
        if not isinstance(changes, dict) or task.contact_id is None:
            raise InvalidInput("update_profile needs a contact and a `changes` object")
        allowed = {"add_tags", "remove_tags", "role_code", "lead_score", "title"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"update_profile cannot change {', '.join(sorted(unknown))}")
        with self._uow() as uow:
            uow.contexts.apply_profile_changes(
                org_id, task.contact_id, changes, at=self._clock.now()
            )
            uow.commit()
        self._finish_task(org_id, task, TaskStatus.SUCCEEDED, output={"changed": sorted(changes)})

    # cards -------------------------------------------------------------------------------

    def _authorize(self, uow: OutreachUnitOfWork, actor: Actor, card: Card) -> None:
        if card.org_id != actor.org_id:
            raise NotFound(f"card {card.id} not found")
        if actor.is_admin or card.job_id is None:
            return
        job: Job = uow.jobs.get(actor.org_id, card.job_id)
        if job.owner_id is not None and job.owner_id != actor.user_id:
            raise NotPermitted(
                "Only the rep who launched this job, or an admin, can act on its cards."
            )

    def card_view(
        self, org_id: int, card_id: int, *, actor_slack_id: str | None = None
    ) -> CardView:
        """Return what a chat message shows of a card."""
        now = self._clock.now()
        with self._uow() as uow:
            card: Card = uow.cards.get(org_id, card_id)
            ctx = (
                uow.contexts.contact_context(org_id, card.contact_id, now=now)
                if card.contact_id
                else None
            )
            job: Job | None = uow.jobs.get(org_id, card.job_id) if card.job_id else None
            owner_slack = (
                uow.contexts.slack_id(org_id, job.owner_id) if job and job.owner_id else None
            )
            decided_by = card.approved_by
            if card.state == CardState.WITHDRAWN:
                decided_by = job.cancelled_by if job else None
            approver_slack = uow.contexts.slack_id(org_id, decided_by) if decided_by else None
        payload = card.action_payload
        return CardView(
            card=card,
            contact_name=ctx.full_name if ctx else None,
            contact_email=ctx.email if ctx else None,
            contact_title=ctx.title if ctx else None,
            company_name=ctx.company_name if ctx else None,
            campaign_name=str(payload.get("campaign_name") or "") or (job.name if job else None),
            job_name=job.name if job else None,
            step_number=int(payload["step"]) + 1 if "step" in payload else None,
            total_steps=int(payload["total_steps"]) if "total_steps" in payload else None,
            actor_slack_id=actor_slack_id or approver_slack,
            owner_slack_id=owner_slack,
        )

    def show_card(
        self, org_id: int, card_id: int, *, actor_slack_id: str | None = None, post: bool = False
    ) -> str | None:
        """Update a card's message in place; with `post`, post it if it has none yet.

        Only the posting worker posts (`post=True`), so messages go out at Slack's pace
        and in order; a transition before the first post is shown when it is posted.
        Returns the reason when Slack could not show the card (also kept on the card).
        """
        if self.notifier is None:
            return None
        view = self.card_view(org_id, card_id, actor_slack_id=actor_slack_id)
        try:
            if view.card.slack_message_ts:
                self.notifier.update_card(view)
                return None
            if not post or view.card.state == CardState.WITHDRAWN:
                return None
            with self._uow() as uow:
                job: Job | None = (
                    uow.jobs.get(org_id, view.card.job_id) if view.card.job_id else None
                )
            channel = job.parsed_params().review_channel_id if job else None
            channel_id, ts = self._post_with_fallback(view, channel)
            # A crash here posts the card again when its post_card task is claimed again
            # (Slack has no idempotency key): at worst a second message, never a lost one.
            faults.reach("post.sent")
        except ExternalServiceError as exc:
            log.warning("card message failed", extra={"card_id": card_id, "reason": exc.message})
            self._note_slack_error(org_id, card_id, exc.message)
            return exc.message
        with self._uow() as uow:
            uow.cards.set_message(card_id, channel=channel_id, ts=ts)
            uow.commit()
            now_card: Card = uow.cards.get(org_id, card_id)
        faults.reach("post.recorded")
        if now_card.state != view.card.state:
            # It moved on while its message was posted (withdrawn by a cancellation, say):
            # the transition found no message to update, so update it now.
            return self.show_card(org_id, card_id, actor_slack_id=actor_slack_id)
        return None

    def _post_with_fallback(self, view: CardView, channel: str | None) -> tuple[str, str]:
        assert self.notifier is not None
        try:
            return self.notifier.post_card(
                view, channel=channel, owner_slack_id=view.owner_slack_id
            )
        except ExternalServiceError as exc:
            if exc.retryable or channel is None or not view.owner_slack_id:
                raise
            # The review channel is gone or closed to the bot: the owner still gets the card.
            log.warning(
                "review channel refused the card; posting to the owner's DM",
                extra={"card_id": view.card.id, "reason": exc.message},
            )
            self._note_slack_error(view.card.org_id, view.card.id, exc.message)
            return self.notifier.post_card(view, channel=None, owner_slack_id=view.owner_slack_id)

    def _note_slack_error(self, org_id: int, card_id: int, reason: str) -> None:
        with self._uow() as uow:
            card: Card = uow.cards.get(org_id, card_id)
            payload = {**card.action_payload, "slack_error": reason}
            uow.cards.update_fields(org_id, card_id, now=self._clock.now(), action_payload=payload)
            uow.commit()

    def approve_card(self, actor: Actor, card_id: int, *, fingerprint: str | None) -> Card:
        """Approve a card as shown (its fingerprint must match), then execute it."""
        now = self._clock.now()
        with self._uow() as uow:
            card: Card = uow.cards.get(actor.org_id, card_id)
            self._authorize(uow, actor, card)
            if (
                fingerprint is not None
                and card.draft_fingerprint
                and fingerprint != card.draft_fingerprint
            ):
                raise StaleCard(
                    "This draft changed since this message was shown; it has been refreshed."
                    " Review it again."
                )
            expected = [CardState.SUGGESTED, CardState.IN_REVIEW, CardState.BLOCKED]
            if card.state not in expected:
                raise CardRefused(describe_refusal(card, CardState.APPROVED))
            moved = uow.cards.compare_and_set(
                actor.org_id,
                card_id,
                expected=expected,
                to=CardState.APPROVED,
                now=now,
                approved_by=actor.user_id,
                approved_at=now,
                blocked_reason=None,
            )
            if not moved:
                raise CardRefused(
                    "Someone else acted on this card at the same moment; nothing was done twice."
                )
            if card.job_id and card.approved_at is None:
                uow.jobs.bump(card.job_id, cards_approved=1)
            uow.commit()
        # From here a crash leaves the card `approved`: the recovery sweep executes it.
        faults.reach("approve.committed")
        if card.sends_email:
            return self.execute_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        return self._complete_human_card(actor, card_id)

    def _complete_human_card(self, actor: Actor, card_id: int) -> Card:
        now = self._clock.now()
        with self._uow() as uow:
            card: Card = uow.cards.get(actor.org_id, card_id)
            uow.cards.compare_and_set(
                actor.org_id,
                card_id,
                expected=[CardState.APPROVED],
                to=CardState.EXECUTING,
                now=now,
            )
            uow.cards.compare_and_set(
                actor.org_id,
                card_id,
                expected=[CardState.EXECUTING],
                to=CardState.DONE,
                now=now,
                executed_at=now,
            )
            if card.job_id:
                uow.jobs.bump(card.job_id, cards_executed=1)
            uow.commit()
            done: Card = uow.cards.get(actor.org_id, card_id)
        self.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        if done.job_id:
            self.finish_job_if_done(actor.org_id, done.job_id)
        return done

    def execute_card(self, org_id: int, card_id: int, *, actor_slack_id: str | None = None) -> Card:
        """Send an approved email card exactly once: approved → executing is a compare-and-set."""
        now = self._clock.now()
        with self._uow() as uow:
            card: Card = uow.cards.get(org_id, card_id)
            if not uow.cards.compare_and_set(
                org_id, card_id, expected=[CardState.APPROVED], to=CardState.EXECUTING, now=now
            ):
                current: Card = uow.cards.get(org_id, card_id)
                return current
            job: Job | None = uow.jobs.get(org_id, card.job_id) if card.job_id else None
            thread_id = (
                uow.contexts.thread_to_continue(card.enrollment_id) if card.enrollment_id else None
            )
            uow.commit()
        # From here a crash leaves the card `executing` with no outbox row: the recovery
        # sweep puts it back to `approved` (nothing can have been sent) and runs it again.
        faults.reach("execute.committed")
        outcome = self._send(card, job, thread_id)
        return (
            self.finish_send(
                org_id, outcome.email_send_id, card_id, outcome, actor_slack_id=actor_slack_id
            )
            or card
        )

    def finish_send(
        self,
        org_id: int,
        email_send_id: int,
        card_id: int | None,
        outcome: SendOutcome,
        *,
        actor_slack_id: str | None = None,
    ) -> Card | None:
        """Make a card follow the outcome of its send, and show it.

        Called by execute_card with the mailer's answer, and by the mailer's outbox when a
        queued or unconfirmed email finally went out or failed. Each move is a
        compare-and-set from EXECUTING and the counters move only with it, so a repeat
        (both callers, or a retry) does nothing twice.
        """
        if card_id is None:
            return None
        now = self._clock.now()
        with self._uow() as uow:
            card: Card = uow.cards.get(org_id, card_id)
            if outcome.status == SendStatus.SENT:
                if uow.cards.compare_and_set(
                    org_id,
                    card_id,
                    expected=[CardState.EXECUTING],
                    to=CardState.DONE,
                    now=now,
                    executed_at=now,
                    blocked_reason=None,
                ):
                    if card.job_id:
                        uow.jobs.bump(card.job_id, cards_executed=1, emails_sent=1)
                        # A card that failed before and went out on a retry is no longer
                        # the job's problem: its status must not say it was not sent.
                        uow.jobs.clear_error(card.job_id, starting=_not_sent(card_id))
                    if card.contact_id:
                        uow.contexts.touch_contacted(org_id, card.contact_id, at=now)
                        uow.contexts.engagement_event(
                            org_id,
                            card.contact_id,
                            "email_sent",
                            at=now,
                            email_send_id=email_send_id,
                            card_id=card_id,
                        )
                    if card.enrollment_id and outcome.gmail_thread_id:
                        uow.enrollments.set_thread(card.enrollment_id, outcome.gmail_thread_id)
            elif outcome.status == SendStatus.FAILED:
                if (
                    uow.cards.compare_and_set(
                        org_id,
                        card_id,
                        expected=[CardState.EXECUTING],
                        to=CardState.BLOCKED,
                        now=now,
                        blocked_reason=outcome.detail or "sending failed",
                    )
                    and card.job_id
                ):
                    detail = outcome.detail or "sending failed"
                    uow.jobs.note_error(card.job_id, f"{_not_sent(card_id)} {detail}")
            elif card.state == CardState.EXECUTING:
                uow.cards.update_fields(org_id, card_id, now=now, blocked_reason=outcome.detail)
            uow.commit()
            result: Card = uow.cards.get(org_id, card_id)
        faults.reach("send.finished")
        self.show_card(org_id, card_id, actor_slack_id=actor_slack_id)
        if result.job_id:
            self.finish_job_if_done(org_id, result.job_id)
        return result

    def _send(self, card: Card, job: Job | None, thread_id: str | None) -> SendOutcome:
        payload = card.action_payload
        if self.mailer is None:
            return SendOutcome(
                status=SendStatus.FAILED,
                email_send_id=0,
                message_id="",
                detail="No mailbox is connected: connect Gmail from the App Home, then Retry.",
            )
        email = OutgoingEmail(
            org_id=card.org_id,
            to_email=str(payload["to"]),
            to_name=str(payload.get("to_name") or "") or None,
            subject=str(payload["subject"]),
            body_text=str(payload["body"]),
            sender_user_id=job.owner_id if job else card.approved_by,
            card_id=card.id,
            job_id=card.job_id,
            campaign_id=job.campaign_id if job else None,
            enrollment_id=card.enrollment_id,
            contact_id=card.contact_id,
            thread_id=thread_id,
        )
        try:
            return self.mailer.send(email)
        except ExternalServiceError as exc:
            return SendOutcome(
                status=SendStatus.FAILED, email_send_id=0, message_id="", detail=exc.message
            )

    def edit_card(
        self,
        actor: Actor,
        card_id: int,
        *,
        subject: str,
        body: str,
        approve: bool,
        fingerprint: str | None = None,
    ) -> Card:
        """Save an edited draft, rendered in the sandbox with the contact's values."""
        subject = subject.strip()
        if not subject:
            raise InvalidInput("The subject cannot be empty.", field="subject")
        if "\n" in subject or "\r" in subject:
            raise InvalidInput("The subject must be one line.", field="subject")
        if not body.strip():
            raise InvalidInput("The body cannot be empty.", field="body")
        now = self._clock.now()
        with self._uow() as uow:
            card: Card = uow.cards.get(actor.org_id, card_id)
            self._authorize(uow, actor, card)
            if not card.sends_email:
                raise InvalidInput("Only email cards can be edited.")
            ctx = (
                uow.contexts.contact_context(actor.org_id, card.contact_id, now=now)
                if card.contact_id
                else None
            )
            rep_name, rep_email = uow.contexts.user_name(actor.org_id, actor.user_id)
        variables = (
            template_variables(
                ctx,
                now=now,
                rep_name=rep_name,
                rep_email=rep_email,
                firm_name="",
                campaign_name=str(card.action_payload.get("campaign_name") or ""),
                step_number=int(card.action_payload.get("step", 0)) + 1,
                unsubscribe_url=self._unsubscribe_url(actor.org_id, ctx.contact_id),
            )
            if ctx
            else {}
        )
        rendered_subject = render_text(subject, variables, field="subject").strip()
        rendered_body = render_text(body, variables, field="body")
        to = str(card.action_payload.get("to", ""))
        payload = {
            **card.action_payload,
            "subject": rendered_subject,
            "body": rendered_body,
            "edited_by": actor.user_id,
        }
        with self._uow() as uow:
            moved = uow.cards.compare_and_set(
                actor.org_id,
                card_id,
                expected=[CardState.SUGGESTED, CardState.IN_REVIEW, CardState.BLOCKED],
                to=CardState.IN_REVIEW,
                now=now,
                action_payload=payload,
                draft_fingerprint=draft_fingerprint(
                    to=to, subject=rendered_subject, body=rendered_body
                ),
            )
            if not moved:
                current: Card = uow.cards.get(actor.org_id, card_id)
                raise CardRefused(describe_refusal(current, CardState.IN_REVIEW))
            uow.commit()
            edited: Card = uow.cards.get(actor.org_id, card_id)
        if approve:
            return self.approve_card(actor, card_id, fingerprint=edited.draft_fingerprint)
        self.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        return edited

    def reject_card(self, actor: Actor, card_id: int, *, reason: str | None) -> Card:
        """Reject a card with an optional reason."""
        now = self._clock.now()
        reason = (reason or "").strip()[:500] or None
        with self._uow() as uow:
            card: Card = uow.cards.get(actor.org_id, card_id)
            self._authorize(uow, actor, card)
            moved = uow.cards.compare_and_set(
                actor.org_id,
                card_id,
                expected=[CardState.SUGGESTED, CardState.IN_REVIEW, CardState.BLOCKED],
                to=CardState.REJECTED,
                now=now,
                rejected_reason=reason,
                approved_by=actor.user_id,
            )
            if not moved:
                raise CardRefused(describe_refusal(card, CardState.REJECTED))
            uow.commit()
            rejected: Card = uow.cards.get(actor.org_id, card_id)
        self.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)
        if rejected.job_id:
            self.finish_job_if_done(actor.org_id, rejected.job_id)
        return rejected

    # helpers -----------------------------------------------------------------------------

    def _check_step_templates(
        self, uow: OutreachUnitOfWork, org_id: int, params: JobParams
    ) -> None:
        ids = [t.template_id for t in params.templates if t.template_id is not None]
        missing = set(ids) - uow.templates.existing_ids(org_id, ids)
        if missing:
            raise InvalidInput(
                f"email template(s) {', '.join(map(str, sorted(missing)))} not found"
            )
        for step in params.templates:
            if step.template_id is None:
                from domain.templates import check_template

                check_template(step.subject or "", field="subject")
                check_template(step.body or "", field="body")

    def _stored_params(self, params: JobParams) -> dict[str, Any]:
        data = params.model_dump(mode="json")
        portal = params.portal
        if portal is not None and portal.password is not None:
            if self._secrets is None:
                raise InvalidInput(
                    "portal credentials need SALESBOT_SECRET_KEY to be stored encrypted"
                )
            data["portal"]["password"] = self._secrets.encrypt(portal.password.get_secret_value())
        return data


def _person(uow: OutreachUnitOfWork, org_id: int, user_id: int) -> str:
    """Name a user in a sentence: their name, else their email."""
    name, email = uow.contexts.user_name(org_id, user_id)
    return str(name or email or f"user {user_id}")


class CardRefused(InvalidInput):
    """A card action the card's state does not allow; the message says why."""


class StaleCard(InvalidInput):
    """The approval was for text that is no longer the card's draft."""


class PlanningFailed(SalesbotError):
    """Planning a job failed; the job is marked failed with the reason."""

    code = "planning_failed"


def _not_sent(card_id: int) -> str:
    """The start of a job's error about a card whose email failed (a retry clears it)."""
    return f"card #{card_id} was not sent:"
