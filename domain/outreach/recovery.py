"""Recovery: carry on what a process left when it died, once its lease ran out.

The recovery sweep (jobs/recovery.py) calls these, each a few times per work lease.
"""

from __future__ import annotations

import logging

from domain.cards import CardState
from domain.errors import InvalidInput, InvalidTransition, NotFound
from domain.outreach.common import Actor, OutreachDeps, PlanningFailed
from domain.outreach.delivery import Delivery
from domain.outreach.jobs import Jobs
from domain.outreach.review import Review

log = logging.getLogger(__name__)


class Recovery:
    """Plans abandoned jobs, carries on abandoned cards, ends idle jobs and orphaned tasks."""

    def __init__(
        self, deps: OutreachDeps, *, jobs: Jobs, delivery: Delivery, review: Review
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._jobs = jobs
        self._delivery = delivery
        self._review = review

    def plan_unplanned(self, *, limit: int = 20) -> int:
        """Plan jobs left pending or half planned (a REST launch, a planner that died)."""
        with self._uow() as uow:
            found = uow.jobs.unplanned(now=self._clock.now(), limit=limit)
        planned = 0
        for org_id, job_id in found:
            try:
                self._jobs.plan_job(org_id, job_id)
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
        before = now - self._jobs.work_lease
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
                self._delivery.finish_send(
                    item.org_id, item.sent.email_send_id, item.card_id, item.sent
                )
            elif item.sends_email:
                self._delivery.execute_card(item.org_id, item.card_id)
            else:
                system = Actor(org_id=item.org_id, user_id=0, role="admin")
                self._review.complete_human_card(system, item.card_id)
        return len(stale)

    def finish_idle_jobs(self, *, after_id: int, limit: int = 100) -> list[int]:
        """Finish planned running jobs with no open task (a crash after their last task).

        Returns the ids looked at, so the sweep can go on after the last one next time.
        """
        with self._uow() as uow:
            found = uow.jobs.idle_running(after_id=after_id, limit=limit)
        for org_id, job_id in found:
            self._jobs.finish_job_if_done(org_id, job_id)
        return [job_id for _, job_id in found]

    def cancel_orphaned_tasks(self) -> int:
        """Cancel running tasks whose job ended while their worker was gone."""
        with self._uow() as uow:
            cancelled = uow.tasks.cancel_orphaned(now=self._clock.now())
            uow.commit()
        return cancelled
