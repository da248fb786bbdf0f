"""Modal submissions: the edited draft and the rejection reason."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from domain.templates import TEMPLATE_VARIABLES, TemplateProblem, render_text
from handlers.slack.blocks import parse_button_value
from handlers.slack.common import Bound, SlackDeps, resolve_actor, tell, tells_user_on_error
from handlers.slack.ids import ActionId, BlockId, CallbackId
from handlers.slack.referrals import ack_referral_email, save_referral_email

NOT_A_CARD_FORM = "⚠️ This form does not name a card; open it again from the card."


def register(app: App, deps: SlackDeps) -> None:
    """Register the view submission listeners."""
    app.view(CallbackId.EDIT_CARD.value)(ack=ack_edit, lazy=[Bound(save_edit, deps)])
    app.view(CallbackId.REJECT_CARD.value)(ack=ack_reject, lazy=[Bound(save_reject, deps)])
    app.view(CallbackId.REFERRAL_EMAIL.value)(
        ack=ack_referral_email, lazy=[Bound(save_referral_email, deps)]
    )


def edit_errors(subject: str, body: str) -> dict[str, str]:
    """Check an edit before accepting the modal: empty fields and templates that do not render."""
    errors: dict[str, str] = {}
    if not subject.strip():
        errors[BlockId.SUBJECT] = "The subject cannot be empty."
    if not body.strip():
        errors[BlockId.BODY] = "The body cannot be empty."
    for block, text in ((BlockId.SUBJECT, subject), (BlockId.BODY, body)):
        if block in errors or ("{" not in text):
            continue
        try:
            render_text(text, TEMPLATE_VARIABLES, field=block.value)
        except TemplateProblem as exc:
            errors[block] = exc.message[:150]
    return errors


def ack_edit(ack: Ack, view: dict[str, Any]) -> None:
    """Accept the edit modal, or keep it open with the errors of its fields."""
    subject = _value(view, BlockId.SUBJECT, ActionId.SUBJECT_INPUT).get("value") or ""
    body = _value(view, BlockId.BODY, ActionId.BODY_INPUT).get("value") or ""
    errors = edit_errors(subject, body)
    if errors:
        ack(response_action="errors", errors=errors)
    else:
        ack()


@tells_user_on_error
def save_edit(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Save the edited draft, and approve it when the rep ticked the box."""
    try:
        card_id, fingerprint = parse_button_value(view.get("private_metadata"))
    except ValueError:
        tell(client, body, NOT_A_CARD_FORM)
        return
    subject = _value(view, BlockId.SUBJECT, ActionId.SUBJECT_INPUT).get("value") or ""
    text = _value(view, BlockId.BODY, ActionId.BODY_INPUT).get("value") or ""
    options = (
        _value(view, BlockId.OPTIONS, ActionId.APPROVE_AFTER_EDIT).get("selected_options") or []
    )
    approve = any(o.get("value") == "approve" for o in options)
    actor = resolve_actor(deps, body, client)
    deps.outreach.review.edit_card(
        actor, card_id, subject=subject, body=text, approve=approve, fingerprint=fingerprint
    )


def ack_reject(ack: Ack) -> None:
    """Accept the reject modal; the reason is optional."""
    ack()


@tells_user_on_error
def save_reject(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Reject the card with the reason given, if any."""
    try:
        card_id, _ = parse_button_value(view.get("private_metadata"))
    except ValueError:
        tell(client, body, NOT_A_CARD_FORM)
        return
    reason = _value(view, BlockId.REASON, ActionId.REASON_INPUT).get("value")
    actor = resolve_actor(deps, body, client)
    deps.outreach.review.reject_card(actor, card_id, reason=reason)


def _value(view: dict[str, Any], block: BlockId, action: ActionId) -> Any:
    return ((view.get("state") or {}).get("values") or {}).get(block, {}).get(action, {})
