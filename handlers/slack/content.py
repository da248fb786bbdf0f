"""`/content list|add|done` and the due card's buttons (docs/content-calendar.md).

`list` and `done` answer through the command's response_url after the ack; `add` opens
its modal at once, while the trigger id is fresh, and its submission is checked before
the ack so that a wrong field is named in the form (`response_action: errors`). The
card's Done, Snooze and Skip are acked at once and done after the ack; each records who
and when, refuses anyone but the item's owner or an admin, and a second click (or a
Slack retry) changes nothing.
"""

from __future__ import annotations

import logging
from datetime import date, time
from typing import Any

from pydantic import ValidationError
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.content import (
    USAGE,
    ContentIn,
    ScheduleIn,
    SnoozeChoice,
    Verb,
    channel_label,
    describe_day,
    local_instant,
    parse_content_command,
    zone_named,
)
from domain.content_service import ContentCalendar, check_url
from domain.errors import InvalidInput, SalesbotError
from handlers.slack.common import (
    Bound,
    SlackDeps,
    ack_only,
    answer,
    first_action,
    resolve_actor,
    tell,
    tells_user_on_error,
)
from handlers.slack.content_blocks import add_content_modal, done_link_modal, week_message
from handlers.slack.ids import ActionId, BlockId, CallbackId, Command
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

#: Where a use case's field error is shown in the `/content add` form.
_FIELD_BLOCKS = {
    "title": BlockId.CONTENT_TITLE,
    "content_type": BlockId.CONTENT_TYPE,
    "body": BlockId.CONTENT_BODY,
    "channel": BlockId.CONTENT_CHANNEL,
    "scheduled_for": BlockId.CONTENT_DATE,
    "campaign_id": BlockId.CONTENT_CAMPAIGN,
}


def register(app: App, deps: SlackDeps) -> None:
    """Register the content card's listeners (before the catch-all); `/content` itself is
    registered with the other commands (handlers/slack/commands.py: `register_command`)."""
    app.action(ActionId.CONTENT_DONE.value)(ack=ack_only, lazy=[Bound(done, deps)])
    app.action(ActionId.CONTENT_SNOOZE.value)(ack=ack_only, lazy=[Bound(snooze, deps)])
    app.action(ActionId.CONTENT_SNOOZE_MORE.value)(ack=ack_only, lazy=[Bound(snooze, deps)])
    app.action(ActionId.CONTENT_SKIP.value)(ack=ack_only, lazy=[Bound(skip, deps)])
    app.action(ActionId.CONTENT_DONE_LINK.value)(Bound(open_done_link, deps))
    app.view(CallbackId.CONTENT_DONE_LINK.value)(
        ack=ack_done_link, lazy=[Bound(save_done_link, deps)]
    )
    app.view(CallbackId.ADD_CONTENT.value)(
        ack=Bound(ack_add, deps), lazy=[Bound(confirm_add, deps)]
    )


def register_command(app: App, deps: SlackDeps) -> None:
    """Register `/content`."""
    app.command(Command.CONTENT.value)(
        ack=Bound(ack_content, deps), lazy=[Bound(run_content, deps)]
    )


def _calendar(deps: SlackDeps) -> ContentCalendar:
    if deps.content is None:
        raise SalesbotError("The content calendar is not set up in this Salesbot; ask an admin.")
    return deps.content


# --- /content ---------------------------------------------------------------------------------


@tells_user_on_error
def ack_content(
    deps: SlackDeps,
    ack: Ack,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Acknowledge; `/content add` opens its form here, while the trigger id is fresh."""
    try:
        request = parse_content_command(command.get("text") or "")
    except InvalidInput:
        request = None
    if request is None or request.verb is not Verb.ADD:
        ack()
        return
    ack()
    actor = resolve_actor(deps, body, client)
    calendar = _calendar(deps)
    with UnitOfWork(deps.session_factory) as uow:
        campaigns = uow.campaigns.list(actor.org_id, status=None, limit=100, offset=0)
    morning = calendar.morning(actor.org_id)
    today = deps.clock.now().astimezone(morning.zone).date()
    try:
        client.views_open(
            trigger_id=body["trigger_id"],
            view=add_content_modal(campaigns, today=today, time_zone=morning.time_zone),
        )
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            answer(respond, "⚠️ Slack took too long to open the form; type `/content add` again.")
        else:
            answer(respond, f"⚠️ Slack refused to open the form ({error}).")


@tells_user_on_error
def run_content(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """`/content list` (this week, ephemeral), `/content done <id>`, help."""
    try:
        request = parse_content_command(command.get("text") or "")
    except InvalidInput as exc:
        answer(respond, f"⚠️ {exc.message}\n\n{USAGE}")
        return
    if request.verb is Verb.ADD:
        return  # its form was opened with the ack
    if request.verb is Verb.HELP:
        answer(respond, f"{request.problem}\n\n{USAGE}" if request.problem else USAGE)
        return
    calendar = _calendar(deps)
    actor = resolve_actor(deps, body, client)
    if request.verb is Verb.LIST:
        week = calendar.this_week(actor.org_id)
        text, blocks = week_message(week.entries, since=week.since, time_zone=week.time_zone)
        answer(respond, text, blocks=blocks)
        return
    assert request.schedule_id is not None
    acted = calendar.mark_done(actor, request.schedule_id)
    entry = acted.entry
    what = f"#{entry.id} “{entry.title[:100]}” on {channel_label(entry.channel)}"
    if acted.changed:
        answer(respond, f"✅ {what} is marked done.")
    else:
        answer(respond, f"{what} was already marked done; nothing changed.")


def _values(view: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = (view.get("state") or {}).get("values") or {}
    return values


def _value(values: dict[str, Any], block: str, action: str) -> Any:
    element = (values.get(block) or {}).get(action) or {}
    kind = element.get("type")
    if kind in ("static_select", "external_select"):
        return (element.get("selected_option") or {}).get("value")
    if kind == "datepicker":
        return element.get("selected_date")
    if kind == "timepicker":
        return element.get("selected_time")
    return element.get("value")


def read_add_form(view: dict[str, Any]) -> tuple[ContentIn, ScheduleIn]:
    """Read the `/content add` form; InvalidInput names the field at fault."""
    values = _values(view)
    zone = zone_named(view.get("private_metadata") or "UTC")
    raw_date = _value(values, BlockId.CONTENT_DATE, ActionId.CONTENT_DATE_INPUT)
    raw_time = _value(values, BlockId.CONTENT_TIME, ActionId.CONTENT_TIME_INPUT)
    try:
        day = date.fromisoformat(str(raw_date))
    except ValueError:
        raise InvalidInput("Pick the day to post it.", field="scheduled_for") from None
    try:
        at = time.fromisoformat(str(raw_time)) if raw_time else time(10, 0)
    except ValueError:
        raise InvalidInput("Pick a time.", field="scheduled_for") from None
    campaign = _value(values, BlockId.CONTENT_CAMPAIGN, ActionId.CONTENT_CAMPAIGN_INPUT)
    try:
        data = ContentIn(
            content_type=_value(values, BlockId.CONTENT_TYPE, ActionId.CONTENT_TYPE_INPUT),
            title=_value(values, BlockId.CONTENT_TITLE, ActionId.CONTENT_TITLE_INPUT) or "",
            body=_value(values, BlockId.CONTENT_BODY, ActionId.CONTENT_BODY_INPUT) or "",
            status="ready",
            campaign_id=int(campaign) if campaign else None,
        )
        slot = ScheduleIn(
            channel=_value(values, BlockId.CONTENT_CHANNEL, ActionId.CONTENT_CHANNEL_INPUT),
            scheduled_for=local_instant(day, at, zone),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "title"
        message = str(first["msg"]).removeprefix("Value error, ")
        if field == "title":
            message = "Give it a title."
        elif field == "channel" and first["type"] != "value_error":
            message = "Pick a channel."
        raise InvalidInput(message, field=field) from None
    return data, slot


def ack_add(
    deps: SlackDeps, ack: Ack, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Store the item and its post, or keep the form open with the field at fault named."""
    try:
        data, slot = read_add_form(view)
        actor = resolve_actor(deps, body, client)
        calendar = _calendar(deps)
        today = deps.clock.now().astimezone(zone_named(view.get("private_metadata"))).date()
        if slot.scheduled_for.astimezone(zone_named(view.get("private_metadata"))).date() < today:
            raise InvalidInput("That day has passed; pick today or later.", field="scheduled_for")
        calendar.create_scheduled(actor, data, slot, source_key=f"slack:{view.get('id')}")
    except InvalidInput as exc:
        block = _FIELD_BLOCKS.get(exc.field or "", BlockId.CONTENT_TITLE)
        if block == BlockId.CONTENT_CAMPAIGN and BlockId.CONTENT_CAMPAIGN not in _values(view):
            block = BlockId.CONTENT_CHANNEL
        ack(response_action="errors", errors={block: exc.message[:150]})
        return
    except SalesbotError as exc:
        ack(response_action="errors", errors={BlockId.CONTENT_TITLE: exc.message[:150]})
        return
    ack()


@tells_user_on_error
def confirm_add(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Tell the person what was scheduled, in their DM."""
    data, slot = read_add_form(view)
    zone = view.get("private_metadata") or "UTC"
    user = (body.get("user") or {}).get("id")
    if not user:
        return
    client.chat_postMessage(
        channel=user,
        text=(
            f"🗓️ Scheduled “{data.title[:150]}” on {channel_label(slot.channel)} for "
            f"{describe_day(slot.scheduled_for, zone)} ({zone}). Its card comes that morning; "
            "`/content list` shows this week."
        ),
    )


# --- the card's buttons -----------------------------------------------------------------------


def _action_value(body: dict[str, Any]) -> str:
    action = first_action(body) or {}
    if action.get("type") == "overflow":
        return str((action.get("selected_option") or {}).get("value") or "")
    return str(action.get("value") or "")


def _entry_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise InvalidInput(
            "This button does not name a scheduled post; it may be from an old card."
        )
    return int(raw)


@tells_user_on_error
def done(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Done: the post went out; the card shows who and when."""
    entry_id = _entry_id(_action_value(body))
    actor = resolve_actor(deps, body, client)
    _calendar(deps).mark_done(actor, entry_id)


@tells_user_on_error
def skip(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Skip: it will not be posted."""
    entry_id = _entry_id(_action_value(body))
    actor = resolve_actor(deps, body, client)
    _calendar(deps).skip(actor, entry_id)


@tells_user_on_error
def snooze(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Snooze to tomorrow morning (the button) or later (the menu)."""
    choice, _, raw = _action_value(body).partition(":")
    try:
        chosen = SnoozeChoice(choice)
    except ValueError:
        raise InvalidInput(
            "This snooze option is not one I know; it may be from an old card."
        ) from None
    entry_id = _entry_id(raw)
    actor = resolve_actor(deps, body, client)
    _calendar(deps).snooze(actor, entry_id, chosen)


@tells_user_on_error
def open_done_link(deps: SlackDeps, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Open the Done-with-link form at once, while the trigger id is fresh."""
    ack()
    entry_id = _entry_id(_action_value(body))
    actor = resolve_actor(deps, body, client)
    entry = _calendar(deps).get_entry(actor.org_id, None, entry_id)
    try:
        client.views_open(
            trigger_id=body["trigger_id"], view=done_link_modal(entry.id, entry.title)
        )
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            tell(client, body, "⚠️ Slack took too long to open the form; click again.")
        else:
            tell(client, body, f"⚠️ Slack refused to open the form ({error}).")


def _link(view: dict[str, Any]) -> str:
    value = _value(_values(view), BlockId.CONTENT_URL, ActionId.CONTENT_URL_INPUT)
    return str(value or "")


def ack_done_link(ack: Ack, view: dict[str, Any]) -> None:
    """Accept the form, or keep it open when the link is not a web address."""
    try:
        check_url(_link(view))
    except InvalidInput as exc:
        ack(response_action="errors", errors={BlockId.CONTENT_URL: exc.message})
        return
    ack()


@tells_user_on_error
def save_done_link(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Mark the post done with its link."""
    entry_id = _entry_id(str(view.get("private_metadata") or ""))
    actor = resolve_actor(deps, body, client)
    _calendar(deps).mark_done(actor, entry_id, posted_url=_link(view))
