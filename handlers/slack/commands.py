"""Slash commands: `/campaign launch|list|status|pause|resume|help`, `/job list|status|cancel`."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from domain.campaigns import CampaignStatus
from domain.errors import InvalidInput, NotFound, SalesbotError
from domain.jobs import JobStatus
from domain.outreach import Actor
from handlers.slack.blocks import escape, job_line
from handlers.slack.common import Bound, SlackDeps, answer, resolve_actor, tells_user_on_error
from handlers.slack.ids import Command
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

CAMPAIGN_USAGE = (
    "*Usage of /campaign*\n"
    "• `/campaign launch <name or id>` — start a job that drafts emails for review\n"
    "• `/campaign list` — campaigns and their status\n"
    "• `/campaign status <name or id>` — jobs and progress of a campaign\n"
    "• `/campaign pause <name or id>` / `/campaign resume <name or id>`\n"
    "• `/campaign help` — this message"
)

JOB_USAGE = (
    "*Usage of /job*\n"
    "• `/job list` — your organization's recent jobs\n"
    "• `/job status <id>` — progress of one job\n"
    "• `/job cancel <id>` — stop a job; its cards not yet sent are withdrawn"
)


def split_command(text: str) -> tuple[str, str]:
    """Split `launch Q4 lender win-back` into ('launch', 'Q4 lender win-back')."""
    text = (text or "").strip()
    if not text:
        return "", ""
    verb, _, rest = text.partition(" ")
    rest = rest.strip()
    if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "\"'“”":
        try:
            rest = " ".join(shlex.split(rest))
        except ValueError:
            rest = rest.strip("\"'“”")
    return verb.lower(), rest.strip("“”")


def register(app: App, deps: SlackDeps) -> None:
    """Register the slash command listeners."""
    app.command(Command.CAMPAIGN.value)(ack=ack_fast, lazy=[Bound(run_campaign, deps)])
    app.command(Command.JOB.value)(ack=ack_fast, lazy=[Bound(run_job, deps)])


def ack_fast(ack: Ack, command: dict[str, Any]) -> None:
    """Acknowledge at once; a launch says so, since its answer takes a while."""
    verb, _ = split_command(command.get("text", ""))
    if command["command"] == Command.CAMPAIGN and verb == "launch":
        ack(response_type="ephemeral", text="🚀 Launching… I'll post the audience and job here.")
    else:
        ack()


@tells_user_on_error
def run_campaign(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Run a /campaign sub-command and answer it; a launch plans its job after answering
    (the rep hears why, should planning stop)."""
    verb, arg = split_command(command.get("text", ""))
    text, then = _campaign(deps, verb, arg, body, client)
    answer(respond, text)
    if then is not None:
        then()


@tells_user_on_error
def run_job(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Run a /job sub-command and answer it."""
    verb, arg = split_command(command.get("text", ""))
    answer(respond, _job(deps, verb, arg, body, client))


def _campaign(
    deps: SlackDeps, verb: str, arg: str, body: dict[str, Any], client: WebClient
) -> tuple[str, Callable[[], None] | None]:
    """Run a /campaign sub-command; return the answer and work to do after answering."""
    if verb in ("", "help"):
        return CAMPAIGN_USAGE, None
    if verb not in ("launch", "list", "status", "pause", "resume"):
        return f"I don't know `/campaign {escape(verb)}`.\n\n{CAMPAIGN_USAGE}", None
    if verb != "list" and not arg:
        return f"`/campaign {verb}` needs a campaign name or id.\n\n{CAMPAIGN_USAGE}", None
    actor = resolve_actor(deps, body, client)
    if verb == "launch":
        # The command's work runs at least once; its trigger id makes a second run find
        # the job the first one created.
        trigger = body.get("trigger_id")
        result = deps.outreach.jobs.launch_campaign(
            actor.org_id,
            arg,
            owner_id=actor.user_id,
            request_key=f"slack:{trigger}"[:100] if trigger else None,
        )
        text = (
            f"🚀 Launched *{escape(result.campaign_name)}*: {result.audience_count:,} contacts "
            f"in the audience. Job *#{result.job.id}* is drafting emails; cards will appear "
            "for review."
        )
        return text, lambda: _start_planning(deps, actor.org_id, result.job.id)
    return _campaign_query(deps, verb, arg, actor), None


def _campaign_query(deps: SlackDeps, verb: str, arg: str, actor: Actor) -> str:
    org_id = actor.org_id
    with UnitOfWork(deps.session_factory) as uow:
        if verb == "list":
            campaigns = uow.campaigns.list(org_id, status=None, limit=25, offset=0)
            if not campaigns:
                return "No campaigns yet. Create one with `POST /api/marketing/campaigns`."
            return "*Campaigns*\n" + "\n".join(
                f"• *{escape(c.name)}* (#{c.id}) — `{c.status.value}`, goal {c.goal.value}"
                for c in campaigns
            )
        campaign = uow.campaigns.find_by_name(org_id, arg)
        if campaign is None and arg.isdigit():
            try:
                campaign = uow.campaigns.get(org_id, int(arg))
            except NotFound:
                campaign = None
        if campaign is None:
            raise NotFound(f"no campaign named “{arg}”; `/campaign list` shows them")
        jobs = uow.jobs.list(org_id, campaign_id=campaign.id, limit=10)
    if verb == "status":
        lines = [f"*{escape(campaign.name)}* — `{campaign.status.value}`"]
        lines += [job_line(j) for j in jobs] or ["No jobs yet: `/campaign launch` starts one."]
        return "\n".join(lines)
    status = CampaignStatus.PAUSED if verb == "pause" else CampaignStatus.ACTIVE
    change = deps.outreach.jobs.set_campaign_status(actor, org_id, campaign.id, to=status)
    changed = len(change.job_ids)
    if verb == "resume":
        deps.wake_worker()
    past = "Paused" if verb == "pause" else "Resumed"
    return f"{past} *{escape(campaign.name)}* ({changed} job{'s' if changed != 1 else ''})."


def _job(deps: SlackDeps, verb: str, arg: str, body: dict[str, Any], client: WebClient) -> str:
    if verb in ("", "help"):
        return JOB_USAGE
    if verb not in ("list", "status", "cancel"):
        return f"I don't know `/job {escape(verb)}`.\n\n{JOB_USAGE}"
    actor = resolve_actor(deps, body, client)
    if verb == "list":
        with UnitOfWork(deps.session_factory) as uow:
            jobs = uow.jobs.list(actor.org_id, limit=15)
        return "*Jobs*\n" + "\n".join(job_line(j) for j in jobs) if jobs else "No jobs yet."
    job_id = arg.lstrip("#")
    if not job_id.isdigit():
        raise InvalidInput(f"`/job {verb}` needs a job number, e.g. `/job {verb} 12`")
    if verb == "cancel":
        job = deps.outreach.jobs.set_job_status(
            actor.org_id, int(job_id), JobStatus.CANCELLED, by=actor
        )
        return f"Cancelled {job_line(job)}"
    with UnitOfWork(deps.session_factory) as uow:
        job = uow.jobs.get(actor.org_id, int(job_id))
    return job_line(job)


def _start_planning(deps: SlackDeps, org_id: int, job_id: int) -> None:
    try:
        deps.outreach.jobs.plan_job(org_id, job_id)
    except SalesbotError as exc:
        log.warning("planning failed", extra={"job_id": job_id, "reason": exc.message})
        raise
    deps.wake_worker()
