"""Who sees a reply card (issue 12, "Who sees it"), and the organization's triage channel.

A card made from an inbound message belongs to the job of the campaign send it answers,
else to the organization's replies inbox job (`jobs.kind = 'inbox'`), so every reply card
is drafted, posted and sent through the same task queue, paced poster and outbox.

It is posted to, in this order:

1. the DM of the rep who owns the thread: the user of the mailbox the message arrived in
   (`action_payload.sender_user_id`; else the campaign job's owner), when they have a
   Slack user;
2. the campaign job's review channel;
3. the organization's triage channel (`/triage set #channel`).

A channel that refuses because Salesbot is not in it (not a member, private and not
invited, archived) is skipped for the DM of the rep who launched the campaign, if they are
someone else with a Slack user, else for the next channel; the card says so in its
`routing_note`. When nothing takes it, the card is not lost: it waits in the App Home with
the reason (`slack_error`, `routing_note`).

A message from someone who is not a contact (an unknown sender, or a reply in our thread
whose contact was deleted since) makes a card only for an AMC order or an opportunity:
business nobody should miss. That card is for a person (`needs_human_response`, never
drafted or auto-sent), in the replies inbox, and says who the sender is not. Everything
else from a stranger is recorded without a card, and the inbound API's notes say why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from domain.classification import Category
from domain.deps import Deps
from domain.errors import ExternalServiceError, InvalidInput, NotPermitted
from domain.jobs import TaskKind

if TYPE_CHECKING:
    from domain.cards import CardView
    from domain.conversations import Link
    from domain.outreach.common import Actor
    from domain.ports import ChannelDirectory, TriageUnitOfWork, UnderstandingUnitOfWork
    from domain.replies import ClientAccount
    from domain.understanding import InboundMessage

log = logging.getLogger(__name__)


# --- which job, and the facts of the thread ---------------------------------------------

#: What a message from someone who is not a contact may make a card for.
STRANGER_CATEGORIES: Final = frozenset({Category.AMC_ORDER, Category.OPPORTUNITY})

NOT_A_CONTACT: Final = "the sender is not a contact: a person answers"
CONTACT_GONE: Final = "the contact of this thread was deleted: a person answers"


@dataclass(frozen=True)
class RoutingFacts:
    """What the thread of an inbound message says about who answers it."""

    #: The user of the Gmail account the message arrived in (`gmail_accounts.user_id`).
    mailbox_user_id: int | None = None
    #: The owner of the campaign job whose send the message answers.
    job_owner_id: int | None = None
    campaign_name: str | None = None
    #: The 0-based cadence step of the send answered, when it is known.
    step: int | None = None
    #: The client of the sender (or the one linking found), with its order history.
    client: ClientAccount | None = None

    @property
    def sender_user_id(self) -> int | None:
        """Who answers: the mailbox's user, else the campaign job's owner."""
        return self.mailbox_user_id if self.mailbox_user_id is not None else self.job_owner_id


@dataclass(frozen=True)
class CardRouting:
    """The job a reply card belongs to and the routing facts for its `action_payload`."""

    job_id: int
    payload: dict[str, Any]


def stranger_card_reason(link: Link, category: Category) -> str | None:
    """Say why a message from someone who is not (or no longer) a contact makes a card for
    a person, or return None when it makes no card (see the module docstring)."""
    if category not in STRANGER_CATEGORIES:
        return None
    return CONTACT_GONE if link.send is not None else NOT_A_CONTACT


def sender_note(link: Link, category: Category) -> str | None:
    """The inbound note about a message whose sender is not a contact (None for a contact's)."""
    if link.contact_id is not None:
        return None
    who = (
        "the contact of this thread was deleted"
        if link.send is not None
        else "the sender is not a contact"
    )
    if category in STRANGER_CATEGORIES:
        return f"{who}: a card for a person in the replies inbox ({category.value})"
    kinds = " or ".join(c.value for c in sorted(STRANGER_CATEGORIES))
    return f"{who}: no card (only {kinds} makes one)"


def route_reply_card(
    uow: UnderstandingUnitOfWork, message: InboundMessage, link: Link, *, now: datetime
) -> CardRouting:
    """Choose the job of a reply card (the answered send's, else the organization's replies
    inbox, created on first use) and its routing facts, in the caller's unit of work."""
    send = link.send
    facts = uow.reply_routing.routing_facts(
        message.org_id,
        message.id,
        send_id=send.id if send is not None else None,
        client_id=link.client_id,
        now=now,
    )
    job_id = send.job_id if send is not None and send.job_id is not None else None
    if job_id is None:
        job_id = uow.jobs.inbox_job_id(message.org_id, now=now)
    payload: dict[str, Any] = {
        "sender_user_id": facts.sender_user_id,
        "campaign_name": facts.campaign_name,
        "step": facts.step,
        "client_history": facts.client.order_history(now) if facts.client is not None else None,
    }
    if link.contact_id is None:
        payload["contact_note"] = "contact deleted" if send is not None else "not a contact"
    return CardRouting(job_id=job_id, payload=payload)


# --- where a reply card is posted -------------------------------------------------------


class RoutedTo(StrEnum):
    """Where a reply card was posted (`action_payload.routed_to`)."""

    DM = "dm"
    REVIEW_CHANNEL = "review_channel"
    TRIAGE_CHANNEL = "triage_channel"


class ChannelUnavailable(ExternalServiceError):
    """A channel refuses a post because Salesbot is not in it, cannot see it, or it is
    archived (Slack's not_in_channel, channel_not_found, is_archived): trying again does
    not help, posting somewhere else does."""

    def __init__(self, message: str, *, channel_id: str, error: str) -> None:
        super().__init__(message, retryable=False)
        self.channel_id = channel_id
        self.error = error


class NowhereToPost(ExternalServiceError):
    """No DM or channel took a reply card; the reason says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class Destination:
    """One place a reply card may be posted: a channel, or a Slack user's DM."""

    routed_to: RoutedTo
    channel_id: str | None = None
    slack_user_id: str | None = None


@dataclass(frozen=True)
class RoutingPlan:
    """Where a reply card goes, in order, and the DM to fall back on after a refusal."""

    destinations: tuple[Destination, ...]
    #: The DM of the rep who launched the campaign (another person than the first DM).
    fallback_dm: Destination | None = None


@dataclass(frozen=True)
class Posted:
    """Where a reply card's message went, and the note it carries about why there."""

    channel_id: str
    ts: str
    routed_to: RoutedTo
    routing_note: str | None = None


NO_PLACE: Final = (
    "Slack: there is nowhere to post this card: the rep who owns the thread has no Slack "
    "user, there is no campaign review channel and no triage channel is set. An admin can set "
    "one with `/triage set #channel`; meanwhile the card waits in Salesbot's App Home."
)


def plan_routing(
    *,
    rep_slack_id: str | None,
    owner_slack_id: str | None,
    review_channel_id: str | None,
    triage_channel_id: str | None,
) -> RoutingPlan:
    """Order the places a reply card may go (see the module docstring)."""
    places: list[Destination] = []
    if rep_slack_id:
        places.append(Destination(RoutedTo.DM, slack_user_id=rep_slack_id))
    if review_channel_id:
        places.append(Destination(RoutedTo.REVIEW_CHANNEL, channel_id=review_channel_id))
    if triage_channel_id and triage_channel_id != review_channel_id:
        places.append(Destination(RoutedTo.TRIAGE_CHANNEL, channel_id=triage_channel_id))
    fallback = (
        Destination(RoutedTo.DM, slack_user_id=owner_slack_id)
        if owner_slack_id and owner_slack_id != rep_slack_id
        else None
    )
    return RoutingPlan(tuple(places), fallback)


#: A Slack id as it may be put in a mention (`<#C…>`, `<@U…>`).
_SLACK_ID: Final = re.compile(r"^[A-Z0-9]{2,32}$")


def _mention(prefix: str, slack_id: str | None) -> str:
    """A channel (`#`) or user (`@`) mention, or the id as plain words when it is no Slack
    id (a note is rendered as mrkdwn: it must not ping anyone by accident)."""
    value = slack_id or ""
    if _SLACK_ID.match(value):
        return f"<{prefix}{value}>"
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "", value)[:32]
    return f"{'channel' if prefix == '#' else 'user'} {cleaned or '(unknown)'}"


def refusal_note(refused: ChannelUnavailable) -> str:
    """Say on the card why it is not in the channel it was meant for, and what to do."""
    channel = _mention("#", refused.channel_id)
    if refused.error == "is_archived":
        return f"Posted here because {channel} is archived: choose another channel"
    if refused.error == "channel_not_found":
        return (
            f"Posted here because Salesbot cannot see {channel} (private, or deleted): "
            "/invite @Salesbot there"
        )
    return f"Posted here because Salesbot is not in {channel}: /invite @Salesbot there"


def post_reply_card(
    post: Callable[[CardView, Destination], tuple[str, str]],
    view: CardView,
    plan: RoutingPlan,
) -> Posted:
    """Post a reply card to the first place of the plan that takes it.

    `post` posts the view to one destination and returns (channel id, ts); it raises
    ChannelUnavailable when a channel refuses Salesbot, ExternalServiceError otherwise. A
    refusing channel gives way to the campaign owner's DM, if any, else to the next place,
    and the card posted says why (`routing_note`). A DM that cannot be opened gives way to
    the next place. Raises NowhereToPost, with every reason, when nothing took it, and
    any retryable error as it came (the post is tried again).
    """
    if not plan.destinations and plan.fallback_dm is None:
        raise NowhereToPost(NO_PLACE)
    queue = list(plan.destinations)
    fallback = plan.fallback_dm
    if not queue and fallback is not None:
        queue, fallback = [fallback], None
    notes: list[str] = []
    while queue:
        place = queue.pop(0)
        note = "; ".join(notes) or None
        shown = view if note is None else _with_note(view, note)
        try:
            channel_id, ts = post(shown, place)
        except ChannelUnavailable as exc:
            notes.append(refusal_note(exc))
            if fallback is not None:
                queue.insert(0, fallback)
                fallback = None
            continue
        except ExternalServiceError as exc:
            if exc.retryable or place.channel_id is not None:
                raise
            notes.append(
                f"Posted here because Salesbot could not DM {_mention('@', place.slack_user_id)}"
            )
            log.warning(
                "could not DM the rep a reply card",
                extra={"card_id": view.card.id, "reason": exc.message},
            )
            continue
        return Posted(channel_id, ts, place.routed_to, note)
    reasons = "; ".join(n.removeprefix("Posted here because ") for n in notes)
    raise NowhereToPost(
        f"Slack: no channel or DM took the card ({reasons}); it waits in Salesbot's App Home"
    )


def _with_note(view: CardView, note: str) -> CardView:
    card = view.card
    return replace(
        view, card=replace(card, action_payload={**card.action_payload, "routing_note": note})
    )


# --- the triage channel -----------------------------------------------------------------

#: A Slack channel id (C… public, G… private); a DM (D…) is no triage channel.
_CHANNEL_ID: Final = re.compile(r"^[CG][A-Z0-9]{2,31}$")
#: How Slack escapes a channel named in a command: <#C123|name> or <#C123>.
_CHANNEL_MENTION: Final = re.compile(r"^<#([A-Z0-9]+)(?:\|[^>]*)?>$")


def parse_channel(text: str) -> str | None:
    """Read a channel id from `<#C123|name>`, `<#C123>` or a bare `C123`; None if not one."""
    value = text.strip()
    mention = _CHANNEL_MENTION.match(value)
    if mention:
        value = mention.group(1)
    value = value.upper() if value[:1].lower() in ("c", "g") else value
    return value if _CHANNEL_ID.match(value) else None


def routing_order(triage_channel_id: str | None) -> tuple[str, ...]:
    """How reply cards are routed, in the order tried, for `/triage` and the API."""
    triage = (
        f"the triage channel <#{triage_channel_id}>"
        if triage_channel_id
        else "the triage channel (none set: `/triage set #channel`)"
    )
    return (
        "the DM of the rep whose mailbox received the reply (else who launched the campaign)",
        "the campaign's review channel",
        triage,
    )


ROUTING_FALLBACK: Final = (
    "A channel Salesbot is not in falls back to the DM of the rep who launched the campaign, "
    "else to the next channel, and the card says so. With nowhere to post, the card waits "
    "in Salesbot's App Home with the reason."
)


@dataclass(frozen=True)
class ChannelStatus:
    """What Slack says of a channel, as Salesbot's bot sees it."""

    channel_id: str
    found: bool
    name: str | None = None
    is_member: bool = False
    is_archived: bool = False
    is_private: bool = False


#: How many waiting reply cards a new triage channel takes at once (the rest wait for the
#: next change, or the App Home).
REPOST_LIMIT: Final = 500


@dataclass(frozen=True)
class TriageView:
    """The organization's triage channel, how reply cards are routed, and any warning."""

    channel_id: str | None
    routing: tuple[str, ...]
    warning: str | None = None
    notes: tuple[str, ...] = field(default=(ROUTING_FALLBACK,))
    #: Reply cards that had nowhere to go, queued to be posted again after the change.
    reposted: int = 0


class Triage:
    """The organization's triage channel: read by anyone of it, set and cleared by admins.

    Setting one queues the reply cards that had nowhere to go to be posted again (the
    paced poster, woken by `on_queued`): they reach the new channel, or wherever a rep's
    DM or review channel now takes them.
    """

    def __init__(
        self,
        deps: Deps[TriageUnitOfWork],
        *,
        channels: ChannelDirectory | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._uow = deps.uow
        self._channels = channels
        self._on_queued = on_queued

    def show(self, org_id: int) -> TriageView:
        """Return the triage channel and how reply cards are routed."""
        with self._uow() as uow:
            channel = uow.orgs.triage_channel(org_id)
        return TriageView(channel_id=channel, routing=routing_order(channel))

    def set_channel(self, actor: Actor | None, org_id: int, channel: str) -> TriageView:
        """Make a channel (an id or Slack's `<#C123|name>`) the triage channel (admins;
        `actor` None is an organization-wide API token). An archived channel is refused;
        one Salesbot is not in, or could not check, is stored with a warning. The reply
        cards that had nowhere to go are queued to be posted (not those whose post is
        already queued; none without a chat to post to)."""
        _authorize(actor, org_id)
        channel_id = parse_channel(channel)
        if channel_id is None:
            raise InvalidInput(
                "name a channel, e.g. `/triage set #replies` (a channel id such as C0123ABCD "
                "also works; a direct message cannot be the triage channel)",
                field="channel_id",
            )
        warning = check_card_channel(self._channels, org_id, channel_id)
        with self._uow() as uow:
            uow.orgs.set_triage_channel(org_id, channel_id)
            waiting = (
                uow.cards.unposted_reply_cards(org_id, limit=REPOST_LIMIT)
                if self._channels is not None
                else []
            )
            by_job: dict[int, list[dict[str, Any]]] = {}
            for card_id, job_id in waiting:
                by_job.setdefault(job_id, []).append(
                    {"kind": TaskKind.POST_CARD.value, "input": {"card_id": card_id}}
                )
            for job_id, rows in by_job.items():
                uow.tasks.add_many(org_id, job_id, rows)
            uow.commit()
        log.info(
            "triage channel set",
            extra={"org_id": org_id, "channel_id": channel_id, "reposted": len(waiting)},
        )
        if waiting and self._on_queued is not None:
            self._on_queued()
        return TriageView(
            channel_id=channel_id,
            routing=routing_order(channel_id),
            warning=warning,
            reposted=len(waiting),
        )

    def clear(self, actor: Actor | None, org_id: int) -> TriageView:
        """Forget the triage channel (admins)."""
        _authorize(actor, org_id)
        with self._uow() as uow:
            uow.orgs.set_triage_channel(org_id, None)
            uow.commit()
        log.info("triage channel cleared", extra={"org_id": org_id})
        return TriageView(channel_id=None, routing=routing_order(None))


def check_card_channel(
    channels: ChannelDirectory | None, org_id: int, channel_id: str
) -> str | None:
    """Refuse an archived channel (InvalidInput); return a warning for one Salesbot may
    not post in or could not check, None when it can post there (triage and the
    content calendar's marketing channel)."""
    mention = f"<#{channel_id}>"
    if channels is None:
        return f"Salesbot could not check {mention}: Slack is not connected to this server."
    try:
        status = channels.channel_status(org_id, channel_id)
    except ExternalServiceError as exc:
        return f"Salesbot could not check {mention} ({exc.message}); it is set anyway."
    if not status.found:
        return (
            f"Salesbot cannot see {mention}: it is private and Salesbot was not invited, "
            "or it does not exist. /invite @Salesbot there, or cards cannot be posted."
        )
    if status.is_archived:
        raise InvalidInput(
            f"{mention} is archived: cards cannot be posted there; choose another channel.",
            field="channel_id",
        )
    if not status.is_member:
        return f"Salesbot is not in {mention}: /invite @Salesbot there so cards can be posted."
    return None


def _authorize(actor: Actor | None, org_id: int) -> None:
    if actor is None:
        return
    if actor.org_id != org_id:
        raise NotPermitted("You can only change the triage channel of your own organization.")
    if not actor.is_admin:
        raise NotPermitted(
            "Only an admin can change the triage channel; ask an admin of your organization."
        )


def describe(view: TriageView) -> Sequence[str]:
    """The lines `/triage` answers with."""
    current = (
        f"Triage channel: <#{view.channel_id}>"
        if view.channel_id
        else "No triage channel is set: `/triage set #channel` (admins)."
    )
    lines = [current, "Reply cards go to the first of:"]
    lines += [f"{n}. {place}" for n, place in enumerate(view.routing, start=1)]
    lines += list(view.notes)
    if view.reposted:
        cards = "1 reply card" if view.reposted == 1 else f"{view.reposted} reply cards"
        lines.append(f"{cards} that had nowhere to go will be posted now.")
    if view.warning:
        lines.append(f"⚠️ {view.warning}")
    return lines
