"""Tasks: run one claimed task of a job, or record that claimed tasks failed."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from domain.cards import CardState, draft_fingerprint
from domain.errors import ExternalServiceError, InvalidInput, NotFound
from domain.jobs import COUNTED_KINDS, PROFILE_FIELDS, JobTaskView, TaskKind, TaskStatus
from domain.outreach.common import OutreachDeps
from domain.outreach.delivery import Delivery
from domain.outreach.drafting import Drafting
from domain.outreach.jobs import Jobs
from domain.outreach.presenting import Presenting
from domain.replies import Replies, reply_subject
from domain.reply_actions import draft_answer, may_still_auto_send
from domain.templates import TemplateProblem

log = logging.getLogger(__name__)


class Tasks:
    """Runs the tasks the task worker claims, each with the service that does its work."""

    def __init__(
        self,
        deps: OutreachDeps,
        *,
        jobs: Jobs,
        presenting: Presenting,
        drafting: Drafting,
        delivery: Delivery,
        replies: Replies | None = None,
    ) -> None:
        self._uow = deps.uow
        self._replies = replies
        self._clock = deps.clock
        self._jobs = jobs
        self._presenting = presenting
        self._drafting = drafting
        self._delivery = delivery

    def run_task(self, task: JobTaskView, *, org_id: int) -> None:
        """Execute one claimed task; a failure is recorded on the task and counted."""
        try:
            if task.kind == TaskKind.POST_CARD:
                self._post(task, org_id=org_id)
            elif task.kind == TaskKind.DRAFT_REPLY:
                self._draft_reply(task, org_id=org_id)
            elif task.kind in (TaskKind.DRAFT_EMAIL, TaskKind.FOLLOW_UP):
                self._drafting.run_draft_batch([task], org_id=org_id)
            elif task.kind == TaskKind.SEND_EMAIL:
                card_id = int(str(task.input["card_id"]))
                self._delivery.execute_card(org_id, card_id)
                self._finish(org_id, task, TaskStatus.SUCCEEDED, output={"card_id": card_id})
            elif task.kind == TaskKind.UPDATE_PROFILE:
                self._update_profile(task, org_id=org_id)
            else:
                self._drafting.draft_human_card(task, org_id=org_id)
        except (InvalidInput, NotFound, ExternalServiceError, TemplateProblem) as exc:
            log.warning(
                "task failed",
                extra={"task_id": task.id, "job_id": task.job_id, "reason": exc.message},
            )
            self._finish(org_id, task, TaskStatus.FAILED, error=exc.message)

    def fail_tasks(self, tasks: list[JobTaskView], *, reason: str) -> None:
        """Record that claimed tasks failed (they stay visible with the reason)."""
        now = self._clock.now()
        with self._uow() as uow:
            for task in tasks:
                if uow.tasks.finish(task.id, TaskStatus.FAILED, now=now, error=reason):
                    if task.kind in COUNTED_KINDS:
                        uow.jobs.bump(task.job_id, failed_tasks=1)
                    uow.jobs.note_error(task.job_id, f"task #{task.id} ({task.kind}): {reason}")
            uow.commit()

    def _finish(
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
                counted = task.kind in COUNTED_KINDS
                if status == TaskStatus.SUCCEEDED:
                    if counted:
                        uow.jobs.bump(task.job_id, completed_tasks=1)
                else:
                    if counted:
                        uow.jobs.bump(task.job_id, failed_tasks=1)
                    uow.jobs.note_error(task.job_id, f"task #{task.id} ({task.kind}): {error}")
            uow.commit()
        self._jobs.finish_job_if_done(org_id, task.job_id)

    def _post(self, task: JobTaskView, *, org_id: int) -> None:
        """Post a card's message (its current state), falling back to the owner's DM."""
        if "bulk_batch" in task.input:
            output: dict[str, Any] = {"bulk_batch": task.input["bulk_batch"]}
            error = self._presenting.post_bulk(
                org_id, task.job_id, int(str(task.input["bulk_batch"]))
            )
        else:
            card_id = int(str(task.input["card_id"]))
            output = {"card_id": card_id}
            error = self._presenting.show_card(org_id, card_id, post=True)
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
        self._jobs.finish_job_if_done(org_id, task.job_id)

    def _draft_reply(self, task: JobTaskView, *, org_id: int) -> None:
        """Draft a reply card's answer (`reply_actions.draft_answer`, outside any unit of
        work), put it on the card bound to its fingerprint (`suggested` → `in_review`, or
        `approved` when its plan is auto-sent) and queue the card's post to the paced
        poster. The plain text is what is sent (the outbox makes its HTML), so an edit in
        Slack never leaves a stale HTML part behind."""
        if self._replies is None:
            raise InvalidInput("replies cannot be drafted: no reply drafting is configured")
        card_id = int(str(task.input["card_id"]))
        inbound_email_id = int(str(task.input["inbound_email_id"]))
        with self._uow() as uow:
            card = uow.cards.get(org_id, card_id)
        now = self._clock.now()
        if card.state != CardState.SUGGESTED:  # drafted already (a task claimed again)
            self._finish_reply_task(task, card_id, now=now, draft=None)
            return
        draft = draft_answer(self._replies, org_id, inbound_email_id, card.action_payload)
        payload = dict(card.action_payload)
        to = str(payload.get("from_email") or "")
        if not to:
            raise InvalidInput(f"card #{card_id}: the message has no sender to answer")
        subject = draft.subject or reply_subject(str(payload.get("subject") or ""))
        payload.update(
            to=to,
            to_name=payload.get("from_name"),
            subject=subject,
            body=draft.body_text,
            draft_source=draft.source,
            draft_note="; ".join(draft.notes) or None,
            facts_used=list(draft.facts_used),
        )
        fingerprint = draft_fingerprint(to=to, subject=subject, body=draft.body_text)
        auto = bool(task.input.get("auto_send")) and may_still_auto_send(payload)
        sent_by_policy = self._finish_reply_task(
            task, card_id, now=self._clock.now(), draft=(payload, fingerprint), auto=auto
        )
        if sent_by_policy:
            # The same path as an approved outreach card: approved → executing is a
            # compare-and-set and the outbox keeps one row per card, so it leaves once; a
            # crash before this leaves it `approved` for the recovery sweep.
            self._delivery.execute_card(org_id, card_id)

    def _finish_reply_task(
        self,
        task: JobTaskView,
        card_id: int,
        *,
        now: datetime,
        draft: tuple[dict[str, Any], str] | None,
        auto: bool = False,
    ) -> bool:
        """Put the draft on the card (`suggested` → `in_review`, or `approved` when `auto`,
        compare-and-set), queue its post, and finish the task, in one unit of work; True
        when the card was approved by the policy (its send is the caller's to run)."""
        org_id = task.org_id
        to = CardState.APPROVED if auto else CardState.IN_REVIEW
        approval: dict[str, Any] = {"approved_at": now} if auto else {}
        with self._uow() as uow:
            moved = draft is not None and uow.cards.compare_and_set(
                org_id,
                card_id,
                expected=[CardState.SUGGESTED],
                to=to,
                now=now,
                action_payload=draft[0],
                draft_fingerprint=draft[1],
                **approval,
            )
            if moved:
                if auto:
                    uow.jobs.bump(task.job_id, cards_approved=1)
                self._presenting.queue_posts(
                    uow,
                    org_id,
                    task.job_id,
                    [{"contact_id": task.contact_id, "input": {"card_id": card_id}}],
                )
            uow.tasks.finish(task.id, TaskStatus.SUCCEEDED, now=now, output={"card_id": card_id})
            uow.commit()
        return moved and auto

    def _update_profile(self, task: JobTaskView, *, org_id: int) -> None:
        """Apply profile changes (tags, role, lead score) to the task's contact."""
        changes = task.input.get("changes")
        if not isinstance(changes, dict) or task.contact_id is None:
            raise InvalidInput("update_profile needs a contact and a `changes` object")
        unknown = set(changes) - PROFILE_FIELDS
        if unknown:
            raise InvalidInput(f"update_profile cannot change {', '.join(sorted(unknown))}")
        with self._uow() as uow:
            uow.contexts.apply_profile_changes(
                org_id, task.contact_id, changes, at=self._clock.now()
            )
            uow.commit()
        self._finish(org_id, task, TaskStatus.SUCCEEDED, output={"changed": sorted(changes)})
