"""Jobs (the original system's agent routes) and launching a campaign as a job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel

from domain.fields import Id, Offset
from domain.jobs import CreateJobRequest, Job, JobKind, JobStatus, JobTaskView
from handlers.api.deps import ActorDep, IdentityDep, UowDep

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
    )
    runtime.recovery.wake()
    return LaunchResponse(
        job=result.job, audience_count=result.audience_count, campaign_name=result.campaign_name
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


@router.get("/api/agent/jobs/{job_id}", response_model=Job)
def get_job(job_id: Id, who: IdentityDep, uow: UowDep) -> Job:
    """Return one job with its metrics."""
    with uow:
        return uow.jobs.get(who.org_id, job_id)


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
