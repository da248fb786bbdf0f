""" "Enroll <name> in <campaign>" on a referral card, and the form that asks for the address
a referral did not write (issue 12 item 6).

A click acks at once; a referral with an address is enrolled after the ack (a lazy call,
stored before the ack and replayed if this process dies), one without opens the form while
the trigger id is fresh. The form's address is checked before it closes (an invalid one
keeps it open with the reason), then the same enrollment runs.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from email_validator import EmailNotValidError, validate_email
from slack_bolt import Ack
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.errors import InvalidInput, SalesbotError
from domain.outreach import Referral
from domain.outreach.referrals import MAX_NAME, check_address
from handlers.slack.blocks import escape, parse_button_value
from handlers.slack.common import (
    NAMES_NO_CARD,
    SlackDeps,
    clicked_action,
    parse_action_value,
    resolve_actor,
    tell,
    tells_user_on_error,
)
from handlers.slack.ids import ActionId, BlockId, CallbackId

log = logging.getLogger(__name__)

NOT_A_REFERRAL_FORM: Final = "⚠️ This form does not name a referral card; open it from the card."


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    cut = text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
    return {"type": "plain_text", "text": cut, "emoji": True}


def referral_email_modal(referral: Referral) -> dict[str, Any]:
    """The form that asks a rep for the address of a person a reply named without one."""
    campaign = f"“{referral.campaign_name}”" if referral.campaign_name else "the campaign"
    who = f"*{escape(referral.name)}*" if referral.name else "someone"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    f"{escape(referral.referrer)} pointed you to {who} but wrote no email "
                    f"address. Type it and Salesbot enrolls them in {escape(campaign)} and "
                    "drafts their first email for your review."
                ),
            },
        }
    ]
    if referral.words:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"> {escape(referral.words[:280])}"}],
            }
        )
    name_input: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": ActionId.NAME_INPUT,
        "max_length": MAX_NAME,
    }
    if referral.name:
        name_input["initial_value"] = referral.name[:MAX_NAME]
    blocks += [
        {
            "type": "input",
            "block_id": BlockId.EMAIL,
            "label": _plain("Email address"),
            "element": {
                "type": "email_text_input",
                "action_id": ActionId.EMAIL_INPUT,
                "placeholder": _plain("karen@lender.com"),
            },
        },
        {
            "type": "input",
            "block_id": BlockId.NAME,
            "optional": True,
            "label": _plain("Name"),
            "element": name_input,
        },
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.REFERRAL_EMAIL,
        "private_metadata": json.dumps({"card": referral.card_id}, separators=(",", ":")),
        "title": _plain("Enroll a referral", 24),
        "submit": _plain("Enroll", 24),
        "close": _plain("Cancel", 24),
        "blocks": blocks,
    }


def _card_id(body: dict[str, Any]) -> int:
    clicked_action(body)  # a click without an action is told so, not that it names no card
    card_id, _ = parse_action_value(
        body,
        parse_button_value,
        refusal=NAMES_NO_CARD,
    )
    return card_id


def open_referral_form(deps: SlackDeps, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Ack the click; open the address form at once when the referral has no address."""
    ack()
    try:
        actor = resolve_actor(deps, body, client)
        referral = deps.outreach.referrals.referral(actor, _card_id(body))
    except SalesbotError:
        return  # the lazy listener runs the same checks and tells the rep why
    if not referral.needs_address:
        return  # enrolled by the lazy listener
    try:
        client.views_open(trigger_id=body["trigger_id"], view=referral_email_modal(referral))
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            tell(client, body, "⚠️ Slack took too long to open the form; click Enroll again.")
        else:
            tell(client, body, f"⚠️ Slack refused to open the form ({error}).")


@tells_user_on_error
def enroll_referral(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Enroll the person a referral card names (one without an address waits for the form)."""
    actor = resolve_actor(deps, body, client)
    card_id = _card_id(body)
    if deps.outreach.referrals.referral(actor, card_id).needs_address:
        return  # the form opened by the ack asks for it
    enrolled = deps.outreach.referrals.enroll(actor, card_id)
    if not enrolled.already:
        deps.wake_worker()  # the first email's draft is queued
    tell(client, body, enrolled.message)


def _value(view: dict[str, Any], block: BlockId, action: ActionId) -> Any:
    return ((view.get("state") or {}).get("values") or {}).get(block, {}).get(action, {})


def address_error(raw: str) -> str | None:
    """Say why a typed address cannot be used, or None when it can."""
    try:
        validate_email(raw.strip(), check_deliverability=False)
        check_address(raw)
    except EmailNotValidError as exc:
        return f"That is not an email address ({exc}); type one such as karen@lender.com."[:150]
    except InvalidInput as exc:
        return exc.message[:150]
    return None


def ack_referral_email(ack: Ack, view: dict[str, Any]) -> None:
    """Accept the address form, or keep it open with the reason the address is refused."""
    typed = str(_value(view, BlockId.EMAIL, ActionId.EMAIL_INPUT).get("value") or "")
    error = address_error(typed)
    if error is not None:
        ack(response_action="errors", errors={BlockId.EMAIL: error})
    else:
        ack()


@tells_user_on_error
def save_referral_email(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Enroll the referral with the address (and name) the rep typed."""
    try:
        card_id = parse_button_value(view.get("private_metadata"))[0]
    except ValueError:
        tell(client, body, NOT_A_REFERRAL_FORM)
        return
    email = str(_value(view, BlockId.EMAIL, ActionId.EMAIL_INPUT).get("value") or "")
    name = _value(view, BlockId.NAME, ActionId.NAME_INPUT).get("value")
    actor = resolve_actor(deps, body, client)
    enrolled = deps.outreach.referrals.enroll(
        actor, card_id, email=email, name=str(name) if name else None
    )
    if not enrolled.already:
        deps.wake_worker()
    tell(client, body, enrolled.message)
