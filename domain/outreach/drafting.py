"""Drafting: turn claimed tasks into cards, a batch of email drafts or one human's card."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from domain import faults
from domain.cards import CardState, CardType, Priority, draft_fingerprint
from domain.contacts import ContactContext
from domain.drafting import DraftRequest, draft_email
from domain.email_preferences import UnsubscribeLinks, email_type_of_step
from domain.errors import InvalidInput
from domain.jobs import TERMINAL_JOB_STATES, JobParams, JobTaskView, TaskKind, TaskStatus
from domain.last_look import RECHECK_AFTER, LookResult, is_follow_up, waiting_reason
from domain.outreach.common import OutreachDeps
from domain.outreach.delivery import Delivery, take_last_look
from domain.outreach.jobs import Jobs
from domain.outreach.presenting import Presenting
from domain.ports import DraftModel, OutreachUnitOfWork, ReplyLookout
from domain.templates import TemplateProblem, TemplateTooSlow, render_text

log = logging.getLogger(__name__)

# Task kinds whose action is a human's (a call, a portal check): each becomes a card.
_HUMAN_CARD_TYPES: dict[TaskKind, CardType] = {
    TaskKind.SCHEDULE_CALL: CardType.SCHEDULE_CALL,
    TaskKind.CHECK_PORTAL: CardType.CREATE_TASK,
    TaskKind.CREATE_TASK: CardType.CREATE_TASK,
    TaskKind.RESEARCH: CardType.RESEARCH,
    TaskKind.CREATE_DEAL: CardType.CREATE_DEAL,
    TaskKind.LINKEDIN_TOUCH: CardType.LINKEDIN_TOUCH,
}


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


def _enrollment_of(task: JobTaskView) -> int | None:
    """The enrollment a cadence step's task runs for, if it carries one."""
    enrollment = task.input.get("enrollment_id")
    return int(str(enrollment)) if enrollment else None


def _looks_before(task: JobTaskView) -> bool:
    """Tell whether a draft task takes the last look: a cadence follow-up's email."""
    return _enrollment_of(task) is not None and is_follow_up(task.step)


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


class Drafting:
    """Drafts cards from claimed tasks: emails through the DraftModel port, human cards."""

    def __init__(
        self,
        deps: OutreachDeps,
        *,
        jobs: Jobs,
        presenting: Presenting,
        delivery: Delivery,
        unsubscribe_url: UnsubscribeLinks,
        drafter: DraftModel | None = None,
        lookout: ReplyLookout | None = None,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._jobs = jobs
        self._presenting = presenting
        self._delivery = delivery
        self._unsubscribe_url = unsubscribe_url
        self._drafter = drafter
        self._lookout = lookout

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
            job = uow.jobs.get(org_id, job_id)
            params = job.parsed_params()
            contexts = uow.contexts.contact_contexts(
                org_id, [t.contact_id for t in tasks if t.contact_id is not None], now=now
            )
            sources: dict[int, tuple[str, str]] = {}  # by template index
            for step, step_template in enumerate(params.templates):
                if step_template.template_id is not None:
                    stored = uow.templates.get(org_id, step_template.template_id)
                    sources[step] = (stored.subject, stored.body)
                else:
                    sources[step] = (step_template.subject or "", step_template.body or "")
            owner = uow.users.find(org_id, job.owner_id) if job.owner_id is not None else None
            rep_name, rep_email = (owner.name, owner.email) if owner else (None, None)
            firm = uow.contexts.firm_name(org_id)
            campaign_name = job.name.split(" · ")[0]
            if job.campaign_id is not None:
                campaign_name = uow.campaigns.get(org_id, job.campaign_id).name
            threads = {
                task.id: uow.contexts.thread_to_continue(_enrollment_of(task))
                for task in tasks
                if self._lookout is not None and _looks_before(task)
            }
        # The last look before each follow-up, before anything is drafted for it.
        held: dict[int, tuple[str, LookResult]] = {}
        for task in tasks:
            ctx = contexts.get(task.contact_id) if task.contact_id is not None else None
            if task.id not in threads or ctx is None or not ctx.reachable:
                continue
            look = self._last_look(task, ctx, owner_id=job.owner_id, thread_id=threads[task.id])
            if look is not None and look.holds_step:
                held[task.id] = (waiting_reason(ctx.email), look)
        auto = params.behaviour.auto_approve or not params.behaviour.review_mode
        cards: list[dict[str, Any]] = []
        failures: list[tuple[JobTaskView, str]] = []
        # A template that ran out of its render budget (it loops) is not tried again for
        # the rest of the batch: each try would hold this worker thread for the budget.
        too_slow: dict[int, str] = {}
        for task in tasks:
            ctx = contexts.get(task.contact_id) if task.contact_id is not None else None
            if task.id in held:
                continue
            if task.step in too_slow:
                failures.append((task, too_slow[task.step]))
                continue
            try:
                if ctx is None:
                    raise InvalidInput(f"contact {task.contact_id} not found")
                if not ctx.reachable:
                    raise InvalidInput(f"{ctx.email} opted out or cannot receive email; skipped")
                template = params.template_index(task.step)
                if template is None or template >= len(params.templates):
                    raise InvalidInput(f"the job has no email template for step {task.step + 1}")
                cards.append(
                    self._card_row(
                        task,
                        ctx,
                        params,
                        sources[template],
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
                held = {task_id: why for task_id, why in held.items() if task_id in mine}
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
            finished += self._hold(uow, tasks, held)
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
            if self._presenting.shows_cards and created and bulk:
                # Bulk mode: one message per finished batch, with "Approve all N".
                for batch in sorted({row["batch"] for row in cards}):
                    if uow.tasks.batch_drafted(org_id, job_id, batch) and uow.events.claim(
                        "bulk_post", f"{job_id}:{batch}", org_id=org_id
                    ):
                        self._presenting.queue_posts(
                            uow, org_id, job_id, [{"batch": batch, "input": {"bulk_batch": batch}}]
                        )
            elif created:
                self._presenting.queue_posts(
                    uow,
                    org_id,
                    job_id,
                    [
                        {
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
                self._delivery.execute_card(org_id, card_id)
        self._jobs.finish_job_if_done(org_id, job_id)

    def _last_look(
        self, task: JobTaskView, ctx: ContactContext, *, owner_id: int | None, thread_id: str | None
    ) -> LookResult | None:
        """Take the last look before drafting a follow-up (outside any transaction)."""
        assert self._lookout is not None
        return take_last_look(
            self._lookout,
            task.org_id,
            sender_user_id=owner_id,
            contact_email=ctx.email,
            thread_id=thread_id,
            since=ctx.last_contacted_at,
            context={"task_id": task.id, "job_id": task.job_id, "step": task.step},
        )

    def _hold(
        self,
        uow: OutreachUnitOfWork,
        tasks: list[JobTaskView],
        held: dict[int, tuple[str, LookResult]],
    ) -> int:
        """End the draft tasks whose last look found a reply, and put their enrollments back
        to wait for it to be read; return how many tasks this call ended.

        The task is cancelled, not failed: nothing went wrong, the step waits (`/job status`
        shows no error for it), and its record says why. The enrollment, in flight while its
        step runs, is due again after `RECHECK_AFTER`: the next tick judges it once the
        pipeline has read the reply (a reply stops it, an out-of-office pauses it).
        """
        if not held:
            return 0
        now = self._clock.now()
        ended = 0
        for task in tasks:
            if task.id not in held:
                continue
            reason, look = held[task.id]
            output = {
                "last_look": {"found": look.found, "stored": look.stored, "unread": look.unread}
            }
            if not uow.tasks.finish(
                task.id, TaskStatus.CANCELLED, now=now, output=output, error=reason
            ):
                continue
            ended += 1
            enrollment = _enrollment_of(task)
            if enrollment is not None:
                uow.cadence.defer(
                    enrollment, step=task.step, until=now + RECHECK_AFTER, reason=reason
                )
        return ended

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
        step_template = params.templates[params.template_index(step) or 0]
        variables = template_variables(
            ctx,
            now=now,
            rep_name=rep[0],
            rep_email=rep[1],
            firm_name=firm,
            campaign_name=campaign_name,
            step_number=step + 1,
            unsubscribe_url=self._unsubscribe_url(
                task.org_id, ctx.contact_id, email_type_of_step(step)
            ),
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
            self._drafter,
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
                "cadence_step": step,
                # The zone the step was scheduled in, and why (shown on the card).
                "time_zone": task.input.get("time_zone"),
            },
            "draft_fingerprint": draft_fingerprint(
                to=ctx.email, subject=draft.subject, body=draft.body
            ),
            "approved_at": now if auto else None,
            "approved_by": owner_id if auto else None,
        }

    def draft_human_card(self, task: JobTaskView, *, org_id: int) -> None:
        """Make the card of a task whose action is a human's (a call, a portal check), and
        finish the task."""
        now = self._clock.now()
        with self._uow() as uow:
            job = uow.jobs.get(org_id, task.job_id)
            ctx = (
                uow.contexts.contact_context(org_id, task.contact_id, now=now)
                if task.contact_id
                else None
            )
            title = str(task.input.get("title") or task.kind.value.replace("_", " ").capitalize())
            payload: dict[str, Any] = {"task_kind": task.kind.value}
            # A cadence step's card (LinkedIn, call, task): Done / Skip end the step.
            for key in ("cadence_step", "channel", "time_zone"):
                if task.input.get(key) is not None:
                    payload[key] = task.input[key]
            enrollment = task.input.get("enrollment_id")
            if task.kind == TaskKind.CHECK_PORTAL:
                portal = job.parsed_params().portal
                payload["portal_urls"] = [str(u) for u in portal.urls] if portal else []
            card = uow.cards.add(
                org_id,
                job_id=task.job_id,
                task_id=task.id,
                enrollment_id=int(str(enrollment)) if enrollment else None,
                contact_id=task.contact_id,
                client_id=ctx.client_id if ctx else None,
                type=_HUMAN_CARD_TYPES[task.kind],
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
            self._presenting.queue_posts(
                uow,
                org_id,
                task.job_id,
                [
                    {
                        "step": task.step,
                        "batch": task.batch,
                        "contact_id": task.contact_id,
                        "input": {"card_id": card.id},
                    }
                ],
            )
            uow.commit()
        self._jobs.finish_job_if_done(org_id, task.job_id)
