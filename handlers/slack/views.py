"""Modal submissions: the edited draft and the rejection reason."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.blocks import parse_button_value
from bot.slack_ids import ActionId, BlockId, CallbackId
from domain.errors import InvalidInput
from domain.templates import TemplateProblem, render_text
from handlers.slack.common import SlackDeps, friendly, resolve_actor, tell


def _value(view: dict[str, Any], block: BlockId, action: ActionId) -> Any:
    return ((view.get("state") or {}).get("values") or {}).get(block, {}).get(action, {})


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
            from domain.templates import TEMPLATE_VARIABLES

            render_text(text, TEMPLATE_VARIABLES, field=block.value)
        except TemplateProblem as exc:
            errors[block] = exc.message[:150]
    return errors


def register(app: App, deps: SlackDeps) -> None:
    """Register the view submission listeners."""

    def ack_edit(ack: Ack, view: dict[str, Any]) -> None:
        subject = _value(view, BlockId.SUBJECT, ActionId.SUBJECT_INPUT).get("value") or ""
        body = _value(view, BlockId.BODY, ActionId.BODY_INPUT).get("value") or ""
        errors = edit_errors(subject, body)
        if errors:
            ack(response_action="errors", errors=errors)
        else:
            ack()

    def save_edit(view: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        try:
            card_id, fingerprint = parse_button_value(view.get("private_metadata"))
            subject = _value(view, BlockId.SUBJECT, ActionId.SUBJECT_INPUT).get("value") or ""
            text = _value(view, BlockId.BODY, ActionId.BODY_INPUT).get("value") or ""
            options = (
                _value(view, BlockId.OPTIONS, ActionId.APPROVE_AFTER_EDIT).get("selected_options")
                or []
            )
            approve = any(o.get("value") == "approve" for o in options)
            actor = resolve_actor(deps, body, client)
            deps.outreach.review.edit_card(
                actor, card_id, subject=subject, body=text, approve=approve, fingerprint=fingerprint
            )
        except ValueError:
            tell(client, body, "⚠️ This form does not name a card; open it again from the card.")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence for the rep
            tell(client, body, f"⚠️ {friendly(exc)}")

    def ack_reject(ack: Ack) -> None:
        ack()

    def save_reject(view: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        try:
            card_id, _ = parse_button_value(view.get("private_metadata"))
            reason = _value(view, BlockId.REASON, ActionId.REASON_INPUT).get("value")
            actor = resolve_actor(deps, body, client)
            deps.outreach.review.reject_card(actor, card_id, reason=reason)
        except ValueError:
            tell(client, body, "⚠️ This form does not name a card; open it again from the card.")
        except (InvalidInput, Exception) as exc:  # noqa: BLE001
            tell(client, body, f"⚠️ {friendly(exc)}")

    app.view(CallbackId.EDIT_CARD.value)(ack=ack_edit, lazy=[save_edit])
    app.view(CallbackId.REJECT_CARD.value)(ack=ack_reject, lazy=[save_reject])
