"""Jobs: launch a campaign as a job, plan it, pause, resume, cancel and finish it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from domain import faults
from domain.cadence import (
    CadenceSettings,
    HolidayCalendar,
    ResolvedZone,
    SendWindow,
    next_opening,
    resolve_time_zone,
)
from domain.campaigns import Campaign, CampaignStatus
from domain.enrollments import EnrollmentSummary, EnrollmentView
from domain.errors import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    NotPermitted,
    SalesbotError,
)
from domain.jobs import (
    MAX_STALE_TOP,
    TERMINAL_JOB_STATES,
    Behaviour,
    CreateJobRequest,
    EnrollmentStatus,
    Job,
    JobGuard,
    JobParams,
    JobStatus,
    TargetSelection,
    UpdateJobRequest,
    batches,
    check_job_move,
    params_from_campaign,
    step_task_rows,
)
from domain.outreach.common import Actor, OutreachDeps, PlanningFailed, person_name
from domain.outreach.presenting import Presenting
from domain.ports import OutreachUnitOfWork, SecretBoxPort
from domain.templates import check_template

log = logging.getLogger(__name__)

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
# A campaign paused or resumed takes its jobs along: (from, to) of each of its jobs.
_CAMPAIGN_JOB_MOVES: dict[CampaignStatus, tuple[JobStatus, JobStatus]] = {
    CampaignStatus.PAUSED: (JobStatus.RUNNING, JobStatus.PAUSED),
    CampaignStatus.ACTIVE: (JobStatus.PAUSED, JobStatus.RUNNING),
}
# How many of a campaign's jobs a pause or resume looks at, at most (one job a campaign is
# open at a time: launching refuses a second).
_CAMPAIGN_JOBS_LIMIT = 500
#: How many of an audience's first contacts a launch preview schedules.
PREVIEW_SAMPLE = 5


@dataclass(frozen=True)
class LaunchResult:
    """A launched campaign: its job and how many contacts it will reach."""

    job: Job
    audience_count: int
    campaign_name: str
    #: With `stale_top`: when the ranking the audience was drawn from was computed.
    ranking_at: datetime | None = None


@dataclass(frozen=True)
class CampaignStatusChange:
    """A campaign paused or resumed: the campaign as it is now and the jobs that followed."""

    campaign: Campaign
    job_ids: tuple[int, ...]


class Jobs:
    """Create, launch, plan, pause, resume, cancel and finish jobs."""

    def __init__(
        self,
        deps: OutreachDeps,
        *,
        presenting: Presenting,
        secrets: SecretBoxPort | None = None,
        work_lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._presenting = presenting
        self._secrets = secrets
        # How long planning a job, or a card between approval and the outbox, may go
        # without progress before the recovery sweep takes it as abandoned.
        self.work_lease = work_lease

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
                earlier = uow.jobs.find_by_request_key(org_id, request_key)
                if earlier is not None:
                    if earlier.name != request.name or earlier.campaign_id != request.campaign_id:
                        raise Conflict(
                            "this Idempotency-Key was used for another job; use a new key"
                        )
                    return earlier
            _check_step_templates(uow, org_id, params)
            if params.target.stale_top is not None:
                stale_ranking_at(uow, org_id)
            if request.campaign_id is not None:
                uow.campaigns.get(org_id, request.campaign_id)
            job = uow.jobs.add(
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
        stale_top: int | None = None,
    ) -> LaunchResult:
        """Turn a campaign (by name or id; `by_id`: by id only) into a pending job and count
        its audience.

        `request_key` names the request (a Slack command's trigger id): the same request
        run again, after a crash, returns the job it created instead of a second one.
        `stale_top`: only the campaign's contacts at the N best clients of the stale-client
        ranking (refused while the ranking was never computed).
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
                earlier = uow.jobs.find_by_request_key(org_id, request_key)
                if earlier is not None:
                    if earlier.campaign_id != campaign.id:
                        raise Conflict(
                            "this request key was used to launch another campaign; use a new key"
                        )
                    target = earlier.parsed_params().target
                    count = uow.audience.target_count(org_id, target, now=now)
                    ranked_at = (
                        stale_ranking_at(uow, org_id) if target.stale_top is not None else None
                    )
                    return LaunchResult(
                        job=earlier,
                        audience_count=count,
                        campaign_name=campaign.name,
                        ranking_at=ranked_at,
                    )
            if campaign.status.value in ("completed", "archived"):
                raise InvalidInput(
                    f"campaign “{campaign.name}” is {campaign.status.value}; it cannot be launched"
                )
            try:
                params = params_from_campaign(campaign)
            except (ValueError, ValidationError) as exc:
                raise InvalidInput(str(exc).splitlines()[0]) from exc
            ranking_at = None
            if stale_top is not None:
                params = with_stale_top(params, stale_top)
                ranking_at = stale_ranking_at(uow, org_id)
            _check_step_templates(uow, org_id, params)
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
            count = uow.audience.target_count(org_id, params.target, now=now)
            job = uow.jobs.add(
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
        return LaunchResult(
            job=job, audience_count=count, campaign_name=campaign.name, ranking_at=ranking_at
        )

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
            job = uow.jobs.get(org_id, job_id)
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
        # A job whose emails go out without review sends step 0 as the cadence sends
        # every step: the tick runs it inside each contact's business hours, after the
        # stop rules and the fatigue limits. A reviewed job drafts it now: the rep sees
        # the cards at once and sends each by approving it.
        unreviewed = params.behaviour.auto_approve or not params.behaviour.review_mode
        enrolled = 0
        with self._uow() as uow:
            # One transaction per chunk of the audience (a thousand contacts); tasks are
            # numbered in batches of the job's batch_size for review and bulk approval.
            for chunk in uow.audience.target_contact_ids(org_id, params.target, now=now):
                if unreviewed:
                    mapping = uow.enrollments.add_many(org_id, job_id, chunk, next_due_at=now)
                else:
                    # Step 0 runs now (its tasks are made below): the enrollment has no due
                    # time until the step ends and the cadence tick takes it on.
                    mapping = uow.enrollments.add_many(
                        org_id, job_id, chunk, next_due_at=None, step_started_at=now
                    )
                rows: list[dict[str, Any]] = []
                for part in batches([] if unreviewed else [c for c in chunk if c in mapping], size):
                    for cid in part:
                        rows.extend(
                            first_step_tasks(
                                params, contact_id=cid, enrollment_id=mapping[cid], batch=batch_no
                            )
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
            job = uow.jobs.get(org_id, job_id)
            _authorize_job(uow, by, job, verb=_JOB_VERBS.get(to, "change"))
            _refuse_inbox(job, verb=_JOB_VERBS.get(to, "change"))
            check_job_move(job.status, to)
            if not uow.jobs.set_status(org_id, job_id, to, expected=[job.status], now=now):
                raise InvalidInput("the job changed meanwhile; try again")
            if to == JobStatus.RUNNING:
                # The enrollments the pause held are due again: the tick judges them anew.
                uow.cadence.resume_job(org_id, job_id, now=now)
            uow.commit()
        if to == JobStatus.RUNNING:
            # Its cards may all have been decided while it was paused.
            self.finish_job_if_done(org_id, job_id)
        with self._uow() as uow:
            return uow.jobs.get(org_id, job_id)

    def set_campaign_status(
        self, actor: Actor | None, org_id: int, campaign_id: int, *, to: CampaignStatus
    ) -> CampaignStatusChange:
        """Pause or resume a campaign with its jobs: running jobs pause, paused ones resume.

        `actor` must have created the campaign or be an admin (see
        authorize_campaign_status); whoever may move the campaign may move all its jobs,
        whoever launched them. One transaction moves the jobs and the campaign; a job that
        changed meanwhile is left as it is.
        """
        moves = _CAMPAIGN_JOB_MOVES.get(to)
        if moves is None:
            raise InvalidInput(f"a campaign is paused or resumed here, not set to {to.value}")
        source, target = moves
        now = self._clock.now()
        with self._uow() as uow:
            campaign = uow.campaigns.get(org_id, campaign_id)
            _authorize_campaign(uow, actor, org_id, campaign, to=to)
            moved: list[int] = []
            for job in uow.jobs.list(
                org_id, status=source.value, campaign_id=campaign_id, limit=_CAMPAIGN_JOBS_LIMIT
            ):
                check_job_move(job.status, target)
                if uow.jobs.set_status(org_id, job.id, target, expected=[source], now=now):
                    moved.append(job.id)
                    if target == JobStatus.RUNNING:
                        uow.cadence.resume_job(org_id, job.id, now=now)
            fields = campaign.model_copy(update={"status": to})
            updated = uow.campaigns.update(org_id, campaign_id, fields, now=now)
            uow.commit()
        if target == JobStatus.RUNNING:
            # Their cards may all have been decided while they were paused.
            for job_id in moved:
                self.finish_job_if_done(org_id, job_id)
        log.info(
            "campaign status set",
            extra={"campaign_id": campaign_id, "status": to.value, "jobs": moved},
        )
        return CampaignStatusChange(campaign=updated, job_ids=tuple(moved))

    def authorize_campaign_status(
        self, actor: Actor | None, org_id: int, campaign_id: int, *, to: CampaignStatus
    ) -> None:
        """Refuse to pause, resume (or otherwise move) a campaign unless the actor created
        it or is an admin. A campaign without an owner (made by an API token not tied to a
        user) is an admin's to move: pausing a campaign stops every rep's jobs of it."""
        if actor is None or actor.is_admin:
            return
        with self._uow() as uow:
            _authorize_campaign(uow, actor, org_id, uow.campaigns.get(org_id, campaign_id), to=to)

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
            job = uow.jobs.get(org_id, job_id)
            _authorize_job(uow, by, job, verb=_JOB_VERBS.get(to, "change"))
            _refuse_inbox(job, verb=_JOB_VERBS.get(to, "change"))
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
            self._presenting.queue_posts(
                uow,
                org_id,
                job_id,
                [{"input": {"card_id": card_id}} for card_id, ts in withdrawn if ts],
            )
            uow.commit()
            stopped = uow.jobs.get(org_id, job_id)
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
        The replies inbox never finishes: the next reply makes more cards in it.
        """
        now = self._clock.now()
        with self._uow() as uow:
            if (
                not uow.tasks.has_open(org_id, job_id)
                and not uow.cards.has_undecided(org_id, job_id)
                and not uow.cadence.has_open(org_id, job_id)
                and not uow.jobs.get(org_id, job_id).is_inbox
            ):
                uow.jobs.set_status(
                    org_id, job_id, JobStatus.SUCCEEDED, expected=[JobStatus.RUNNING], now=now
                )
                uow.commit()

    def update_job(
        self, org_id: int, job_id: int, request: UpdateJobRequest, *, by: Actor | None = None
    ) -> Job:
        """Rename a job, change its description or its behaviour (`by`: who asks).

        The fields the request leaves out are kept; within `behaviour`, so are the settings
        it leaves out. `by` must have launched the job or be an admin. A finished job
        (succeeded, failed, cancelled) and the replies inbox cannot be changed.
        """
        given = request.model_fields_set
        if "name" in given and request.name is None:
            raise InvalidInput("a job's name cannot be null; leave it out to keep it", field="name")
        if "behaviour" in given and request.behaviour is None:
            raise InvalidInput(
                "behaviour cannot be null; leave it out to keep it, or give the settings to change",
                field="behaviour",
            )
        with self._uow() as uow:
            job = self._job_to_change(uow, org_id, job_id, by=by)
            params: dict[str, Any] | None = None
            if request.behaviour is not None:
                changes = request.behaviour.model_dump(include=request.behaviour.model_fields_set)
                stored = job.params.get("behaviour")
                merged = {**(stored if isinstance(stored, dict) else {}), **changes}
                try:
                    behaviour = Behaviour.model_validate(merged)
                except ValidationError as exc:
                    raise InvalidInput(
                        f"the job's behaviour would not be valid: {_first_error(exc)}",
                        field="behaviour",
                    ) from None
                params = {**job.params, "behaviour": behaviour.model_dump(mode="json")}
            if not uow.jobs.update_details(
                org_id,
                job_id,
                expected=[job.status],
                name=request.name,
                description=request.description,
                clear_description="description" in given and request.description is None,
                params=params,
            ):
                raise InvalidInput("the job changed meanwhile; try again")
            uow.commit()
            updated = uow.jobs.get(org_id, job_id)
        log.info("job updated", extra={"job_id": job_id, "fields": sorted(given)})
        return updated

    def set_job_guard(
        self, org_id: int, job_id: int, guard: JobGuard, *, by: Actor | None = None
    ) -> JobGuard:
        """Set a job's own deliverability thresholds: past them the cadence pauses the job.

        The thresholds `guard` leaves out (None) follow the organization's cadence settings.
        `by` must have launched the job or be an admin; a finished job and the replies
        inbox are refused. Returns the job's guard as stored.
        """
        with self._uow() as uow:
            job = self._job_to_change(uow, org_id, job_id, by=by, verb="guard")
            stored = guard.model_dump(mode="json", exclude_none=True)
            params = {**job.params, "guard": stored or None}
            if not uow.jobs.update_details(org_id, job_id, expected=[job.status], params=params):
                raise InvalidInput("the job changed meanwhile; try again")
            uow.commit()
        log.info("job guard set", extra={"job_id": job_id, "guard": stored})
        return JobGuard.model_validate(stored)

    def _job_to_change(
        self,
        uow: OutreachUnitOfWork,
        org_id: int,
        job_id: int,
        *,
        by: Actor | None,
        verb: str = "change",
    ) -> Job:
        """Read a job that `by` may change, holding its row; refuse a finished one."""
        uow.jobs.lock_status(org_id, job_id)
        job = uow.jobs.get(org_id, job_id)
        _authorize_job(uow, by, job, verb=verb)
        _refuse_inbox(job, verb="change")
        if job.status in TERMINAL_JOB_STATES:
            raise InvalidTransition(
                f"job #{job.id} is {job.status.value}: a finished job cannot be changed"
            )
        return job

    def job_detail(self, org_id: int, job_id: int) -> JobDetail:
        """Return a job with its enrollments counted by status and reason."""
        with self._uow() as uow:
            job = uow.jobs.get(org_id, job_id)
            groups = uow.enrollments.summary_for_job(org_id, job_id)
        return JobDetail(**job.model_dump(), enrollments=EnrollmentSummary.of(groups))

    def list_enrollments(
        self,
        org_id: int,
        job_id: int,
        *,
        status: EnrollmentStatus | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[EnrollmentView]:
        """Return a job's enrollments a page at a time (after the enrollment id `after`),
        each with its step counted from 1 out of the cadence's steps."""
        with self._uow() as uow:
            job = uow.jobs.get(org_id, job_id)
            rows = uow.enrollments.list_for_job(
                org_id, job_id, status=status, after=after, limit=limit
            )
        total = _total_steps(job)
        return [EnrollmentView.of(row, total_steps=total) for row in rows]

    def preview_launch(
        self,
        org_id: int,
        campaign_ref: str,
        *,
        holidays: Callable[[CadenceSettings], HolidayCalendar],
        sample: int = PREVIEW_SAMPLE,
        stale_top: int | None = None,
    ) -> LaunchPreview:
        """Say what launching a campaign would do, launching nothing: the audience count,
        the cadence's steps, and for the first `sample` contacts when the first step may
        go out in their time zone (the organization's send window and holidays).

        What would refuse the launch (a finished campaign, a job still open) is told as a
        warning instead of raised, so the preview still shows the audience.
        """
        now = self._clock.now()
        with self._uow() as uow:
            campaign = _find_campaign(uow, org_id, campaign_ref)
            try:
                params = params_from_campaign(campaign)
            except (ValueError, ValidationError) as exc:
                raise InvalidInput(str(exc).splitlines()[0]) from exc
            ranking_at = None
            if stale_top is not None:
                params = with_stale_top(params, stale_top)
                ranking_at = stale_ranking_at(uow, org_id)
            warnings: list[str] = []
            if campaign.status.value in ("completed", "archived"):
                warnings.append(
                    f"campaign “{campaign.name}” is {campaign.status.value}; it cannot be launched"
                )
            for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED):
                for open_job in uow.jobs.list(
                    org_id, status=status.value, campaign_id=campaign.id, limit=1
                ):
                    warnings.append(
                        f"job #{open_job.id} of this campaign is {open_job.status.value}; a "
                        "launch is refused until it finishes or is cancelled"
                    )
            count = uow.audience.target_count(org_id, params.target, now=now)
            first: list[int] = []
            for chunk in uow.audience.target_contact_ids(org_id, params.target, now=now):
                first.extend(chunk[: sample - len(first)])
                if len(first) >= sample:
                    break
            settings = uow.cadence.settings(org_id)
            facts = uow.cadence.contact_facts(org_id, first, now=now)
            contexts = uow.contexts.contact_contexts(org_id, first, now=now)
        calendar = holidays(settings)
        window = settings.window()
        contacts: list[PreviewContact] = []
        for contact_id in first:
            fact = facts.get(contact_id)
            context = contexts.get(contact_id)
            if fact is None:
                continue  # deleted since it was counted
            zone = resolve_time_zone(
                contact_zone=fact.time_zone, state=fact.state, org_zone=settings.timezone
            )
            contacts.append(
                PreviewContact(
                    contact_id=contact_id,
                    email=fact.email,
                    name=context.full_name if context is not None else fact.email,
                    first_step_at=next_opening(now, zone.zone, window, calendar),
                    zone=zone,
                )
            )
        steps = tuple(
            PreviewStep(number=p.index + 1, day=p.day, channel=p.channel.value, title=p.title)
            for p in params.plan()
        )
        return LaunchPreview(
            campaign_id=campaign.id,
            campaign_name=campaign.name,
            audience_count=count,
            steps=steps,
            business_days=params.cadence.business_days,
            contacts=tuple(contacts),
            window=window,
            holiday_country=settings.holiday_country,
            warnings=tuple(warnings),
            stale_top=stale_top,
            ranking_at=ranking_at,
        )

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


def with_stale_top(params: JobParams, stale_top: int) -> JobParams:
    """Restrict a job's target to the reachable contacts of the N best stale clients."""
    if not 1 <= stale_top <= MAX_STALE_TOP:
        raise InvalidInput(
            f"--stale-top takes a number of clients from 1 to {MAX_STALE_TOP}, e.g. "
            "`/campaign launch Win-back --stale-top 50`",
            field="stale_top",
        )
    target = TargetSelection.model_validate({**params.target.model_dump(), "stale_top": stale_top})
    return params.model_copy(update={"target": target})


def stale_ranking_at(uow: OutreachUnitOfWork, org_id: int) -> datetime:
    """When the stale-client ranking a `stale_top` target reads was computed; Conflict
    when it never was (the launch would target nobody)."""
    run = uow.targeting.last_run(org_id)
    if run is None or run.computed_at is None:
        raise Conflict(
            "the stale-client ranking has not been computed for your organization yet, so "
            "--stale-top has no clients to take: it is computed daily (within the hour once "
            "Salesbot's worker runs); run `/campaign launch … --stale-top N` after the daily "
            "ranking, or have an admin compute it now with "
            "`POST /api/marketing/stale-clients/recompute`"
        )
    return run.computed_at


def _refuse_inbox(job: Job, *, verb: str) -> None:
    """The replies inbox runs for ever: stopping it would leave reply cards unposted."""
    if job.is_inbox:
        raise InvalidTransition(
            f"Job #{job.id} is the replies inbox: it holds the reply cards that answer no "
            f"campaign, and it cannot be {_PAST.get(verb, verb + 'd')}. Reject its cards one "
            "by one instead; `/triage` shows where they are posted."
        )


_PAST = {"cancel": "cancelled", "pause": "paused", "resume": "resumed", "change": "changed"}


def first_step_tasks(
    params: JobParams, *, contact_id: int, enrollment_id: int, batch: int
) -> list[dict[str, Any]]:
    """The tasks a contact just enrolled in a job starts with: step 0 of its cadence (the
    draft of its first email, or a rep's card) and the job's task templates of step 0."""
    rows = step_task_rows(params, 0, contact_id=contact_id, enrollment_id=enrollment_id)
    return [{**row, "batch": batch} for row in rows]


def _authorize_job(uow: OutreachUnitOfWork, actor: Actor | None, job: Job, *, verb: str) -> None:
    if actor is None or actor.is_admin or job.owner_id is None or job.owner_id == actor.user_id:
        return
    owner = person_name(uow, job.org_id, job.owner_id)
    raise NotPermitted(f"Only {owner}, who launched job #{job.id}, or an admin can {verb} it.")


def _authorize_campaign(
    uow: OutreachUnitOfWork,
    actor: Actor | None,
    org_id: int,
    campaign: Campaign,
    *,
    to: CampaignStatus,
) -> None:
    if actor is None or actor.is_admin or campaign.created_by == actor.user_id:
        return
    verb = _CAMPAIGN_VERBS.get(to, "change the status of")
    if campaign.created_by is None:
        raise NotPermitted(
            f"Only an admin can {verb} the campaign “{campaign.name}”: nobody owns it."
        )
    owner = person_name(uow, org_id, campaign.created_by)
    raise NotPermitted(
        f"Only {owner}, who created the campaign “{campaign.name}”, or an admin can {verb} it."
    )


def _check_step_templates(uow: OutreachUnitOfWork, org_id: int, params: JobParams) -> None:
    ids = [t.template_id for t in params.templates if t.template_id is not None]
    missing = set(ids) - uow.templates.existing_ids(org_id, ids)
    if missing:
        raise InvalidInput(f"email template(s) {', '.join(map(str, sorted(missing)))} not found")
    for step in params.templates:
        if step.template_id is None:
            check_template(step.subject or "", field="subject")
            check_template(step.body or "", field="body")


class JobDetail(Job):
    """A job with its enrollments counted by status and reason."""

    enrollments: EnrollmentSummary


@dataclass(frozen=True)
class PreviewStep:
    """A step of the cadence a launch would run."""

    number: int  # counted from 1
    day: int
    channel: str
    title: str | None = None


@dataclass(frozen=True)
class PreviewContact:
    """One of the first contacts a launch would reach, and when its first step may go out."""

    contact_id: int
    email: str
    name: str
    first_step_at: datetime
    zone: ResolvedZone


@dataclass(frozen=True)
class LaunchPreview:
    """What launching a campaign would do (a dry run launches nothing)."""

    campaign_id: int
    campaign_name: str
    audience_count: int
    steps: tuple[PreviewStep, ...]
    business_days: bool
    contacts: tuple[PreviewContact, ...]
    window: SendWindow
    holiday_country: str | None
    #: What would refuse the launch (a finished campaign, a job still open).
    warnings: tuple[str, ...] = ()
    #: `--stale-top N`: the audience is the campaign's contacts at the N best stale
    #: clients of the ranking computed at `ranking_at`.
    stale_top: int | None = None
    ranking_at: datetime | None = None


def _find_campaign(uow: OutreachUnitOfWork, org_id: int, ref: str) -> Campaign:
    """Find a campaign by id or name, as a launch does."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput(
            "name the campaign to preview, e.g. `/campaign launch Q4 lender win-back --dry-run`"
        )
    if ref.isdigit() and len(ref) <= 18:
        try:
            return uow.campaigns.get(org_id, int(ref))
        except NotFound:
            pass
    campaign = uow.campaigns.find_by_name(org_id, ref)
    if campaign is None:
        raise NotFound(f"no campaign named “{ref}”; `/campaign list` shows them")
    return campaign


def _total_steps(job: Job) -> int | None:
    """The steps of a job's cadence; None for a job without one (the replies inbox)."""
    if job.is_inbox:
        return None
    try:
        return job.parsed_params().steps
    except ValidationError:
        return None  # params an older version stored and this one no longer reads


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()))
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
