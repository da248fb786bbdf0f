"""What every Slack listener shares: who is acting, and how errors reach them."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from slack_bolt import Ack, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from domain.accounts import Accounts
from domain.cadence import CadenceSettings, HolidayCalendar
from domain.clock import Clock
from domain.content_service import ContentCalendar
from domain.corrections import Corrections
from domain.digests import Digests
from domain.errors import InvalidInput, NotPermitted, SalesbotError
from domain.newsletter_service import Newsletters
from domain.outreach import Actor, Outreach
from domain.reply_policy import ReplyPolicies
from domain.reply_routing import Triage
from domain.reputation_service import Reputation
from domain.rules import Rules

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class SlackDeps:
    """Collaborators of the Slack listeners, built by the composition root."""

    outreach: Outreach
    accounts: Accounts
    rules: Rules
    session_factory: Callable[[], Session]
    clock: Clock
    wake_worker: Callable[[], None]
    gmail_connect_url: Callable[[Actor], str | None]
    gmail_address: Callable[[Actor], str | None]
    reply_policies: ReplyPolicies
    #: The triage channel (`/triage`); None only where no command runs (tests of wiring).
    triage: Triage | None = None
    #: Re-labels from cards and the rules they propose (None: not wired, as in some tests).
    corrections: Corrections | None = None
    #: The holiday calendar of an organization's cadence settings, as the cadence tick
    #: uses it (None: no holidays), for `/campaign launch --dry-run`.
    holidays: Callable[[CadenceSettings], HolidayCalendar] | None = None
    #: The engagement digest's subscriptions (`/digest`); None where it is not wired.
    digests: Digests | None = None
    #: Reviews' response cards (docs/reputation.md); None where it is not wired.
    reputation: Reputation | None = None
    #: The content calendar (`/content`, the due cards' buttons); None where not wired.
    content: ContentCalendar | None = None
    #: Newsletter issues' preview cards (docs/newsletters.md); None where it is not wired.
    newsletters: Newsletters | None = None


def corrections_of(deps: SlackDeps) -> Corrections:
    """Return the corrections use cases, or say that this app was built without them."""
    if deps.corrections is None:
        raise SalesbotError("Re-labelling is not set up in this Salesbot; ask an admin.")
    return deps.corrections


class NotConnected(SalesbotError):
    """The Slack workspace is not bound to a Salesbot organization."""

    code = "not_connected"


def team_id_of(body: dict[str, Any]) -> str | None:
    """Return the workspace id of any Slack payload."""
    team = body.get("team")
    if isinstance(team, dict) and team.get("id"):
        return str(team["id"])
    if body.get("team_id"):
        return str(body["team_id"])
    user = body.get("user")
    if isinstance(user, dict) and user.get("team_id"):
        return str(user["team_id"])
    return None


def user_id_of(body: dict[str, Any]) -> str | None:
    """Return the acting user's Slack id of any Slack payload."""
    user = body.get("user")
    if isinstance(user, dict) and user.get("id"):
        return str(user["id"])
    if body.get("user_id"):
        return str(body["user_id"])
    event = body.get("event")
    if isinstance(event, dict) and event.get("user"):
        return str(event["user"])
    return None


#: What a click whose button names no card (e.g. from a message of an older version) is told.
NAMES_NO_CARD = "This button does not name a card; it may come from an old message."


def first_action(body: dict[str, Any]) -> dict[str, Any] | None:
    """Return the first action of a block-actions payload, or None when it carries none."""
    actions = body.get("actions") or []
    action = actions[0] if actions else None
    return action if isinstance(action, dict) else None


def clicked_action(body: dict[str, Any]) -> dict[str, Any]:
    """Return the first action of a block-actions payload; raise InvalidInput without one."""
    action = first_action(body)
    if action is None:
        raise InvalidInput("This click carried no action; reload the message and try again.")
    return action


def parse_action_value(body: dict[str, Any], parse: Callable[[Any], T], *, refusal: str) -> T:
    """Return `parse` of the value of a block-actions payload's first action; raise
    InvalidInput(refusal) when `parse` refuses it (ValueError or TypeError), as it does the
    missing value of a payload without an action."""
    try:
        return parse((first_action(body) or {}).get("value"))
    except (TypeError, ValueError):
        raise InvalidInput(refusal) from None


def resolve_actor(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> Actor:
    """Map the Slack user of a payload to a Salesbot user of the workspace's organization.

    A Slack user seen for the first time is linked by their email (users.info) to the
    user with that address, or becomes a rep of the organization.
    """
    team_id, slack_user = team_id_of(body), user_id_of(body)
    if not team_id or not slack_user:
        raise NotPermitted("This request does not say which workspace and user it comes from.")
    org, user = deps.accounts.find_slack_user(team_id, slack_user)
    if org is None:
        raise NotConnected(
            "This Slack workspace is not connected to a Salesbot organization. "
            "Ask an admin to run `salesbot org link-slack --org <slug> --team-id "
            f"{team_id}` (or to install Salesbot with `salesbot org install-link`)."
        )
    if user is None:
        try:
            info = client.users_info(user=slack_user)
        except SlackApiError as exc:
            raise NotPermitted(
                f"Salesbot could not look you up in Slack ({exc.response.get('error')})."
            ) from exc
        profile = (info.get("user") or {}).get("profile") or {}
        email = profile.get("email")
        if not email:
            raise NotPermitted(
                "Salesbot needs your email address to link you; grant users:read.email."
            )
        name = profile.get("real_name") or (info.get("user") or {}).get("name")
        user = deps.accounts.link_first_seen_slack_user(
            org.id, slack_user_id=slack_user, email=email, name=name
        )
    return Actor(org_id=org.id, user_id=user.id, role=user.role, slack_user_id=slack_user)


def friendly(exc: Exception) -> str:
    """Turn an exception into a sentence for the person who clicked."""
    if isinstance(exc, SalesbotError):
        return exc.message
    error_id = uuid.uuid4().hex[:10]
    log.error("slack listener failed", exc_info=exc, extra={"error_id": error_id})
    return (
        f"Something went wrong on our side (error id {error_id}). "
        "Nothing was sent twice; try again."
    )


def ack_only(ack: Ack) -> None:
    """Acknowledge a click or event whose work runs after the ack (a lazy listener)."""
    ack()


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """Tell the acting user something only they see (ephemeral, or a DM as fallback)."""
    user = user_id_of(body)
    channel = (
        (body.get("channel") or {}).get("id") if isinstance(body.get("channel"), dict) else None
    )
    channel = channel or body.get("channel_id")
    if not user:
        return
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
        else:
            client.chat_postMessage(channel=user, text=text)
    except SlackApiError as exc:
        log.warning("could not tell the user", extra={"error": exc.response.get("error")})


def answer(respond: Respond, text: str, *, blocks: list[dict[str, Any]] | None = None) -> None:
    """Answer a slash command through its response_url (`text` is the notification and
    fallback of `blocks`, if any). An answer that cannot be delivered is logged, not
    raised: a raised error would make the worker run the command again (a second launch),
    and the command's work is already done."""
    try:
        extra: dict[str, Any] = {"blocks": blocks} if blocks is not None else {}
        answered = respond(response_type="ephemeral", text=text, replace_original=False, **extra)
    except Exception:  # noqa: BLE001 - see above
        log.warning("could not answer a slash command through its response_url", exc_info=True)
        return
    # Slack refuses without raising (404 once the URL was used 5 times or is 30 minutes old,
    # as when no worker ran for a while): say so, or the answer is lost without a trace.
    if answered.status_code != 200:
        log.warning(
            "could not answer a slash command through its response_url",
            extra={"status": answered.status_code, "body": answered.body[:200]},
        )


def tells_user_on_error(listener: Callable[P, None]) -> Callable[P, None]:
    """Make a listener tell the person who acted why it failed, instead of raising.

    The sentence is `friendly`'s: a SalesbotError's own message, or for anything else an
    error id, logged with the traceback. A slash command's listener (one that takes
    `respond`) answers through the command's response_url; any other listener tells the
    person in a message only they see (`tell`). Nothing is raised: the replay worker would
    run a lazy listener that raised again, and its work may be half done.
    """
    signature = inspect.signature(listener)
    by_response_url = "respond" in signature.parameters
    needed = {"respond"} if by_response_url else {"body", "client"}
    missing = needed - signature.parameters.keys()
    if missing:
        raise TypeError(f"{listener.__name__} takes no {', '.join(sorted(missing))}")

    @functools.wraps(listener)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            listener(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence for the rep
            given = signature.bind(*args, **kwargs).arguments
            text = f"⚠️ {friendly(exc)}"
            if by_response_url:
                answer(given["respond"], text)
            else:
                tell(given["client"], given["body"], text)

    return guarded


class Bound(Generic[P]):
    """A listener with the Slack dependencies bound as its first argument, shown to Bolt as
    the listener itself without that argument.

    Bolt passes a listener the arguments its signature names, and stores and replays a lazy
    listener by its `__name__`. `functools.partial` has no `__name__`, and the partial of a
    decorated listener shows Bolt only `*args, **kwargs`.
    """

    def __init__(
        self, listener: Callable[Concatenate[SlackDeps, P], None], deps: SlackDeps
    ) -> None:
        self._listener = listener
        self._deps = deps
        self.__name__ = listener.__name__
        signature = inspect.signature(listener)
        self.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run the listener with the dependencies it was bound to."""
        self._listener(self._deps, *args, **kwargs)
