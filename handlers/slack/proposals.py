"""Rules proposed from reps' corrections, in the admins' DMs: Accept or Dismiss; and the
other queued notices (a job the deliverability guard paused).

The DM is a notice the use case queued in its unit of work (`storage.chat_notices`): the
Slack worker replays it after the commit through `send_notice`, which posts to one admin
and remembers the first message. When a proposal is decided (from a DM or the API) a notice
updates that message; a click also updates the message clicked at once.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.corrections import (
    NOTICE_RULE_PROPOSAL,
    NOTICE_RULE_PROPOSAL_DECIDED,
    ProposalStatus,
    RuleProposalView,
)
from domain.errors import NotFound
from domain.outreach.cadences import NOTICE_JOB_GUARD_PAUSED
from handlers.slack.blocks import safe
from handlers.slack.common import (
    Bound,
    SlackDeps,
    ack_only,
    corrections_of,
    parse_action_value,
    resolve_actor,
    tell,
    tells_user_on_error,
)
from handlers.slack.ids import ActionId
from storage.chat_notices import NOTICE_EVENT
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

#: Slack errors that another attempt would meet again: logged, not retried.
_PERMANENT = frozenset(
    {
        "user_not_found",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "message_not_found",
        "cannot_dm_bot",
        "user_disabled",
        "account_inactive",
        "invalid_auth",
    }
)


def register(app: App, deps: SlackDeps) -> None:
    """Register the notice sender and the Accept / Dismiss buttons (before the actions'
    catch-all, which takes any action id no listener registered before it)."""
    app.event(NOTICE_EVENT)(ack=ack_only, lazy=[Bound(send_notice, deps)])
    app.action(ActionId.ACCEPT_RULE_PROPOSAL.value)(
        ack=ack_only, lazy=[Bound(accept_proposal, deps)]
    )
    app.action(ActionId.DISMISS_RULE_PROPOSAL.value)(
        ack=ack_only, lazy=[Bound(dismiss_proposal, deps)]
    )


# --- the messages (pure) ----------------------------------------------------------------


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def proposal_message(proposal: RuleProposalView) -> tuple[str, list[dict[str, Any]]]:
    """The DM that proposes a rule to an admin: (notification text, blocks)."""
    # The pattern is a sender's address: outside text, escaped so it cannot mention anyone.
    pattern = safe(proposal.pattern)
    who = f"`{pattern}`" if proposal.rule_type.value == "sender_email" else f"anyone at `{pattern}`"
    text = f"Rule proposed: file mail from {pattern} as {proposal.category.value}"
    value = str(proposal.id)
    return text, [
        _section(
            f"*Rule proposed* from your reps' corrections: they re-labelled "
            f"{proposal.corrections} emails from {who} as *{proposal.category.value}*.\n"
            f"Accept to file mail from {who} as *{proposal.category.value}* without asking the "
            "model (a classification rule, shown by `/rules list`)."
        ),
        {
            "type": "actions",
            "block_id": f"rule_proposal_{proposal.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": ActionId.ACCEPT_RULE_PROPOSAL.value,
                    "text": {"type": "plain_text", "text": "Accept"},
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": ActionId.DISMISS_RULE_PROPOSAL.value,
                    "text": {"type": "plain_text", "text": "Dismiss"},
                    "value": value,
                },
            ],
        },
    ]


def decided_message(
    proposal: RuleProposalView, *, by_slack_id: str | None
) -> tuple[str, list[dict[str, Any]]]:
    """The proposal's DM once decided (no buttons)."""
    by = f" by <@{by_slack_id}>" if by_slack_id else ""
    if proposal.status is ProposalStatus.ACCEPTED:
        text = f"✅ Accepted{by}: rule #{proposal.rule_id} files {safe(proposal.words())}."
    elif proposal.status is ProposalStatus.DISMISSED:
        text = f"Dismissed{by}: {safe(proposal.words())} will not be proposed again."
    else:
        return proposal_message(proposal)
    return text, [_section(text)]


# --- the notices (after the commit that queued them) ---------------------------------------


def send_notice(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Send a queued notice: a proposal to one admin, a decided proposal's update, or a job
    the deliverability guard paused (to the job's review channel, else its owner).

    A Slack error another attempt would meet again is logged and the notice dropped; any
    other is raised, for the worker to retry.
    """
    event = body.get("event") or {}
    kind, data = event.get("notice"), event.get("data") or {}
    if kind == NOTICE_JOB_GUARD_PAUSED:
        _send_guard_notice(deps, client, event, data)
        return
    try:
        org_id, proposal_id = int(event["org_id"]), int(data["proposal_id"])
    except (KeyError, TypeError, ValueError):
        log.error("malformed notice dropped", extra={"notice": str(kind)[:40]})
        return
    try:
        proposal = corrections_of(deps).get_proposal(org_id, proposal_id)
    except NotFound:
        log.warning("notice of a proposal that is gone", extra={"proposal_id": proposal_id})
        return
    try:
        if kind == NOTICE_RULE_PROPOSAL:
            _send_proposal(deps, client, org_id, proposal, user_id=data.get("user_id"))
        elif kind == NOTICE_RULE_PROPOSAL_DECIDED:
            if proposal.slack_channel_id and proposal.slack_message_ts:
                text, blocks = decided_message(
                    proposal, by_slack_id=_slack_id(deps, org_id, proposal.decided_by)
                )
                client.chat_update(
                    channel=proposal.slack_channel_id,
                    ts=proposal.slack_message_ts,
                    text=text,
                    blocks=blocks,
                )
        else:
            log.error("unknown notice dropped", extra={"notice": str(kind)[:40]})
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        if error not in _PERMANENT:
            raise
        log.warning(
            "notice not delivered",
            extra={"notice": kind, "proposal_id": proposal_id, "error": error},
        )


def _send_proposal(
    deps: SlackDeps,
    client: WebClient,
    org_id: int,
    proposal: RuleProposalView,
    *,
    user_id: Any,
) -> None:
    if proposal.status is not ProposalStatus.OPEN:
        return  # decided before its DM went out
    slack_id = _slack_id(deps, org_id, int(user_id)) if user_id is not None else None
    if slack_id is None:
        log.warning("admin has no Slack id", extra={"org_id": org_id, "user_id": user_id})
        return
    text, blocks = proposal_message(proposal)
    posted = client.chat_postMessage(channel=slack_id, text=text, blocks=blocks)
    corrections_of(deps).record_proposal_message(
        org_id, proposal.id, channel=str(posted["channel"]), ts=str(posted["ts"])
    )


# --- a job paused by the deliverability guard ----------------------------------------------

_GUARD_PREFIX = "paused by the deliverability guard: "
# What to do first, by what spiked (the guard's reason says which).
_GUARD_ADVICE = (
    ("hard bounces", "Clean the list"),
    ("opt-outs", "Check the audience and the message"),
)


def guard_paused_message(job_id: int, job_name: str, reason: str) -> str:
    """The notice of a job the deliverability guard paused: what spiked, what to do."""
    head = f"⏸️ Job #{job_id} ({safe(job_name, 200)}) paused itself"
    resume = f"`/job resume {job_id}`"
    if reason.startswith(_GUARD_PREFIX):
        facts = reason.removeprefix(_GUARD_PREFIX).partition(". ")[0].rstrip(".")
        advice = next((a for word, a in _GUARD_ADVICE if word in facts), None)
        if advice is not None:
            return f"{head}: {safe(facts, 500)}. {advice}, then {resume}."
    return f"{head}: {safe(reason, 500)} {resume} carries it on once that is fixed."


def _send_guard_notice(
    deps: SlackDeps, client: WebClient, event: dict[str, Any], data: dict[str, Any]
) -> None:
    """Tell the job's review channel that the guard paused the job; without a channel (or
    one the bot cannot post in), its owner by DM. A Slack error another attempt would meet
    again drops the notice with a log; any other is raised, for the worker to retry."""
    try:
        org_id, job_id = int(event["org_id"]), int(data["job_id"])
        name, reason = str(data["job_name"]), str(data["reason"])
    except (KeyError, TypeError, ValueError):
        log.error("malformed notice dropped", extra={"notice": NOTICE_JOB_GUARD_PAUSED})
        return
    text = guard_paused_message(job_id, name, reason)
    channel = data.get("channel")
    if isinstance(channel, str) and channel:
        try:
            client.chat_postMessage(channel=channel, text=text)
            return
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error not in _PERMANENT:
                raise
            log.warning(
                "guard notice not posted to the job's channel; the owner is told instead",
                extra={"job_id": job_id, "error": error},
            )
    owner = data.get("owner_id")
    slack_id = _slack_id(deps, org_id, int(owner)) if isinstance(owner, int) else None
    if slack_id is None:
        log.warning("guard notice has nobody to tell", extra={"job_id": job_id})
        return
    try:
        client.chat_postMessage(channel=slack_id, text=text)
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        if error not in _PERMANENT:
            raise
        log.warning("guard notice not delivered", extra={"job_id": job_id, "error": error})


def _slack_id(deps: SlackDeps, org_id: int, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    with UnitOfWork(deps.session_factory) as uow:
        user = uow.users.find(org_id, user_id)
    return user.slack_user_id if user is not None else None


# --- the buttons ---------------------------------------------------------------------------


def _proposal_id(body: dict[str, Any]) -> int:
    return parse_action_value(body, int, refusal="This button does not name a proposed rule.")


@tells_user_on_error
def accept_proposal(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Accept the proposed rule (admins): the rule is made once, the DM says so."""
    proposal_id = _proposal_id(body)
    actor = resolve_actor(deps, body, client)
    decision = corrections_of(deps).accept_proposal(actor, actor.org_id, proposal_id)
    _show_decided(deps, body, client, decision.proposal, actor.org_id)
    if not decision.changed:
        tell(client, body, safe(decision.message))


@tells_user_on_error
def dismiss_proposal(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Dismiss the proposed rule (admins)."""
    proposal_id = _proposal_id(body)
    actor = resolve_actor(deps, body, client)
    decision = corrections_of(deps).dismiss_proposal(actor, actor.org_id, proposal_id)
    _show_decided(deps, body, client, decision.proposal, actor.org_id)
    if not decision.changed:
        tell(client, body, safe(decision.message))


def _show_decided(
    deps: SlackDeps,
    body: dict[str, Any],
    client: WebClient,
    proposal: RuleProposalView,
    org_id: int,
) -> None:
    """Update the message clicked (the notice updates the first one posted, if another)."""
    container = body.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    if not (channel and ts):
        return
    text, blocks = decided_message(
        proposal, by_slack_id=_slack_id(deps, org_id, proposal.decided_by)
    )
    try:
        client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
    except SlackApiError as exc:
        log.warning(
            "could not update the proposal message",
            extra={"proposal_id": proposal.id, "error": exc.response.get("error")},
        )
