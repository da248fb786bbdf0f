"""Jobs (the original system's agent routes) and launching a campaign as a job."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.accounts import TokenIdentity
from domain.enrollments import EnrollmentView
from domain.errors import InvalidTransition
from domain.fields import Id, Offset
from domain.jobs import (
    MAX_STALE_TOP,
    TERMINAL_JOB_STATES,
    CreateJobRequest,
    EnrollmentStatus,
    Job,
    JobGuard,
    JobKind,
    JobStatus,
    JobTaskView,
    UpdateJobRequest,
)
from domain.outreach import Actor
from domain.outreach.jobs import JobDetail
from handlers.api.deps import ActorDep, IdentityDep, UowDep
from storage.uow import UnitOfWork

router = APIRouter(tags=["jobs"])


def get_runtime(request: Request) -> Any:
    """Return the runtime the app was built with."""
    return request.app.state.runtime


RuntimeDep = Annotated[Any, Depends(get_runtime)]


class LaunchResponse(BaseModel):
    """A launched campaign."""

    job: Job
    audience_count: int
    campaign_name: str
    ranking_at: datetime | None = Field(
        default=None,
        description="With `stale_top`: when the stale-client ranking the audience came from "
        "was computed.",
    )


class LaunchRequest(BaseModel):
    """How to launch a campaign (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    stale_top: int | None = Field(
        default=None,
        ge=1,
        le=MAX_STALE_TOP,
        description="Only the campaign's reachable contacts at the N best clients of the "
        "stale-client ranking (GET /api/marketing/stale-clients), each client's best contact "
        "first. Refused (409) while the ranking was never computed.",
    )


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=64,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): the same request sent again with the same key "
        "returns the job the first one created instead of creating a second one.",
    ),
]


def _request_key(who: Any, key: str | None) -> str | None:
    # Scoped to the caller, and apart from the Slack trigger ids stored in the same column.
    return None if key is None else f"api:{who.user_id or 0}:{key}"


@router.post("/api/campaigns/{campaign_id}/launch", status_code=201, response_model=LaunchResponse)
def launch_campaign(
    campaign_id: Id,
    who: IdentityDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
    body: LaunchRequest | None = None,
) -> LaunchResponse:
    """Launch a campaign as a job; planning and drafting continue after the answer.

    The job is stored `pending` before the answer and the worker's recovery sweep plans
    it, so a crash after the 201 loses nothing.
    """
    result = runtime.outreach.jobs.launch_campaign(
        who.org_id,
        str(campaign_id),
        owner_id=who.user_id,
        request_key=_request_key(who, idempotency_key),
        by_id=True,
        stale_top=body.stale_top if body is not None else None,
    )
    runtime.recovery.wake()
    return LaunchResponse(
        job=result.job,
        audience_count=result.audience_count,
        campaign_name=result.campaign_name,
        ranking_at=result.ranking_at,
    )


@router.post("/api/agent/jobs", status_code=201, response_model=Job)
def create_job(
    body: CreateJobRequest,
    who: IdentityDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Job:
    """Create a job; the worker plans it (stored `pending` first, so a crash loses nothing)."""
    job: Job = runtime.outreach.jobs.create_job(
        who.org_id, body, owner_id=who.user_id, request_key=_request_key(who, idempotency_key)
    )
    runtime.recovery.wake()
    return job


@router.get("/api/agent/jobs", response_model=list[Job])
def list_jobs(
    who: IdentityDep,
    uow: UowDep,
    status: JobStatus | None = None,
    kind: Annotated[
        JobKind | None,
        Query(description="`campaign` for outreach jobs, `inbox` for the replies inbox."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[Job]:
    """List jobs, newest first (`kind`: only outreach jobs, or only the replies inbox)."""
    with uow:
        return uow.jobs.list(
            who.org_id, status=status.value if status else None, kind=kind, limit=limit
        )


@router.get("/api/agent/jobs/{job_id}", response_model=JobDetail)
def get_job(job_id: Id, who: IdentityDep, runtime: RuntimeDep) -> JobDetail:
    """Return one job with its metrics and its enrollments counted by status and reason
    (stopped: replied, opted out, re-engaged …; waiting: fatigue, outside business hours …)."""
    detail: JobDetail = runtime.outreach.jobs.job_detail(who.org_id, job_id)
    return detail


@router.patch("/api/agent/jobs/{job_id}", response_model=Job)
def update_job(
    job_id: Id, body: UpdateJobRequest, who: IdentityDep, actor: ActorDep, runtime: RuntimeDep
) -> Job:
    """Change a job's name, description or behaviour; what the body leaves out is kept (in
    `behaviour` too). For the user who launched the job, or an admin; a finished job
    (succeeded, failed, cancelled) cannot be changed."""
    job: Job = runtime.outreach.jobs.update_job(who.org_id, job_id, body, by=actor)
    return job


@router.get("/api/agent/jobs/{job_id}/tasks", response_model=list[JobTaskView])
def list_tasks(
    job_id: Id,
    who: IdentityDep,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    offset: Offset = 0,
) -> list[JobTaskView]:
    """List a job's tasks in creation order."""
    with uow:
        uow.jobs.get(who.org_id, job_id)
        return uow.tasks.list_for_job(who.org_id, job_id, limit=limit, offset=offset)


@router.post("/api/agent/jobs/{job_id}/cancel", response_model=Job)
def cancel_job(job_id: Id, who: IdentityDep, actor: ActorDep, runtime: RuntimeDep) -> Job:
    """Cancel a job: pending tasks are cancelled, enrollments stopped, and the cards not yet
    sent withdrawn (their Slack messages say so). A token tied to a user may cancel the
    jobs that user launched, or any job if the user is an admin."""
    job: Job = runtime.outreach.jobs.set_job_status(
        who.org_id, job_id, JobStatus.CANCELLED, by=actor
    )
    return job


def _move_job(
    job_id: int,
    to: JobStatus,
    who: TokenIdentity,
    actor: Actor | None,
    runtime: Any,
    uow: UnitOfWork,
) -> Job:
    """Pause or resume a job; a refused move says why in the job's present state."""
    verb = "pause" if to == JobStatus.PAUSED else "resume"
    try:
        job: Job = runtime.outreach.jobs.set_job_status(who.org_id, job_id, to, by=actor)
    except InvalidTransition as exc:
        with uow:
            current = uow.jobs.get(who.org_id, job_id)
        raise InvalidTransition(_refusal(current, verb) or exc.message) from exc
    if to == JobStatus.RUNNING:
        runtime.worker.wake()  # the steps the pause held are due again
    return job


def _refusal(job: Job, verb: str) -> str | None:
    """Why a job cannot be paused or resumed now (None: the domain's refusal says it best,
    as for the replies inbox)."""
    if job.is_inbox:
        return None
    if verb == "pause" and job.status == JobStatus.PAUSED:
        return (
            f"job #{job.id} is already paused; POST /api/agent/jobs/{job.id}/resume carries it on"
        )
    if verb == "resume" and job.status == JobStatus.RUNNING:
        return f"job #{job.id} is already running"
    if job.status == JobStatus.PENDING:
        return f"job #{job.id} is still being planned; {verb} it once it runs"
    if job.status in TERMINAL_JOB_STATES:
        past = "paused" if verb == "pause" else "resumed"
        return (
            f"job #{job.id} is {job.status.value}: a finished job cannot be {past}; launch a "
            "new one"
        )
    return None


@router.post(
    "/api/agent/jobs/{job_id}/pause",
    response_model=Job,
    responses={
        409: {
            "description": "The job is not running (already paused, still being "
            "planned, finished) or is the replies inbox."
        }
    },
)
def pause_job(
    job_id: Id, who: IdentityDep, actor: ActorDep, runtime: RuntimeDep, uow: UowDep
) -> Job:
    """Pause a running job: its contacts wait where they are and no cadence step goes out
    until it is resumed. A token tied to a user may pause the jobs that user launched, or
    any job if the user is an admin."""
    return _move_job(job_id, JobStatus.PAUSED, who, actor, runtime, uow)


@router.post(
    "/api/agent/jobs/{job_id}/resume",
    response_model=Job,
    responses={
        409: {
            "description": "The job is not paused (already running, still being "
            "planned, finished) or is the replies inbox."
        }
    },
)
def resume_job(
    job_id: Id, who: IdentityDep, actor: ActorDep, runtime: RuntimeDep, uow: UowDep
) -> Job:
    """Resume a paused job: the contacts its pause held are due again, each step inside the
    send window of the contact's time zone. A token tied to a user may resume the jobs
    that user launched, or any job if the user is an admin."""
    return _move_job(job_id, JobStatus.RUNNING, who, actor, runtime, uow)


class EnrollmentPage(BaseModel):
    """A page of a job's enrollments, in enrollment order."""

    enrollments: list[EnrollmentView]
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


@router.get("/api/agent/jobs/{job_id}/enrollments", response_model=EnrollmentPage)
def list_enrollments(
    job_id: Id,
    who: IdentityDep,
    runtime: RuntimeDep,
    status: EnrollmentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[
        Id | None, Query(description="The last enrollment id of the previous page.")
    ] = None,
) -> EnrollmentPage:
    """List a job's enrollments: each contact's step, status, when the next step is due,
    and why the cadence stopped or waits."""
    rows: list[EnrollmentView] = runtime.outreach.jobs.list_enrollments(
        who.org_id, job_id, status=status, after=after, limit=limit
    )
    return EnrollmentPage(enrollments=rows, next_after=rows[-1].id if len(rows) == limit else None)


class GuardRequest(BaseModel):
    """A job's own deliverability thresholds: past one, the cadence pauses the job."""

    model_config = ConfigDict(extra="forbid")

    max_opt_out_rate: float = Field(
        gt=0, le=1, description="Opt-outs per send past which the job pauses (0.02: 2%)."
    )
    max_bounce_rate: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Hard bounces per send past which the job pauses; null: the organization's.",
    )
    min_sends: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Sends in the window before the guard judges the job; null: the "
        "organization's.",
    )


class GuardOut(BaseModel):
    """A job's own deliverability thresholds (null: the organization's applies)."""

    job_id: int
    max_opt_out_rate: float | None
    max_bounce_rate: float | None
    min_sends: int | None


def _set_guard(
    job_id: int, body: GuardRequest, who: TokenIdentity, actor: Actor | None, runtime: Any
) -> GuardOut:
    guard: JobGuard = runtime.outreach.jobs.set_job_guard(
        who.org_id,
        job_id,
        JobGuard(
            max_opt_out_rate=body.max_opt_out_rate,
            max_bounce_rate=body.max_bounce_rate,
            min_sends=body.min_sends,
        ),
        by=actor,
    )
    return GuardOut(job_id=job_id, **guard.model_dump())


@router.post("/api/agent/jobs/{job_id}/pause-on-optout", response_model=GuardOut)
def pause_on_optout(
    job_id: Id, body: GuardRequest, who: IdentityDep, actor: ActorDep, runtime: RuntimeDep
) -> GuardOut:
    """Pause the job by itself when its opt-outs (or hard bounces) pass a rate: sets the
    job's own thresholds instead of the organization's. For the user who launched the job,
    or an admin; the job's review channel is told when it pauses."""
    return _set_guard(job_id, body, who, actor, runtime)


@router.post("/api/jobs/{job_id}/pause-on-optout", response_model=GuardOut)
def pause_on_optout_original_path(
    job_id: Id, body: GuardRequest, who: IdentityDep, actor: ActorDep, runtime: RuntimeDep
) -> GuardOut:
    """The same as `POST /api/agent/jobs/{job_id}/pause-on-optout`, at the original
    system's path."""
    return _set_guard(job_id, body, who, actor, runtime)
