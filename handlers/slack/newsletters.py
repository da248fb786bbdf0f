"""Clicks on a newsletter issue's preview card (docs/newsletters.md): Approve & schedule,
Edit (a modal; the templates are checked again before it closes), Reject, Cancel sending
(once scheduled, behind Slack's confirm dialog); and the
NewsletterChat port on Slack's Web API.

The clicks are acked at once; the use case runs in the lazy listener, which the web app
stores before its ack and the worker replays (the durable ack path), and the planning of
20,000 emails runs later still, in the newsletter sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from domain.errors import ExternalServiceError, InvalidInput, SalesbotError
from domain.newsletter_service import Newsletters
from domain.newsletters import IssueCard, IssueStatus, IssueTemplates, check_issue
from domain.outreach import StaleCard
from handlers.slack.common import (
    Bound,
    SlackDeps,
    ack_only,
    parse_action_value,
    resolve_actor,
    tell,
    tells_user_on_error,
)
from handlers.slack.ids import ActionId, BlockId, CallbackId
from handlers.slack.newsletter_blocks import (
    issue_card_message,
    issue_edit_modal,
    parse_issue_value,
)


def register(app: App, deps: SlackDeps) -> None:
    """Register the newsletter card listeners (before the catch-all of unknown actions)."""
    app.action(ActionId.NEWSLETTER_APPROVE.value)(ack=ack_only, lazy=[Bound(approve, deps)])
    app.action(ActionId.NEWSLETTER_REJECT.value)(ack=ack_only, lazy=[Bound(reject, deps)])
    app.action(ActionId.NEWSLETTER_CANCEL.value)(ack=ack_only, lazy=[Bound(cancel, deps)])
    app.action(ActionId.NEWSLETTER_EDIT.value)(Bound(open_edit, deps))
    app.view(CallbackId.EDIT_NEWSLETTER_ISSUE.value)(ack=ack_edit, lazy=[Bound(save_edit, deps)])


def _newsletters(deps: SlackDeps) -> Newsletters:
    if deps.newsletters is None:
        raise SalesbotError("Newsletters are not set up in this Salesbot; ask an admin.")
    return deps.newsletters


def _issue_ref(body: dict[str, Any]) -> tuple[int, str | None]:
    return parse_action_value(
        body,
        parse_issue_value,
        refusal="This button does not name a newsletter issue; it may come from an old message.",
    )


@tells_user_on_error
def approve(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Approve the issue as shown and schedule it; the card says when it will finish."""
    issue_id, fingerprint = _issue_ref(body)
    actor = resolve_actor(deps, body, client)
    newsletters = _newsletters(deps)
    try:
        newsletters.approve(actor, issue_id, fingerprint=fingerprint)
    except StaleCard as exc:
        newsletters.refresh_card(actor.org_id, issue_id)
        tell(client, body, f"⚠️ {exc.message}")


@tells_user_on_error
def reject(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Reject the issue: nothing is sent; it can be edited and submitted again."""
    issue_id, _ = _issue_ref(body)
    actor = resolve_actor(deps, body, client)
    _newsletters(deps).reject(actor, issue_id)


@tells_user_on_error
def cancel(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Cancel sending the issue (after Slack's confirm dialog): the emails still queued are
    withdrawn; the card says who cancelled and how many went out."""
    issue_id, _ = _issue_ref(body)
    actor = resolve_actor(deps, body, client)
    _newsletters(deps).cancel(actor, actor.org_id, issue_id)


@tells_user_on_error
def open_edit(deps: SlackDeps, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Open the edit form at once, while the trigger id is fresh."""
    ack()
    issue_id, _ = _issue_ref(body)
    actor = resolve_actor(deps, body, client)
    issue = _newsletters(deps).issue_for(actor, issue_id)
    if issue.status != IssueStatus.IN_REVIEW:
        raise InvalidInput(
            f"This issue is {issue.status.value.replace('_', ' ')}; it can no longer be edited"
            " here."
        )
    try:
        client.views_open(trigger_id=body["trigger_id"], view=issue_edit_modal(issue))
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            tell(client, body, "⚠️ Slack took too long to open the form; click Edit again.")
        else:
            tell(client, body, f"⚠️ Slack refused to open the form ({error}).")


def _value(view: dict[str, Any], block: BlockId, action: ActionId) -> str | None:
    values: dict[str, Any] = (view.get("state") or {}).get("values") or {}
    if block not in values:
        return None
    return str((values.get(block, {}).get(action, {}) or {}).get("value") or "")


def _edited(view: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    return (
        _value(view, BlockId.NEWSLETTER_SUBJECT, ActionId.NEWSLETTER_SUBJECT_INPUT),
        _value(view, BlockId.NEWSLETTER_TEXT, ActionId.NEWSLETTER_TEXT_INPUT),
        _value(view, BlockId.NEWSLETTER_HTML, ActionId.NEWSLETTER_HTML_INPUT),
    )


_FIELD_BLOCKS = {
    "subject_template": BlockId.NEWSLETTER_SUBJECT,
    "text_template": BlockId.NEWSLETTER_TEXT,
    "html_template": BlockId.NEWSLETTER_HTML,
}


def ack_edit(ack: Ack, view: dict[str, Any]) -> None:
    """Accept the form, or keep it open with the template's problem under its field (the
    templates are checked with sample values; the saved issue is checked again)."""
    subject, text, html = _edited(view)
    try:
        # What the form leaves out is kept as stored: a placeholder checks the rest.
        check_issue(
            IssueTemplates(
                subject="x" if subject is None else subject,
                text="x" if text is None else text,
                html=html or "",
                variables={},
            )
        )
    except InvalidInput as exc:
        if exc.field == "variables" or "unknown variable" in exc.message:
            ack()  # the issue's own variables are not in the form: the save checks them
            return
        block = _FIELD_BLOCKS.get(exc.field or "", BlockId.NEWSLETTER_SUBJECT)
        ack(response_action="errors", errors={block: exc.message[:2000]})
        return
    ack()


@tells_user_on_error
def save_edit(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Save the edited templates: the card shows the new preview and waits for approval."""
    try:
        issue_id, fingerprint = parse_issue_value(view.get("private_metadata"))
    except ValueError:
        tell(client, body, "⚠️ This form does not name an issue; open it again from the card.")
        return
    subject, text, html = _edited(view)
    actor = resolve_actor(deps, body, client)
    newsletters = _newsletters(deps)
    issue = newsletters.issue_for(actor, issue_id)
    newsletters.edit(
        actor,
        issue_id,
        subject=subject if subject is not None else issue.subject_template,
        text=text if text is not None else issue.text_template,
        html=html if html is not None else issue.html_template,
        fingerprint=fingerprint,
    )


class SlackNewsletterChat:
    """The NewsletterChat port on Slack's Web API."""

    def __init__(self, client_for_org: Callable[[int], WebClient]) -> None:
        self._client_for_org = client_for_org

    def post_card(self, org_id: int, channel_id: str, card: IssueCard) -> tuple[str, str]:
        """Post an issue's card; return (channel id, ts)."""
        text, blocks = issue_card_message(card)
        try:
            answer = self._client_for_org(org_id).chat_postMessage(
                channel=channel_id, text=text, blocks=blocks, unfurl_links=False
            )
        except (SlackClientError, OSError) as exc:
            raise _external(exc) from exc
        return str(answer.get("channel") or channel_id), str(answer["ts"])

    def update_card(self, org_id: int, channel_id: str, ts: str, card: IssueCard) -> None:
        """Update an issue's card in place."""
        text, blocks = issue_card_message(card)
        try:
            self._client_for_org(org_id).chat_update(
                channel=channel_id, ts=ts, text=text, blocks=blocks
            )
        except (SlackClientError, OSError) as exc:
            raise _external(exc) from exc


_RETRYABLE = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable"})


def _external(exc: SlackClientError | OSError) -> ExternalServiceError:
    """Slack's refusal (retryable or not by its error), or no answer at all (retryable)."""
    if not isinstance(exc, SlackApiError):
        return ExternalServiceError(f"Slack could not be reached ({exc})", retryable=True)
    error = str(exc.response.get("error", "unknown_error"))
    return ExternalServiceError(f"Slack answered {error}", retryable=error in _RETRYABLE)
