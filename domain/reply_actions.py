"""What a reply card's intent does besides the card, and the answers drafted without a model
(issue 12 items 4 and 6; docs/reply-cards.md).

When `make_reply_card` makes a card, `act_on_intent` runs the plan's `ReplyAction` in the
same unit of work and returns what goes on the card:

- PROPOSE_TIMES (meeting_request): `proposed_times`, the times the text proposes, as ISO
  strings in the contact's time zone (their stored zone, else their state's, else the
  default); the draft task then drafts a confirmation (`draft_answer`).
- ENROLL_REFERRAL (referral, wrong_person): `referral`, the best person the text names,
  found among the organization's contacts by address or added as a contact of the sender's
  client (tagged "referral"); the rep enrolls them from the card
  (domain/outreach/referrals.py). Without an address the card asks the rep for one.
- PAUSE_CONTACT (not_now): when the text names a date ("try me in January"), the contact is
  paused until its first business day (`contacts.paused_until`; audiences skip them) and
  their running enrollments too, as an out-of-office pauses them; `paused_until` and
  `pause_words` go on the card.
- OPEN_DEAL, UPDATE_RECORDS, LOOK_UP_ORDER: a card for a person, titled with what to do.

`draft_answer` drafts a card's answer: an opt-out's confirmation is a fixed text, never the
model's (it may be sent without a person); a meeting request with times gets a
confirmation of the time (or the question which); anything else is `Replies.draft_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from domain.cadence import resolve_time_zone
from domain.intents import KnownPerson
from domain.mail import text_to_html
from domain.replies import TEMPLATE_SOURCE, ReplyContext, ReplyDraft, ReplyTemplate
from domain.reply_cards import CardPlan, ReplyAction
from domain.reply_policy import NEVER_AUTO

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from domain.conversations import Link
    from domain.ports import IntentReader, ReplyActionRepository, UnderstandingUnitOfWork
    from domain.replies import Replies
    from domain.understanding import InboundMessage

#: The tag of a contact added because a reply named them.
REFERRAL_TAG: Final = "referral"
#: Why enrollments are paused for a "not now" (`enrollments.stop_reason`).
NOT_NOW_REASON: Final = "not now"
OPT_OUT_NOTE: Final = "a fixed confirmation of the opt-out: never written by a model"
MEETING_NOTE: Final = "a confirmation drafted from the times they proposed"
_NEVER_AUTO_VALUES: Final = frozenset(c.value for c in NEVER_AUTO)


@dataclass(frozen=True)
class IntentOutcome:
    """What acting on a reply's intent puts on its card: payload keys, and a title."""

    payload: dict[str, Any] = field(default_factory=dict)
    title: str | None = None


def act_on_intent(
    uow: UnderstandingUnitOfWork,
    message: InboundMessage,
    plan: CardPlan,
    link: Link,
    *,
    intents: IntentReader | None,
    now: datetime,
) -> IntentOutcome:
    """Run the plan's action in the caller's unit of work; return what goes on the card."""
    who = message.from_name or message.from_email or "someone"
    action = plan.action
    if action is ReplyAction.PROPOSE_TIMES:
        times = propose_times(uow, message, link, intents=intents, now=now)
        return IntentOutcome({"proposed_times": times}, f"Confirm a meeting with {who}")
    if action is ReplyAction.ENROLL_REFERRAL:
        referral = place_referral(uow, message, link, intents=intents, now=now)
        named = referral["name"] or referral["email"] or "the person they named"
        return IntentOutcome({"referral": referral}, f"Referral from {who}: reach {named}")
    if action is ReplyAction.PAUSE_CONTACT:
        return IntentOutcome(pause_until_resume(uow, message, link, intents=intents, now=now))
    if action is ReplyAction.OPEN_DEAL:
        client = (
            uow.reply_actions.client_name(message.org_id, link.client_id)
            if link.client_id is not None
            else None
        )
        return IntentOutcome(title=f"Open a deal for {client or who}")
    if action is ReplyAction.UPDATE_RECORDS:
        return IntentOutcome(title=f"Update the records: {who}")
    if action is ReplyAction.LOOK_UP_ORDER:
        return IntentOutcome(title=f"Look up the order {who} asks about")
    return IntentOutcome()


# --- meeting times -----------------------------------------------------------------------


def contact_zone(repo: ReplyActionRepository, org_id: int, contact_id: int | None) -> ZoneInfo:
    """The zone a contact's words are read in: theirs, their state's, else the default."""
    stored, state = repo.contact_zone(org_id, contact_id) if contact_id else (None, None)
    return resolve_time_zone(contact_zone=stored, state=state, org_zone=None).zone


def _iso(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return moment.astimezone(zone).isoformat() if moment is not None else None


def propose_times(
    uow: UnderstandingUnitOfWork,
    message: InboundMessage,
    link: Link,
    *,
    intents: IntentReader | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The times a meeting request proposes, `{"start", "end", "words"}` with ISO strings in
    the contact's time zone (None where the words name no day)."""
    if intents is None:
        return []
    zone = contact_zone(uow.reply_actions, message.org_id, link.contact_id)
    times = intents.meeting_times(message.text, sent_at=message.received_at or now, tz=zone.key)
    return [
        {"start": _iso(t.start, zone), "end": _iso(t.end, zone), "words": t.words} for t in times
    ]


# --- referrals ---------------------------------------------------------------------------


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """A written name as a contact's first and last name ("Ana de la Cruz" → Ana, de la Cruz)."""
    parts = (name or "").split()
    if not parts:
        return None, None
    return parts[0], " ".join(parts[1:]) or None


def find_or_add_person(
    repo: ReplyActionRepository,
    org_id: int,
    *,
    email: str,
    name: str | None,
    role: str | None,
    client_id: int | None,
    at: datetime,
) -> KnownPerson:
    """The contact with this address, or a new one of `client_id` tagged "referral"."""
    found = repo.find_contact(org_id, email)
    if found is not None:
        return found
    first, last = split_name(name)
    return repo.add_contact(
        org_id,
        email=email,
        first_name=first,
        last_name=last,
        title=role,
        client_id=client_id,
        tags=[REFERRAL_TAG],
        at=at,
    )


def place_referral(
    uow: UnderstandingUnitOfWork,
    message: InboundMessage,
    link: Link,
    *,
    intents: IntentReader | None,
    now: datetime,
) -> dict[str, Any]:
    """The card's `referral`: the best person the text names, found or added as a contact
    of the sender's client, and the campaign the answered send belongs to."""
    send = link.send
    campaign_id = send.campaign_id if send is not None else None
    campaign_name = (
        uow.reply_actions.campaign_name(message.org_id, campaign_id)
        if campaign_id is not None
        else None
    )
    referral: dict[str, Any] = {
        "email": None,
        "name": None,
        "role": None,
        "contact_id": None,
        "campaign_id": campaign_id,
        "campaign_name": campaign_name,
        "enrolled_job_id": None,
        "words": "",
    }
    candidates = (
        intents.referrals(message.text, sender=message.from_email, own_addresses=message.to_emails)
        if intents is not None
        else []
    )
    if not candidates:
        return referral  # the card asks the rep for the address
    best = candidates[0]
    person = find_or_add_person(
        uow.reply_actions,
        message.org_id,
        email=best.email,
        name=best.name,
        role=best.role,
        client_id=link.client_id,
        at=now,
    )
    known_name = person.name if person.name != person.email else None
    return {
        **referral,
        "email": person.email,
        "name": best.name or known_name,
        "role": best.role,
        "contact_id": person.id,
        "words": best.words,
    }


# --- not now -----------------------------------------------------------------------------


def pause_until_resume(
    uow: UnderstandingUnitOfWork,
    message: InboundMessage,
    link: Link,
    *,
    intents: IntentReader | None,
    now: datetime,
) -> dict[str, Any]:
    """Pause the contact and their running enrollments until the date a "not now" names;
    return `paused_until` (ISO, the contact's time zone) and `pause_words`, or nothing when
    the text names no date."""
    contact_id = link.contact_id
    if intents is None or contact_id is None:
        return {}
    zone = contact_zone(uow.reply_actions, message.org_id, contact_id)
    resume = intents.resume_date(message.text, sent_at=message.received_at or now, tz=zone.key)
    if resume is None:
        return {}
    until = datetime.combine(resume.on, time(0, 0), tzinfo=zone)
    if until <= now:
        return {}
    at_utc = until.astimezone(UTC)
    uow.reply_actions.pause_contact(
        message.org_id, contact_id, until=at_utc, reason=f"not now: {resume.words}", at=now
    )
    running = [e.id for e in uow.inbound_actions.enrollments(message.org_id, contact_id)]
    uow.inbound_actions.pause_enrollments(
        message.org_id, running, until=at_utc, reason=NOT_NOW_REASON, email_id=message.id, at=now
    )
    return {"paused_until": until.isoformat(), "pause_words": resume.words}


# --- answers drafted without a model ------------------------------------------------------


def confirms_opt_out(payload: Mapping[str, Any]) -> bool:
    """Tell whether a card's answer is the confirmation of an opt-out: a fixed text, the one
    email an opted-out address may still get, never edited."""
    return payload.get("reply_action") == ReplyAction.CONFIRM_OPT_OUT.value


def may_still_auto_send(payload: Mapping[str, Any]) -> bool:
    """Check an auto-sent card again before it leaves: never a message that tried to
    instruct the model, never a category a person must handle (whatever the plan said)."""
    return not payload.get("injection_attempt") and payload.get("category") not in (
        _NEVER_AUTO_VALUES
    )


def draft_answer(
    replies: Replies, org_id: int, inbound_email_id: int, payload: Mapping[str, Any]
) -> ReplyDraft:
    """Draft the answer of a reply card: an opt-out's confirmation is a fixed text; a meeting
    request with times, a confirmation; anything else, `Replies.draft_for`."""
    action = payload.get("reply_action")
    if action == ReplyAction.CONFIRM_OPT_OUT:
        return opt_out_confirmation(replies.context_for(org_id, inbound_email_id))
    if action == ReplyAction.PROPOSE_TIMES:
        context = replies.context_for(org_id, inbound_email_id)
        confirmation = meeting_confirmation(context, payload.get("proposed_times") or [])
        return confirmation if confirmation is not None else replies.draft(context)
    return replies.draft_for(org_id, inbound_email_id)


def _letter(context: ReplyContext, lines: Sequence[str]) -> str:
    greeting = f"Hi {context.first_name}," if context.first_name else "Hello,"
    rep = context.rep
    signature = [rep.signature_name]
    if rep.firm_name and rep.firm_name != rep.signature_name:
        signature.append(rep.firm_name)
    return "\n\n".join([greeting, *lines, "Best regards,\n" + "\n".join(signature)])


def _facts(context: ReplyContext, keys: Sequence[str]) -> list[str]:
    facts = context.facts()
    return [facts[key] for key in keys if key in facts]


def opt_out_confirmation(context: ReplyContext) -> ReplyDraft:
    """The confirmation of an opt-out: short, polite, no marketing, signed by the rep."""
    body = _letter(
        context,
        [
            "You're removed from our mailing list: you will not receive any more emails "
            "from our campaigns.",
            "Sorry for the bother, and thank you for letting us know.",
        ],
    )
    return ReplyDraft(
        body_text=body,
        body_html=text_to_html(body),
        facts_used=_facts(context, ("contact", "opted_out")),
        source=TEMPLATE_SOURCE,
        template=ReplyTemplate.UNSUBSCRIBE,
        notes=[OPT_OUT_NOTE],
    )


def _clock(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def _day(moment: datetime) -> str:
    return f"{moment:%A}, {moment:%B} {moment.day}"


def describe_time(start: datetime, end: datetime | None = None) -> str:
    """A proposed time in words, in its own offset: "Tuesday, December 8 at 2:00 PM",
    "Tuesday, December 8 between 9:00 AM and 12:00 PM", "between Monday, December 14 and
    Friday, December 18"."""
    if end is None:
        return f"{_day(start)} at {_clock(start)}"
    if end.date() == start.date():
        return f"{_day(start)} between {_clock(start)} and {_clock(end)}"
    return f"between {_day(start)} and {_day(end)}"


def _placed(times: Sequence[Any]) -> list[tuple[datetime, datetime | None]]:
    placed: list[tuple[datetime, datetime | None]] = []
    for item in times:
        if not isinstance(item, dict) or not item.get("start"):
            continue
        try:
            start = datetime.fromisoformat(str(item["start"]))
            end = datetime.fromisoformat(str(item["end"])) if item.get("end") else None
        except ValueError:
            continue
        placed.append((start, end))
    return placed


def meeting_confirmation(context: ReplyContext, times: Sequence[Any]) -> ReplyDraft | None:
    """Confirm the one time proposed, or ask which of several (or which hour of a window);
    None when no proposed time names a day (the usual draft asks for times)."""
    placed = _placed(times)
    if not placed:
        return None
    if len(placed) == 1 and placed[0][1] is None:
        lines = [
            f"Thank you, {describe_time(*placed[0])} works for me.",
            "I will send you a calendar invitation for it.",
        ]
    elif len(placed) == 1:
        lines = [
            f"Thank you, {describe_time(*placed[0])} works for me.",
            "What time suits you best? I will send you a calendar invitation once you confirm.",
        ]
    else:
        options = [describe_time(start, end) for start, end in placed[:4]]
        listed = ", ".join(options[:-1]) + " or " + options[-1]
        lines = [
            f"Thank you for suggesting a few times: {listed}.",
            "Which one suits you best? I will send you a calendar invitation once you confirm.",
        ]
    body = _letter(context, lines)
    return ReplyDraft(
        body_text=body,
        body_html=text_to_html(body),
        facts_used=_facts(context, ("contact",)),
        source=TEMPLATE_SOURCE,
        template=ReplyTemplate.MEETING_REQUEST,
        notes=[MEETING_NOTE],
    )
