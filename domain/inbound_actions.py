"""Acting on an understood inbound message (issue 11, scope 6: the pause conditions).

Every change is appended to the message's `actions` ({action, reason, contact_id,
enrollment_ids, at}) and every enrollment it stops or pauses names the message
(`stop_email_id`) and the reason (`stop_reason`).

- REMOVE, an unsubscribe intent or a request sent to our List-Unsubscribe address → the
  sender's own contact (the one with the From address; never a contact found through the
  thread) is opted out through the same path as one-click unsubscribe
  (`domain.suppression.opt_out_in`): every enrollment stopped, queued email cancelled. A
  verified List-Unsubscribe token opts out the contact it names. While the classification
  is provisional (the offline model's, Claude away) a model-made removal only pauses the
  contact's enrollments; the final classification opts out.
- A spam complaint → the recipients of our mail it reports on are opted out.
- A hard bounce → the address is marked bounced and every enrollment of the contact stops.
- A soft bounce → counted (once per bounce message, however often it is delivered); the
  third within `SOFT_BOUNCE_WINDOW` marks the address bounced.

Who may trigger them (`reported_contact_ids` is computed by the caller from our sends): a
bounce or complaint acts only on contacts we sent to (the report carries our Message-ID, or
we sent to the address from this org within `OUR_SEND_WINDOW`); a complaint about mail we
cannot find is escalated to a person. A message whose sender explicitly fails
authentication (`auth_failure`, domain.mail_auth) opts out or bounces no one, except through
a verified List-Unsubscribe token (the token is the proof): it is escalated instead.
- An out-of-office → the contact's active enrollments pause until the stated return date
  plus one business day (`DEFAULT_ABSENCE` from today when it states none).
- A person's reply to one of our sends → the contact's enrollment in that send's job stops,
  or pauses (until a person resumes it) when the campaign says `on_reply = pause`.

Acting is idempotent: a second pass over the same message (a crash before its record, or a
re-classification once Claude is back) finds the enrollments already stopped and the
contact already opted out, and appends nothing new; an opt-out is never undone here (a rep's
re-label of the message may undo it: `domain/corrections.py`).

Engagement events (`domain.engagement`) are handed back with the actions, for the caller to
record in the same unit of work (`record_engagements`, once per batch): a person's reply
(positive, negative, meeting request or plain, from its sentiment and intent), a hard or
soft bounce, a complaint, an out-of-office; an opt-out records its own (`opt_out_in`),
keyed by the message. A reply classified offline while Claude was away is recorded once
the final classification is in (`final`), so a re-classification never scores it twice.

A message flagged as trying to instruct the model is never acted on beyond what the
deterministic detectors decided: its model-made category or intent (REMOVE, unsubscribe,
sentiment) changes nothing; bounces, complaints, out-of-office and a reply's stop of the
cadence (which do not depend on what the model read) still apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from domain.classification import Category, Classification, Decider, Intent
from domain.conversations import Link, marks_send_replied
from domain.detection import BounceSeverity, Detection, MessageKind
from domain.engagement import EngagementEvent, EngagementInput, reply_event
from domain.suppression import opt_out_in

if TYPE_CHECKING:
    from domain.ports import UnderstandingUnitOfWork

SOFT_BOUNCES_TO_BOUNCED: Final = 3
SOFT_BOUNCE_WINDOW: Final = timedelta(days=30)
#: How recent a send of ours to an address must be for a bounce or complaint about that
#: address (without our Message-ID) to act on its contact.
OUR_SEND_WINDOW: Final = timedelta(days=60)
AWAITING_CONFIRMATION: Final = "unsubscribe request awaiting confirmation"
UNKNOWN_COMPLAINT: Final = "complaint about mail we cannot find: a person checks it"
DEFAULT_ABSENCE: Final = timedelta(days=7)
ON_REPLY_PAUSE: Final = "pause"


class Action(StrEnum):
    """What the pipeline did because of a message."""

    OPTED_OUT = "opted_out"
    MARKED_BOUNCED = "marked_bounced"
    SOFT_BOUNCE_COUNTED = "soft_bounce_counted"
    ENROLLMENTS_STOPPED = "enrollments_stopped"
    ENROLLMENT_PAUSED = "enrollment_paused"
    PAUSED_UNTIL_RETURN = "paused_until_return"


@dataclass(frozen=True)
class EnrollmentRef:
    """An enrollment of a contact still running (active or paused), with its campaign's rule."""

    id: int
    job_id: int
    status: str
    on_reply: str  # "stop" or "pause"


@dataclass(frozen=True)
class ActingOn:
    """Everything acting needs to know about one message."""

    email_id: int
    org_id: int
    detection: Detection | None
    classification: Classification
    link: Link
    received_at: datetime | None
    # Contacts of ours the message reports on (a bounce's failed recipients, a complaint's
    # recipients): only those we sent to (our Message-ID, or a recent send to the address).
    reported_contact_ids: tuple[int, ...] = ()
    # Reported addresses that matched no send of ours (recorded, never acted on).
    unknown_reported: tuple[str, ...] = ()
    # The contact whose address sent the message (None: the sender is no contact of ours).
    sender_contact_id: int | None = None
    # Why the sender fails authentication (domain.mail_auth); None when nothing fails.
    auth_failure: str | None = None
    # The contact a verified List-Unsubscribe token names (None: no token, or unverified).
    token_contact_id: int | None = None
    # False while the classification is provisional (offline while Claude was away).
    final: bool = True


def add_business_days(day: date, days: int) -> date:
    """Return the date `days` business days (Monday to Friday) after `day`."""
    current = day
    left = days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


def resume_at(detection: Detection, *, now: datetime) -> datetime:
    """When an absent contact's cadence may go on: return date + 1 business day, or 7 days."""
    returning = detection.auto_reply.return_date if detection.auto_reply else None
    if returning is None:
        return now + DEFAULT_ABSENCE
    return datetime.combine(add_business_days(returning, 1), time(0, 0), tzinfo=now.tzinfo)


def _entry(
    action: Action, reason: str, contact_id: int | None, enrollment_ids: list[int], at: datetime
) -> dict[str, Any]:
    return {
        "action": action.value,
        "reason": reason,
        "contact_id": contact_id,
        "enrollment_ids": sorted(enrollment_ids),
        "at": at.isoformat(),
    }


def _model_decided(result: Classification) -> bool:
    return result.decided_by in (Decider.CLAUDE, Decider.OFFLINE)


def _wants_out(on: ActingOn) -> bool:
    result = on.classification
    if on.detection is not None and on.detection.unsubscribe is not None:
        return True
    wants = result.category is Category.REMOVE or result.intent is Intent.UNSUBSCRIBE
    return wants and not (result.injection_attempt and _model_decided(result))


def withheld(on: ActingOn) -> tuple[str | None, tuple[str, ...]]:
    """Return why an automatic action is withheld: (an escalation reason, notes).

    The reason (None: nothing to escalate) is for a person to check a complaint we cannot
    match to our mail, or a request from a sender failing authentication; the notes say
    which reported addresses were recorded without being acted on.
    """
    det = on.detection
    kind = det.kind if det is not None else MessageKind.ORDINARY
    notes: tuple[str, ...] = ()
    if on.unknown_reported and kind in (MessageKind.BOUNCE, MessageKind.COMPLAINT):
        notes = (
            f"{len(on.unknown_reported)} reported address(es) we did not send to: "
            "recorded, not acted on",
        )
    if det is not None and det.from_own_rep:
        return None, notes
    if kind in (MessageKind.BOUNCE, MessageKind.COMPLAINT) and on.auth_failure:
        return f"{kind.value} not acted on: {on.auth_failure}; a person checks it", notes
    if kind is MessageKind.COMPLAINT and not on.reported_contact_ids:
        return UNKNOWN_COMPLAINT, notes
    if kind is MessageKind.ORDINARY and on.auth_failure and on.token_contact_id is None:
        if _wants_out(on):
            return (
                f"unsubscribe request not acted on: {on.auth_failure}; a person checks it",
                notes,
            )
    return None, notes


def act(
    uow: UnderstandingUnitOfWork,
    on: ActingOn,
    *,
    now: datetime,
    events: list[EngagementInput] | None = None,
) -> list[dict[str, Any]]:
    """Apply what the message calls for inside the caller's unit of work; return the actions.

    Nothing is done for mail from our own reps. The result lists only what changed now;
    the engagement events it calls for are appended to `events` (recording them is
    idempotent per contact, event and message).
    """
    det, result, link = on.detection, on.classification, on.link
    if det is not None and det.from_own_rep:
        return []
    done: list[dict[str, Any]] = []
    source = f"inbound email {on.email_id}"
    at = on.received_at or now
    send_id = link.send.id if link.send is not None else None

    def engage(
        contact_id: int | None, event: EngagementEvent, sentiment: str | None = None
    ) -> None:
        if events is not None and contact_id is not None:
            events.append(
                EngagementInput(
                    contact_id=contact_id,
                    event=event,
                    occurred_at=at,
                    sentiment=sentiment,
                    email_send_id=send_id,
                    inbound_email_id=on.email_id,
                )
            )

    def opt_out(contact_id: int | None, reason: str) -> None:
        if contact_id is None:
            return
        running = [e.id for e in uow.inbound_actions.enrollments(on.org_id, contact_id)]
        outcome = opt_out_in(
            uow, on.org_id, contact_id, source=source, at=now, inbound_email_id=on.email_id
        )
        if outcome is None:
            return
        if running:
            uow.inbound_actions.set_stop_email(on.org_id, running, email_id=on.email_id)
        if not outcome.already_opted_out or running:
            done.append(_entry(Action.OPTED_OUT, reason, contact_id, running, now))

    def mark_bounced(contact_id: int, reason: str) -> None:
        marked = uow.inbound_actions.mark_bounced(on.org_id, contact_id, at=now)
        stopped = uow.inbound_actions.stop_enrollments(
            on.org_id,
            [e.id for e in uow.inbound_actions.enrollments(on.org_id, contact_id)],
            reason="bounced",
            email_id=on.email_id,
            at=now,
        )
        if marked or stopped:
            done.append(_entry(Action.MARKED_BOUNCED, reason, contact_id, stopped, now))

    kind = det.kind if det is not None else MessageKind.ORDINARY
    # Only recipients of our mail; never a contact found through the sender or the thread.
    bounced = list(on.reported_contact_ids)
    if kind in (MessageKind.BOUNCE, MessageKind.COMPLAINT) and on.auth_failure:
        return done  # escalated by the caller (`withheld`)
    if kind is MessageKind.COMPLAINT:
        for contact_id in bounced:
            engage(contact_id, EngagementEvent.COMPLAINT)
            opt_out(contact_id, "spam complaint")
        return done
    if kind is MessageKind.BOUNCE and det is not None and det.bounce is not None:
        bounce = det.bounce
        if bounce.is_hard:
            for contact_id in bounced:
                engage(contact_id, EngagementEvent.BOUNCED)
                mark_bounced(contact_id, "hard bounce")
        elif any(r.severity is BounceSeverity.SOFT for r in bounce.recipients):
            for contact_id in bounced:
                engage(contact_id, EngagementEvent.SOFT_BOUNCE)
                since = (on.received_at or now) - SOFT_BOUNCE_WINDOW
                count = (
                    uow.inbound_pipeline.count_soft_bounces(
                        on.org_id, contact_id, since=since, excluding=on.email_id
                    )
                    + 1
                )
                if count >= SOFT_BOUNCES_TO_BOUNCED:
                    mark_bounced(contact_id, f"{count} soft bounces within 30 days")
                else:
                    done.append(
                        _entry(
                            Action.SOFT_BOUNCE_COUNTED,
                            f"soft bounce {count} of {SOFT_BOUNCES_TO_BOUNCED} within 30 days",
                            contact_id,
                            [],
                            now,
                        )
                    )
        return done
    if kind is MessageKind.OUT_OF_OFFICE and det is not None:
        if link.contact_id is None:
            return done
        engage(link.contact_id, EngagementEvent.OUT_OF_OFFICE)
        until = resume_at(det, now=now)
        if until <= now:
            return done
        running = [e.id for e in uow.inbound_actions.enrollments(on.org_id, link.contact_id)]
        paused = uow.inbound_actions.pause_enrollments(
            on.org_id,
            running,
            until=until,
            reason="out of office",
            email_id=on.email_id,
            at=now,
        )
        if paused:
            done.append(
                _entry(
                    Action.PAUSED_UNTIL_RETURN,
                    f"out of office until {until.date().isoformat()}",
                    link.contact_id,
                    paused,
                    now,
                )
            )
        return done
    if kind is not MessageKind.ORDINARY:
        return done  # other automatic answers change nothing
    # A person's message (or one the detectors could not read).
    if det is not None and det.unsubscribe is not None:
        if det.unsubscribe.via == "address" and on.token_contact_id is not None:
            # The verified token is the proof, whoever sent it.
            opt_out(on.token_contact_id, "unsubscribe request to our List-Unsubscribe address")
        elif on.auth_failure:
            pass  # escalated by the caller (`withheld`)
        elif det.unsubscribe.via == "address":
            opt_out(on.sender_contact_id, "unsubscribe request (its token could not be verified)")
        else:
            opt_out(on.sender_contact_id, "asked to be removed")
        return done
    if _wants_out(on):
        if on.auth_failure:
            return done  # escalated by the caller (`withheld`)
        if not on.final and _model_decided(result):
            if on.sender_contact_id is None:
                return done
            running = [
                e.id for e in uow.inbound_actions.enrollments(on.org_id, on.sender_contact_id)
            ]
            paused = uow.inbound_actions.pause_enrollments(
                on.org_id,
                running,
                until=None,
                reason=AWAITING_CONFIRMATION,
                email_id=on.email_id,
                at=now,
            )
            if paused:
                done.append(
                    _entry(
                        Action.ENROLLMENT_PAUSED,
                        AWAITING_CONFIRMATION,
                        on.sender_contact_id,
                        paused,
                        now,
                    )
                )
            return done
        opt_out(on.sender_contact_id, f"{result.category.value} ({result.decided_by.value})")
        return done
    if link.contact_id is None or not marks_send_replied(det):
        return done
    if on.final:
        if result.injection_attempt and _model_decided(result):
            # What the model read of a message that tried to instruct it does not score.
            engage(link.contact_id, EngagementEvent.REPLIED)
        else:
            engage(
                link.contact_id,
                reply_event(result.sentiment.value, result.intent.value),
                result.sentiment.value,
            )
    send = link.send
    if send is None or send.job_id is None:
        return done
    enrollment = next(
        (
            e
            for e in uow.inbound_actions.enrollments(on.org_id, link.contact_id)
            if e.job_id == send.job_id
        ),
        None,
    )
    if enrollment is None:
        return done
    if enrollment.on_reply == ON_REPLY_PAUSE:
        if enrollment.status == "paused":
            return done
        paused = uow.inbound_actions.pause_enrollments(
            on.org_id, [enrollment.id], until=None, reason="replied", email_id=on.email_id, at=now
        )
        if paused:
            done.append(
                _entry(
                    Action.ENROLLMENT_PAUSED,
                    "replied; the campaign pauses on a reply",
                    link.contact_id,
                    paused,
                    now,
                )
            )
        return done
    stopped = uow.inbound_actions.stop_enrollments(
        on.org_id, [enrollment.id], reason="replied", email_id=on.email_id, at=now
    )
    if stopped:
        done.append(_entry(Action.ENROLLMENTS_STOPPED, "replied", link.contact_id, stopped, now))
    return done
