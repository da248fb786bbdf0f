"""Outreach: launch a campaign as a job, plan it, draft cards, review them, send, recover.

One service per concept, each holding the unit-of-work factory, the clock (`Deps`) and
the ports and services it calls; each public method owns its units of work. Slow calls
(Claude, Slack, Gmail) happen between transactions, never inside one, and pass ids rather
than rows.

- `jobs.Jobs`: create, launch, plan, pause/resume/cancel a job; pause/resume a campaign
  with its jobs; finish a job once its work is decided.
- `tasks.Tasks`: run one claimed task (dispatching to the services below), fail tasks.
- `drafting.Drafting`: draft a batch of email cards, or one human's card, from tasks.
- `review.Review`: approve, edit, reject a card; complete a human's card.
- `delivery.Delivery`: send an approved email card once; make the card follow its send.
- `presenting.Presenting`: what a card's message shows; post and update it, bulk posts.
- `recovery.Recovery`: carry on the work a dead process left (the recovery sweep's steps).
- `snoozing.Snoozing`: snooze a card until later; bring it back as a new message then.
- `referrals.Referrals`: enroll the person a reply named in the campaign it answered.
- `cadences.Cadences`: the tick that advances enrollments through their cadence steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from domain.cadence import CadenceSettings, HolidayCalendar, NoHolidays
from domain.email_preferences import UnsubscribeLinks
from domain.outreach.cadences import Cadences, TickReport
from domain.outreach.common import Actor, CardRefused, OutreachDeps, PlanningFailed, StaleCard
from domain.outreach.delivery import Delivery
from domain.outreach.drafting import Drafting
from domain.outreach.jobs import CampaignStatusChange, Jobs, LaunchResult
from domain.outreach.presenting import Presenting
from domain.outreach.recovery import Recovery
from domain.outreach.referrals import Enrolled, Referral, Referrals
from domain.outreach.review import Review
from domain.outreach.snoozing import Snoozing
from domain.outreach.tasks import Tasks
from domain.ports import ChatNotifier, DraftModel, Mailer, ReplyLookout, SecretBoxPort
from domain.replies import Replies

__all__ = [
    "Actor",
    "Cadences",
    "CampaignStatusChange",
    "CardRefused",
    "Delivery",
    "Drafting",
    "Enrolled",
    "Jobs",
    "LaunchResult",
    "Outreach",
    "OutreachDeps",
    "PlanningFailed",
    "Presenting",
    "Recovery",
    "Referral",
    "Referrals",
    "Review",
    "Snoozing",
    "StaleCard",
    "Tasks",
    "TickReport",
]


@dataclass(frozen=True)
class Outreach:
    """The outreach services, wired to each other once (by the composition root)."""

    jobs: Jobs
    tasks: Tasks
    drafting: Drafting
    review: Review
    delivery: Delivery
    presenting: Presenting
    recovery: Recovery
    snoozing: Snoozing
    referrals: Referrals
    cadences: Cadences

    @classmethod
    def build(
        cls,
        deps: OutreachDeps,
        *,
        unsubscribe_url: UnsubscribeLinks,
        mailer: Mailer | None = None,
        notifier: ChatNotifier | None = None,
        drafter: DraftModel | None = None,
        secrets: SecretBoxPort | None = None,
        work_lease: timedelta = timedelta(minutes=5),
        replies: Replies | None = None,
        holidays: Callable[[CadenceSettings], HolidayCalendar] | None = None,
        lookout: ReplyLookout | None = None,
    ) -> Outreach:
        """Build every service with the ports given; each gets the services it calls.

        `work_lease`: how long planning a job, or a card between approval and the
        outbox, may go without progress before the recovery sweep takes it as abandoned.
        `holidays`: the holiday calendar of an organization's cadence settings (none: no
        holidays). `lookout`: the last look in the rep's mailbox before a cadence follow-up
        is drafted and sent (domain/last_look.py; none: no look, as in sandbox mode).
        """
        presenting = Presenting(deps, notifier=notifier)
        jobs = Jobs(deps, presenting=presenting, secrets=secrets, work_lease=work_lease)
        delivery = Delivery(deps, jobs=jobs, presenting=presenting, mailer=mailer, lookout=lookout)
        review = Review(
            deps,
            jobs=jobs,
            presenting=presenting,
            delivery=delivery,
            unsubscribe_url=unsubscribe_url,
        )
        drafting = Drafting(
            deps,
            jobs=jobs,
            presenting=presenting,
            delivery=delivery,
            unsubscribe_url=unsubscribe_url,
            drafter=drafter,
            lookout=lookout,
        )
        tasks = Tasks(
            deps,
            jobs=jobs,
            presenting=presenting,
            drafting=drafting,
            delivery=delivery,
            replies=replies,
        )
        recovery = Recovery(deps, jobs=jobs, delivery=delivery, review=review)
        snoozing = Snoozing(deps, presenting=presenting, lease=work_lease)
        return cls(
            jobs=jobs,
            tasks=tasks,
            drafting=drafting,
            review=review,
            delivery=delivery,
            presenting=presenting,
            recovery=recovery,
            snoozing=snoozing,
            referrals=Referrals(deps, presenting=presenting),
            cadences=Cadences(
                deps, jobs=jobs, holidays=holidays or (lambda _settings: NoHolidays())
            ),
        )
