"""Cadences: the tick that advances every enrollment through its steps, and the step ends.

The tick (run every minute by the scheduler, or now by `POST /api/agent/cadence/execute`)
claims due enrollments a chunk at a time, in due order, each chunk in one transaction:

1. pauses that ended (an out-of-office's return date) make their enrollments due again;
2. each job with due enrollments passes the deliverability guard first: past its bounce
   or opt-out rate it pauses itself, and its review channel is told why;
3. the engine (`domain.cadence.decide`) judges each due enrollment against the stop and
   pause rules, its step's day, the send window in the contact's zone, holidays and the
   fatigue limits;
4. a step that runs becomes tasks (an email's draft, a LinkedIn/call/task card, and the
   job's task templates planned for that step); the enrollment then waits for the step
   to end. Everything else is written back with its reason and next due time.

A step ends when its email is sent, or its card is done or skipped (`end_step`, in the
unit of work that moves the card): the next step then counts its gap from that moment,
so a step that waited shifts the ones after it (no catch-up burst). Claiming, deciding
and creating the tasks share one transaction, so two workers never run a step twice and
a worker that dies mid-chunk leaves it to the next tick, untouched.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from domain import faults
from domain.cadence import (
    CadenceSettings,
    Channel,
    ContactFacts,
    Decision,
    DueEnrollment,
    GuardThresholds,
    HolidayCalendar,
    JobFacts,
    Outcome,
    Settlement,
    StepSpec,
    decide,
    guard_verdict,
)
from domain.errors import InvalidInput
from domain.jobs import EnrollmentStatus, Job, JobParams, JobStatus, step_task_rows
from domain.outreach.jobs import Jobs
from domain.ports import OutreachUnitOfWork

log = logging.getLogger(__name__)

#: The notice kind that tells a job's channel the guard paused it.
NOTICE_JOB_GUARD_PAUSED: Final = "job_guard_paused"


@dataclass
class TickReport:
    """What one tick did."""

    at: datetime
    claimed: int = 0
    ran: int = 0
    deferred: int = 0
    paused: int = 0
    stopped: int = 0
    completed: int = 0
    resumed: int = 0
    tasks_created: int = 0
    wins: int = 0
    jobs_paused: list[int] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """The report as the API returns it."""
        return {
            "at": self.at.isoformat(),
            "claimed": self.claimed,
            "ran": self.ran,
            "deferred": self.deferred,
            "paused": self.paused,
            "stopped": self.stopped,
            "completed": self.completed,
            "resumed": self.resumed,
            "tasks_created": self.tasks_created,
            "wins": self.wins,
            "jobs_paused": list(self.jobs_paused),
            "reasons": dict(self.reasons.most_common(20)),
        }


@dataclass(frozen=True)
class _JobView:
    job: Job
    params: JobParams | None
    facts: JobFacts


@dataclass
class _TickState:
    """What one tick reads once and every chunk uses (chunks of 500 among a dozen jobs
    asked the same questions 20 times a tick of 10,000: bench/cadence_tick.py).

    A job's status is read again by every chunk (a pause must take effect at once); its
    campaign's status and end date, the organization's settings and calendar, and the
    guard's verdict hold for the tick. `batches` continues each job's batch numbers from
    the largest the tick found, one per chunk, as asking again would.
    """

    settings: dict[int, CadenceSettings] = field(default_factory=dict)
    holidays: dict[int, HolidayCalendar] = field(default_factory=dict)
    #: Jobs the deliverability guard let run (its counts read a job's week of sends).
    guarded: set[int] = field(default_factory=set)
    campaigns: dict[int, tuple[str, date | None]] = field(default_factory=dict)
    batches: dict[int, int] = field(default_factory=dict)
    #: Emails this tick decided to send, by person and by (organization, domain): they
    #: count toward the fatigue limits at once, across the tick's chunks.
    person: Counter[int] = field(default_factory=Counter)
    domain: Counter[tuple[int, str]] = field(default_factory=Counter)


class Cadences:
    """Advances enrollments through their cadence; records the end of each step."""

    def __init__(
        self,
        deps: Any,
        *,
        jobs: Jobs,
        holidays: Callable[[CadenceSettings], HolidayCalendar],
        chunk: int = 2000,
        max_per_tick: int = 20_000,
    ) -> None:
        self._uow: Callable[[], OutreachUnitOfWork] = deps.uow
        self._clock = deps.clock
        self._jobs = jobs
        self._holidays = holidays
        self.chunk = chunk
        # A tick after downtime works through at most this many enrollments; the rest of
        # the backlog waits for the next ticks, in due order (throttled, not a burst).
        self.max_per_tick = max_per_tick

    def tick(self, *, now: datetime | None = None, org_id: int | None = None) -> TickReport:
        """Advance every due enrollment (of one organization, given `org_id`) once;
        return what was done."""
        now = now or self._clock.now()
        report = TickReport(at=now)
        with self._uow() as uow:
            report.resumed = uow.cadence.resume_paused(
                now=now, limit=self.max_per_tick, org_id=org_id
            )
            uow.commit()
        if report.resumed:
            faults.reach("cadence.resumed")
        state = _TickState()
        self._guard_recent_losses(now=now, org_id=org_id, report=report, state=state)
        if report.jobs_paused:
            faults.reach("cadence.guarded")
        ended_jobs: set[tuple[int, int]] = set()
        while report.claimed < self.max_per_tick:
            limit = min(self.chunk, self.max_per_tick - report.claimed)
            with self._uow() as uow:
                due = uow.cadence.claim_due(now=now, limit=limit, org_id=org_id)
                if not due:
                    break
                report.claimed += len(due)
                ended_jobs |= self._judge(uow, due, now=now, report=report, state=state)
                uow.commit()
            faults.reach("cadence.chunk")
            if len(due) < limit:
                break
        for org_id, job_id in sorted(ended_jobs):
            self._jobs.finish_job_if_done(org_id, job_id)
        if report.claimed or report.resumed:
            log.info("cadence tick", extra={"report": report.as_dict()})
        return report

    # -- one chunk ------------------------------------------------------------------------

    def _judge(
        self,
        uow: OutreachUnitOfWork,
        due: list[DueEnrollment],
        *,
        now: datetime,
        report: TickReport,
        state: _TickState,
    ) -> set[tuple[int, int]]:
        """Decide and apply the verdicts of one claimed chunk; return jobs that may be done."""
        by_org: dict[int, list[DueEnrollment]] = {}
        for item in due:
            by_org.setdefault(item.org_id, []).append(item)
        ended: set[tuple[int, int]] = set()
        settlements: list[Settlement] = []
        for org_id, items in by_org.items():
            if org_id not in state.settings:
                state.settings[org_id] = _org_settings(uow, org_id)
                state.holidays[org_id] = self._holidays(state.settings[org_id])
            org_settings, holidays = state.settings[org_id], state.holidays[org_id]
            views = {
                job_id: self._job_view(
                    uow, org_id, job_id, org_settings, now=now, report=report, state=state
                )
                for job_id in sorted({i.job_id for i in items})
            }
            facts = uow.cadence.contact_facts(org_id, [i.contact_id for i in items], now=now)
            # Emails this tick decides to send count toward the fatigue limits at once.
            tasks: dict[int, list[dict[str, Any]]] = {}
            for item in items:
                view = views[item.job_id]
                contact = facts.get(item.contact_id)
                if contact is not None:
                    domain = contact.email.rsplit("@", 1)[-1].lower()
                    contact = replace(
                        contact,
                        emails_last_week=contact.emails_last_week + state.person[item.contact_id],
                        domain_emails_last_day=contact.domain_emails_last_day
                        + state.domain[(org_id, domain)],
                    )
                decision = decide(item, contact, view.facts, org_settings, holidays, now=now)
                settlements.append(self._settle(item, decision, report))
                if decision.outcome in (Outcome.STOP, Outcome.COMPLETE):
                    ended.add((org_id, item.job_id))
                if decision.outcome != Outcome.RUN or decision.step is None or not view.params:
                    continue
                if decision.step.channel == Channel.EMAIL and contact is not None:
                    state.person[item.contact_id] += 1
                    state.domain[(org_id, contact.email.rsplit("@", 1)[-1].lower())] += 1
                tasks.setdefault(item.job_id, []).extend(
                    step_tasks(view.params, item, decision, contact)
                )
            for job_id, rows in tasks.items():
                batch = state.batches.get(job_id)
                if batch is None:
                    batch = uow.tasks.next_batch(org_id, job_id)
                state.batches[job_id] = batch + 1
                for row in rows:
                    row["batch"] = batch
                added = uow.tasks.add_many(org_id, job_id, rows)
                uow.jobs.bump(job_id, total_tasks=added)
                report.tasks_created += added
        uow.cadence.settle(settlements, now=now)
        return ended

    def _settle(self, item: DueEnrollment, decision: Decision, report: TickReport) -> Settlement:
        zone = f"{decision.zone.zone.key} ({decision.zone.source})" if decision.zone else None
        outcome = decision.outcome
        if outcome == Outcome.RUN:
            report.ran += 1
            return Settlement(
                item.id,
                EnrollmentStatus.ACTIVE.value,
                None,
                time_zone=zone,
                step_started_at=report.at,
            )
        report.reasons[reason_key(decision.reason)] += 1
        if outcome == Outcome.DEFER:
            report.deferred += 1
            return Settlement(
                item.id,
                EnrollmentStatus.ACTIVE.value,
                decision.at,
                defer_reason=decision.reason,
                time_zone=zone,
            )
        if outcome == Outcome.PAUSE:
            report.paused += 1
            return Settlement(
                item.id, EnrollmentStatus.PAUSED.value, None, stop_reason=decision.reason
            )
        if outcome == Outcome.COMPLETE:
            report.completed += 1
            return Settlement(item.id, EnrollmentStatus.COMPLETED.value, None)
        report.stopped += 1
        if decision.win:
            report.wins += 1
        return Settlement(
            item.id, EnrollmentStatus.STOPPED.value, None, stop_reason=decision.reason
        )

    def _guard_recent_losses(
        self, *, now: datetime, org_id: int | None, report: TickReport, state: _TickState
    ) -> None:
        """Pass the jobs that lost contacts to bounces or opt-outs in the last day through
        the deliverability guard, due steps or not: the spike of a launch (every step 1
        sent at once) pauses its job before its step 2 is due, not days later."""
        with self._uow() as uow:
            for job_org, job_id in uow.cadence.jobs_with_recent_losses(
                since=now - timedelta(days=1), org_id=org_id
            ):
                if job_org not in state.settings:
                    state.settings[job_org] = _org_settings(uow, job_org)
                    state.holidays[job_org] = self._holidays(state.settings[job_org])
                job = uow.jobs.get(job_org, job_id)
                if job.status != JobStatus.RUNNING or job.is_inbox:
                    continue
                try:
                    params = job.parsed_params()
                except ValidationError:
                    continue  # the tick stops its enrollments when they come due
                if self._guard(uow, job, params, state.settings[job_org], now=now) is None:
                    state.guarded.add(job_id)
                else:
                    report.jobs_paused.append(job_id)
            uow.commit()

    def _job_view(
        self,
        uow: OutreachUnitOfWork,
        org_id: int,
        job_id: int,
        settings: CadenceSettings,
        *,
        now: datetime,
        report: TickReport,
        state: _TickState,
    ) -> _JobView:
        job = uow.jobs.get(org_id, job_id)
        try:
            params = job.parsed_params()
        except ValidationError as exc:
            # A job whose stored params no longer read (edited by hand, an old format)
            # must not hold the tick: its enrollments stop with the reason.
            log.error(
                "job params unreadable; its enrollments stop",
                extra={"job_id": job_id, "error": str(exc).splitlines()[0]},
            )
            facts = JobFacts(
                job_id=job.id, status="params unreadable", started_at=job.created_at, steps=()
            )
            return _JobView(job=job, params=None, facts=facts)
        status = job.status
        if status == JobStatus.RUNNING and job_id not in state.guarded:
            reason = self._guard(uow, job, params, settings, now=now)
            if reason is not None:
                report.jobs_paused.append(job_id)
                status = JobStatus.PAUSED
            else:
                state.guarded.add(job_id)
        campaign_status, campaign_end = None, None
        if job.campaign_id is not None:
            if job.campaign_id not in state.campaigns:
                campaign = uow.campaigns.get(org_id, job.campaign_id)
                state.campaigns[job.campaign_id] = (campaign.status.value, campaign.end_date)
            campaign_status, campaign_end = state.campaigns[job.campaign_id]
        facts = JobFacts(
            job_id=job.id,
            status=status.value,
            started_at=job.started_at or job.created_at,
            steps=tuple(StepSpec(p.index, p.day, p.channel) for p in params.plan()),
            business_days=params.cadence.business_days,
            campaign_status=campaign_status,
            campaign_end=campaign_end,
        )
        return _JobView(job=job, params=params, facts=facts)

    def _guard(
        self,
        uow: OutreachUnitOfWork,
        job: Job,
        params: JobParams,
        settings: CadenceSettings,
        *,
        now: datetime,
    ) -> str | None:
        """Pause a job whose bounces or opt-outs spiked; tell its channel. Return why."""
        own = params.guard
        limits = GuardThresholds(
            max_bounce_rate=own.max_bounce_rate
            if own and own.max_bounce_rate
            else settings.max_bounce_rate,
            max_opt_out_rate=own.max_opt_out_rate
            if own and own.max_opt_out_rate
            else settings.max_opt_out_rate,
            min_sends=own.min_sends if own and own.min_sends else settings.guard_min_sends,
        )
        since = now - timedelta(days=settings.guard_window_days)
        reason = guard_verdict(uow.cadence.guard_counts(job.org_id, job.id, since=since), limits)
        if reason is None:
            return None
        if not uow.jobs.set_status(
            job.org_id,
            job.id,
            JobStatus.PAUSED,
            expected=[JobStatus.RUNNING],
            now=now,
            last_error=reason,
        ):
            return None
        uow.chat_notices.queue(
            job.org_id,
            NOTICE_JOB_GUARD_PAUSED,
            {
                "job_id": job.id,
                "job_name": job.name,
                "reason": reason,
                "channel": job.review_channel_id,
                "owner_id": job.owner_id,
            },
            now=now,
        )
        log.warning("job paused by the deliverability guard", extra={"job_id": job.id})
        return reason


def _org_settings(uow: OutreachUnitOfWork, org_id: int) -> CadenceSettings:
    """An organization's settings; stored ones that no longer read (a zone this host's
    tz database lacks) fall back to the defaults, logged, so no organization's data can
    hold up the tick for the others."""
    try:
        return uow.cadence.settings(org_id)
    except (InvalidInput, ValidationError, ValueError) as exc:
        log.error(
            "cadence settings unreadable; using the defaults",
            extra={"org_id": org_id, "error": str(exc).splitlines()[0][:300]},
        )
        return CadenceSettings()


def step_tasks(
    params: JobParams, item: DueEnrollment, decision: Decision, contact: ContactFacts | None
) -> list[dict[str, Any]]:
    """The tasks a step that runs becomes (see domain.jobs.step_task_rows)."""
    assert decision.step is not None
    rows = step_task_rows(
        params,
        decision.step.index,
        contact_id=item.contact_id,
        enrollment_id=item.id,
        time_zone=decision.zone.describe() if decision.zone else None,
    )
    return [dict(row) for row in rows]


# A contact's local time in a reason ("Tue 2026-12-15 10:00 CST", domain/cadence.py's
# `_when`), to the end: cutting only at its colon left "step 3 is due Tue 2026-12-15 10".
_LOCAL_TIME: Final = re.compile(
    r"\s*\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{4}-\d{2}-\d{2} \d{2}:\d{2}.*$"
)


def reason_key(reason: str | None) -> str:
    """A reason without its times and counts, to count alike reasons together."""
    text = _LOCAL_TIME.sub("", reason or "")
    text = text.split(":")[0].split("(")[0].strip().rstrip(";").strip()
    return text or "unknown"
