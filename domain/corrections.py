"""Learning from reps: a re-label of an inbound message, and the rules reps' corrections propose.

A rep who reads a message differently from the classifier re-labels it (from its card in
Slack, or `POST /api/inbound/{id}/labels`). `Corrections.relabel` then does, in one unit of
work:

- stores a `classifier_corrections` row (who, the labels before and after, the sender);
- writes the rep's labels as the message's classification (`decided_by` = rep, confidence 1,
  no re-classification pending), so nothing that reads the message later sees the old ones;
- re-applies what the labels decide, as the pipeline would have (`domain.inbound_actions`):
  re-labelled **to** REMOVE (or the unsubscribe intent), the sender's own contact is opted
  out through `domain.suppression.opt_out_in`; re-labelled **away** from it, an opt-out this
  message's classification made is undone (the contact's `opted_out_at` is cleared and the
  `opted_out` engagement event keyed by this message retracted). An opt-out made by the
  unsubscribe link, by our List-Unsubscribe address, by a spam complaint or by another
  message stays, and the outcome says so. The enrollments and queued emails an opt-out
  stopped stay stopped (a reply stops the cadence anyway): the outcome says that too;
- re-scores the reply: the engagement event the old labels recorded for this message
  (positive, negative, meeting request, plain reply) is retracted and the one the new labels
  call for is recorded; the send's and the conversation's reply sentiment follow;
- notes the re-label on the message's card (`relabelled`, `relabel_note`, the labels), and
  shows the card again after the commit when it has a chat message;
- counts identical corrections (same new category, the category changed) for the sender's
  address and for the sender's domain (never a free-mail domain): at `propose_after` of them
  a rule is proposed (`rule_proposals`, open), and each admin with a Slack account is sent a
  DM with Accept / Dismiss. The DMs are queued in the same unit of work and sent by the
  Slack worker after the commit (`ChatNoticeRepository`), never from inside it.

An admin accepting a proposal creates the rule through `Rules` (same validation and budgets)
in the unit of work that marks the proposal accepted (compare-and-set on its status), so a
double click creates one rule; dismissing records who and when.

The organization's latest corrections also become few-shot examples in Claude's prompt for
that organization (`recent_examples`, filled into `ClassifyRequest.examples` by the pipeline).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from domain.classification import Category, CorrectionExample, Intent, Sentiment
from domain.conversations import marks_send_replied
from domain.deps import Deps
from domain.detection import MessageKind, UnsubscribeVia
from domain.engagement import (
    REPLY_EVENTS,
    EngagementEvent,
    EngagementInput,
    record_engagements,
    reply_event,
    retract_engagements,
)
from domain.errors import InvalidInput, NotFound, NotPermitted
from domain.inbound import InboundStatus
from domain.rules import RuleType, parse_category, parse_choice, sender_address
from domain.suppression import opt_out_in
from domain.understanding import MAX_EXAMPLES, read_detection

if TYPE_CHECKING:
    from domain.outreach.common import Actor
    from domain.outreach.presenting import Presenting
    from domain.ports import CorrectionsUnitOfWork
    from domain.rules import Rules

log = logging.getLogger(__name__)

#: Identical corrections (same new category) for one sender or domain before a rule is proposed.
DEFAULT_PROPOSE_AFTER: Final = 3
#: Characters of an example's subject and text shown to Claude (the text is the sender's).
EXAMPLE_SUBJECT_CHARS: Final = 150
EXAMPLE_BODY_CHARS: Final = 500
#: Where anyone can have an address: a rule for the whole domain would file strangers' mail.
FREE_MAIL_DOMAINS: Final = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "ymail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.net",
        "mail.com",
        "yandex.com",
        "zoho.com",
        "comcast.net",
        "att.net",
        "verizon.net",
        "sbcglobal.net",
        "bellsouth.net",
        "cox.net",
    }
)
#: What the card says when a re-label changed nothing but the labels.
LABELS_ONLY: Final = "labels changed; nothing else depended on them"
#: The kinds of notices queued for the chat (sent by the Slack worker after the commit).
NOTICE_RULE_PROPOSAL: Final = "rule_proposal"
NOTICE_RULE_PROPOSAL_DECIDED: Final = "rule_proposal_decided"
#: Limit of the lists the API returns.
MAX_LISTED: Final = 200


class LabelSet(BaseModel):
    """The three labels a rep can set on a message."""

    model_config = ConfigDict(frozen=True)

    category: Category
    intent: Intent
    sentiment: Sentiment

    def words(self) -> str:
        """The labels as a rep reads them: `INFORMATION / none / neutral`."""
        return f"{self.category.value} / {self.intent.value} / {self.sentiment.value}"

    @property
    def wants_out(self) -> bool:
        """True when these labels ask for an opt-out (as `domain.inbound_actions` reads them)."""
        return self.category is Category.REMOVE or self.intent is Intent.UNSUBSCRIBE


class RelabelOutcome(BaseModel):
    """What a re-label did, in words for the rep (`effects`)."""

    model_config = ConfigDict(frozen=True)

    inbound_email_id: int
    card_id: int | None
    changed: bool = Field(description="False when the message already had these labels.")
    correction_id: int | None = Field(description="The stored correction; null when unchanged.")
    before: LabelSet
    after: LabelSet
    effects: list[str] = Field(description="What changed besides the labels, in words.")
    proposal_id: int | None = Field(
        default=None, description="The rule proposal these corrections opened, if any."
    )

    @property
    def summary(self) -> str:
        """One paragraph for a chat message."""
        return "\n".join(f"• {effect}" for effect in self.effects)


class CorrectionView(BaseModel):
    """One stored re-label."""

    model_config = ConfigDict(frozen=True)

    id: int
    inbound_email_id: int
    card_id: int | None
    user_id: int | None
    sender_email: str | None
    sender_domain: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    note: str | None
    created_at: datetime


class ProposalStatus(StrEnum):
    """Where a rule proposal is: open → accepted (a rule made) or dismissed."""

    OPEN = "open"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


class RuleProposalView(BaseModel):
    """A rule proposed from identical corrections."""

    model_config = ConfigDict(frozen=True)

    id: int
    rule_type: RuleType
    pattern: str
    category: Category
    corrections: int = Field(description="Identical corrections counted when last proposed.")
    status: ProposalStatus
    rule_id: int | None
    decided_by: int | None
    decided_at: datetime | None
    slack_channel_id: str | None = None
    slack_message_ts: str | None = None
    created_at: datetime
    updated_at: datetime

    def words(self) -> str:
        """`mail from pinnacle.com → INFORMATION`."""
        what = "mail from" if self.rule_type is RuleType.SENDER_EMAIL else "mail from anyone at"
        return f"{what} {self.pattern} → {self.category.value}"


class ProposalDecision(BaseModel):
    """What accepting or dismissing a proposal did."""

    model_config = ConfigDict(frozen=True)

    proposal: RuleProposalView
    changed: bool = Field(description="False when it had been decided that way already.")
    message: str


@dataclass(frozen=True)
class RelabelTarget:
    """An inbound message as a re-label reads it."""

    id: int
    org_id: int
    status: str
    labels: LabelSet | None  # None while it has no classification
    from_email: str | None
    subject: str | None
    # The contact the pipeline linked it to, and the contact whose address sent it.
    contact_id: int | None
    sender_contact_id: int | None
    email_send_id: int | None
    received_at: datetime | None
    detection: dict[str, Any]
    sent_by_us: bool
    injection_attempt: bool
    card_id: int | None
    #: The user of the mailbox that received it (who may re-label it), None if unknown.
    mailbox_user_id: int | None = None


@dataclass(frozen=True)
class NewCorrection:
    """A correction to store."""

    org_id: int
    inbound_email_id: int
    card_id: int | None
    user_id: int | None
    sender_email: str | None
    sender_domain: str | None
    before: LabelSet
    after: LabelSet
    note: str | None
    created_at: datetime


@dataclass(frozen=True)
class SameCorrections:
    """How many messages (and distinct senders) were re-labelled to one category."""

    messages: int
    senders: int


def parse_intent(raw: str | Intent) -> Intent:
    """Return the intent named (any case), or say which ones exist."""
    return parse_choice(Intent, raw, field="intent")


def parse_sentiment(raw: str | Sentiment) -> Sentiment:
    """Return the sentiment named (any case), or say which ones exist."""
    return parse_choice(Sentiment, raw, field="sentiment")


def sender_domain(address: str | None) -> str | None:
    """Return the lower-case domain of a sender's address, or None."""
    bare = sender_address(address)
    return bare.rpartition("@")[2].rstrip(".") if bare else None


def proposable_domain(domain: str | None) -> bool:
    """Tell whether a rule may cover a whole domain (not a free-mail one)."""
    return bool(domain) and domain not in FREE_MAIL_DOMAINS


def clip(text: str | None, limit: int) -> str:
    """Cut a text to `limit` characters, marking the cut."""
    value = (text or "").strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


class Corrections:
    """Re-labels by reps, the examples they give the classifier, and the rules they propose."""

    def __init__(
        self,
        deps: Deps[CorrectionsUnitOfWork],
        *,
        rules: Rules,
        presenting: Presenting | None = None,
        propose_after: int = DEFAULT_PROPOSE_AFTER,
        notify_in_chat: bool = False,
    ) -> None:
        if propose_after < 1:
            raise ValueError("propose_after must be at least 1")
        self._uow = deps.uow
        self._clock = deps.clock
        self._rules = rules
        self._presenting = presenting
        self._propose_after = propose_after
        self._notify = notify_in_chat

    # --- re-labelling -------------------------------------------------------------------

    def relabel(
        self,
        org_id: int,
        inbound_email_id: int,
        *,
        actor: Actor | None,
        category: str | None,
        intent: str | None,
        sentiment: str | None,
        card_id: int | None = None,
    ) -> RelabelOutcome:
        """Set a message's labels as a rep reads them and re-apply what they decide.

        Labels not given keep their values, except that a category given without an intent
        takes the unsubscribe intent to REMOVE and drops it away from REMOVE. Values outside
        the lists are refused with the valid ones; labels that change nothing store nothing
        and say so (the card is shown again all the same, so a re-label replayed after a
        crash that followed its commit still shows on the card).

        Who may: on a message with a card, whoever may act on the card
        (`authorize_card`); else an admin or the rep whose mailbox received the message.
        `actor` None is an API token not tied to a user, acting for the organization.
        """
        chosen_category = parse_category(category) if category is not None else None
        chosen_intent = parse_intent(intent) if intent is not None else None
        chosen_sentiment = parse_sentiment(sentiment) if sentiment is not None else None
        if chosen_category is None and chosen_intent is None and chosen_sentiment is None:
            raise InvalidInput("nothing to re-label: give a category, an intent or a sentiment")
        now = self._clock.now()
        unchanged: RelabelOutcome | None = None
        with self._uow() as uow:
            target = uow.corrections.message(org_id, inbound_email_id)
            _authorize_relabel(uow, actor, target)
            if target.labels is None or target.status != InboundStatus.PROCESSED:
                raise InvalidInput(
                    f"inbound email {inbound_email_id} is not classified yet (status "
                    f"{target.status}); re-label it once the pipeline has processed it"
                )
            if card_id is not None and target.card_id != card_id:
                raise InvalidInput(
                    f"card {card_id} was not made from inbound email {inbound_email_id}; "
                    "re-label the message from its own card"
                )
            card_id = target.card_id
            before = target.labels
            after = LabelSet(
                category=chosen_category or before.category,
                intent=chosen_intent or _implied_intent(before, chosen_category),
                sentiment=chosen_sentiment or before.sentiment,
            )
            if after == before:
                unchanged = RelabelOutcome(
                    inbound_email_id=inbound_email_id,
                    card_id=card_id,
                    changed=False,
                    correction_id=None,
                    before=before,
                    after=after,
                    effects=[f"nothing changed: the message is already {after.words()}"],
                )
            else:
                who = uow.users.find(org_id, actor.user_id) if actor is not None else None
                by = f"{who.label} (user {who.id})" if who is not None else "an API client"
                uow.corrections.set_labels(
                    org_id,
                    inbound_email_id,
                    after,
                    decided_detail=f"re-labelled by {by}"[:200],
                    reason=f"re-labelled by {by}; was {before.words()}"[:500],
                    now=now,
                )
                effects = [f"labels {before.words()} → {after.words()}"]
                effects += self._reapply(uow, target, before, after, now=now)
                domain = sender_domain(target.from_email)
                note = "; ".join(effects[1:]) or LABELS_ONLY
                correction_id = uow.corrections.add(
                    NewCorrection(
                        org_id=org_id,
                        inbound_email_id=inbound_email_id,
                        card_id=card_id,
                        user_id=who.id if who is not None else None,
                        sender_email=sender_address(target.from_email),
                        sender_domain=domain,
                        before=before,
                        after=after,
                        note=note[:2000],
                        created_at=now,
                    )
                )
                proposal_id = None
                if after.category is not before.category:
                    proposal_id, proposed = self._propose(
                        uow, org_id, target, after.category, now=now
                    )
                    if proposed is not None:
                        effects.append(proposed)
                if card_id is not None:
                    card = uow.cards.get(org_id, card_id)
                    payload = {
                        **card.action_payload,
                        "category": after.category.value,
                        "intent": after.intent.value,
                        "sentiment": after.sentiment.value,
                        "relabelled": {
                            "by": who.id if who is not None else None,
                            "at": now.isoformat(),
                            "before": before.model_dump(mode="json"),
                            "after": after.model_dump(mode="json"),
                        },
                        "relabel_note": note,
                    }
                    uow.cards.update_fields(org_id, card_id, now=now, action_payload=payload)
                uow.commit()
        if unchanged is not None:
            if card_id is not None and self._presenting is not None:
                self._presenting.show_card(org_id, card_id)
            return unchanged
        log.info(
            "inbound email re-labelled",
            extra={
                "org_id": org_id,
                "email_id": inbound_email_id,
                "correction_id": correction_id,
                "category": after.category.value,
            },
        )
        if card_id is not None and self._presenting is not None:
            self._presenting.show_card(org_id, card_id)
        return RelabelOutcome(
            inbound_email_id=inbound_email_id,
            card_id=card_id,
            changed=True,
            correction_id=correction_id,
            before=before,
            after=after,
            effects=effects,
            proposal_id=proposal_id,
        )

    def _reapply(
        self,
        uow: CorrectionsUnitOfWork,
        target: RelabelTarget,
        before: LabelSet,
        after: LabelSet,
        *,
        now: datetime,
    ) -> list[str]:
        """Re-apply what the labels decide; return what changed, in words."""
        detection, _ = read_detection(target.detection)
        kind = detection.kind if detection is not None else MessageKind.ORDINARY
        own = target.sent_by_us or (detection is not None and detection.from_own_rep)
        if own:
            return ["our own rep's mail: nothing is acted on"]
        if kind is not MessageKind.ORDINARY:
            return [f"an automatic message ({kind.value}): what the detectors did stays"]
        effects: list[str] = []
        org_id, email_id = target.org_id, target.id
        if after.wants_out and not before.wants_out:
            effects.append(self._opt_out(uow, target, after, now=now))
        elif before.wants_out and not after.wants_out:
            effects.append(self._undo_opt_out(uow, target, detection, now=now))
        # The reply's engagement event follows the labels (the pipeline records none for a
        # removal request, and one from the sentiment and intent for any other reply).
        if target.contact_id is not None and marks_send_replied(detection):
            wanted = None if after.wants_out else reply_event(after.sentiment, after.intent)
            recorded = [
                event
                for _, contact, event, _ in uow.engagement.message_events(org_id, email_id)
                if contact == target.contact_id and event in REPLY_EVENTS
            ]
            stale = [event for event in recorded if event is not wanted]
            if stale:
                retract_engagements(
                    uow.engagement,
                    org_id=org_id,
                    inbound_email_id=email_id,
                    contact_id=target.contact_id,
                    events=stale,
                )
            if wanted is not None and wanted not in recorded:
                record_engagements(
                    uow.engagement,
                    org_id=org_id,
                    events=[
                        EngagementInput(
                            contact_id=target.contact_id,
                            event=wanted,
                            occurred_at=target.received_at or now,
                            sentiment=after.sentiment.value,
                            email_send_id=target.email_send_id,
                            inbound_email_id=email_id,
                        )
                    ],
                )
            if stale or (wanted is not None and wanted not in recorded):
                was = ", ".join(e.value.replace("_", " ") for e in stale) or "nothing"
                now_is = wanted.value.replace("_", " ") if wanted is not None else "nothing"
                effects.append(f"engagement: {was} → {now_is}")
        if after.sentiment is not before.sentiment and not after.wants_out:
            if uow.corrections.set_reply_sentiment(org_id, email_id, after.sentiment):
                effects.append(f"the conversation's reply sentiment is now {after.sentiment.value}")
        return effects

    def _opt_out(
        self, uow: CorrectionsUnitOfWork, target: RelabelTarget, after: LabelSet, *, now: datetime
    ) -> str:
        contact_id = target.sender_contact_id
        if contact_id is None:
            return f"no opt-out: {target.from_email or 'the sender'} is not one of our contacts"
        org_id = target.org_id
        running = [e.id for e in uow.inbound_actions.enrollments(org_id, contact_id)]
        outcome = opt_out_in(
            uow,
            org_id,
            contact_id,
            source=f"re-label of inbound email {target.id}",
            at=now,
            inbound_email_id=target.id,
        )
        if outcome is None:
            return f"no opt-out: contact {contact_id} no longer exists"
        if running:
            uow.inbound_actions.set_stop_email(org_id, running, email_id=target.id)
        uow.corrections.append_action(
            org_id,
            target.id,
            action="opted_out",
            reason=f"re-labelled {after.category.value} by a rep",
            contact_id=contact_id,
            enrollment_ids=running,
            at=now,
        )
        if outcome.already_opted_out:
            return f"{outcome.email} was already opted out"
        return (
            f"opted out {outcome.email}: {outcome.stopped_enrollments} enrollment(s) stopped, "
            f"{outcome.cancelled_sends} queued email(s) cancelled"
        )

    def _undo_opt_out(
        self,
        uow: CorrectionsUnitOfWork,
        target: RelabelTarget,
        detection: Any,
        *,
        now: datetime,
    ) -> str:
        org_id = target.org_id
        via_address = (
            detection is not None
            and detection.unsubscribe is not None
            and detection.unsubscribe.via is UnsubscribeVia.ADDRESS
        )
        made = [
            contact
            for _, contact, event, _ in uow.engagement.message_events(org_id, target.id)
            if event is EngagementEvent.OPTED_OUT
        ]
        if via_address:
            return (
                "the opt-out stays: the contact used the unsubscribe address of our emails, "
                "which is their own choice, whatever the message says"
            )
        if not made:
            contact_id = target.sender_contact_id
            summary = uow.opt_outs.summary(org_id, contact_id) if contact_id else None
            if summary is not None and summary.opted_out_at is not None:
                return (
                    f"the opt-out of {summary.email} stays: this message did not make it "
                    "(the unsubscribe link or another message did)"
                )
            return "no opt-out to undo"
        words = []
        for contact_id in made:
            summary = uow.opt_outs.summary(org_id, contact_id)
            if summary is None or summary.opted_out_at is None:
                continue
            uow.opt_outs.undo_opt_out(org_id, contact_id, at=now)
            retract_engagements(
                uow.engagement,
                org_id=org_id,
                inbound_email_id=target.id,
                contact_id=contact_id,
                events=[EngagementEvent.OPTED_OUT],
            )
            uow.corrections.append_action(
                org_id,
                target.id,
                action="opt_out_undone",
                reason="re-labelled by a rep: not a removal request",
                contact_id=contact_id,
                enrollment_ids=[],
                at=now,
            )
            words.append(
                f"opt-out undone: {summary.email} can be emailed again (the enrollments and "
                "queued emails the opt-out stopped stay stopped; enroll them again if wanted)"
            )
        return "; ".join(words) or "no opt-out to undo"

    def labels_of_card(self, org_id: int, card_id: int) -> tuple[int, LabelSet]:
        """Return the message a card was made from and its labels now (for a re-label form)."""
        with self._uow() as uow:
            email_id = uow.corrections.card_message(org_id, card_id)
            if email_id is None:
                raise InvalidInput(
                    f"card {card_id} was not made from an inbound email: there is nothing to "
                    "re-label"
                )
            target = uow.corrections.message(org_id, email_id)
        if target.labels is None:
            raise InvalidInput(
                f"inbound email {email_id} is not classified yet; re-label it once it is"
            )
        return email_id, target.labels

    # --- what reps taught -----------------------------------------------------------------

    def list_corrections(
        self, org_id: int, *, limit: int = 50, offset: int = 0
    ) -> list[CorrectionView]:
        """Return the organization's corrections, newest first."""
        with self._uow() as uow:
            return uow.corrections.list(org_id, limit=min(limit, MAX_LISTED), offset=offset)

    def recent_examples(self, org_id: int, *, limit: int = MAX_EXAMPLES) -> list[CorrectionExample]:
        """Return the organization's latest corrections as classifier examples, newest first."""
        with self._uow() as uow:
            return uow.corrections.examples(org_id, limit=limit)

    # --- rule proposals -------------------------------------------------------------------

    def _propose(
        self,
        uow: CorrectionsUnitOfWork,
        org_id: int,
        target: RelabelTarget,
        category: Category,
        *,
        now: datetime,
    ) -> tuple[int | None, str | None]:
        """Propose a rule when the sender (or its domain) reached `propose_after` identical
        corrections; return the proposal's id and a sentence when one was opened."""
        address = sender_address(target.from_email)
        if address is None:
            return None, None
        domain = sender_domain(address)
        candidates: list[tuple[RuleType, str, int]] = []
        same_sender = uow.corrections.count_same(org_id, category, sender_email=address)
        if same_sender.messages >= self._propose_after:
            candidates.append((RuleType.SENDER_EMAIL, address, same_sender.messages))
        if domain is not None and proposable_domain(domain):
            same_domain = uow.corrections.count_same(org_id, category, sender_domain=domain)
            # A domain rule once people of that domain (not one person) were corrected alike.
            if same_domain.messages >= self._propose_after and same_domain.senders > 1:
                candidates.insert(0, (RuleType.SENDER_DOMAIN, domain, same_domain.messages))
        for rule_type, pattern, count in candidates:
            existing = uow.classifier_rules.find(org_id, rule_type=rule_type, pattern=pattern)
            if existing is not None:
                continue  # a rule already decides this sender's mail
            proposal, opened = uow.rule_proposals.upsert(
                org_id,
                rule_type=rule_type,
                pattern=pattern,
                category=category,
                corrections=count,
                now=now,
            )
            if not opened:
                return proposal.id, None
            if self._notify:
                for admin in uow.users.list_admins(org_id):
                    if admin.slack_user_id:
                        uow.chat_notices.queue(
                            org_id,
                            NOTICE_RULE_PROPOSAL,
                            {"proposal_id": proposal.id, "user_id": admin.id},
                            now=now,
                        )
            log.info(
                "rule proposed",
                extra={"org_id": org_id, "proposal_id": proposal.id, "rule_type": rule_type.value},
            )
            return proposal.id, (
                f"{count} identical corrections: rule proposed to the admins ({proposal.words()})"
            )
        return None, None

    def list_proposals(
        self, org_id: int, *, status: ProposalStatus | None = None
    ) -> list[RuleProposalView]:
        """Return the organization's rule proposals, newest first."""
        with self._uow() as uow:
            return uow.rule_proposals.list(org_id, status=status, limit=MAX_LISTED)

    def get_proposal(self, org_id: int, proposal_id: int) -> RuleProposalView:
        """Return one rule proposal, or raise NotFound."""
        with self._uow() as uow:
            return uow.rule_proposals.get(org_id, proposal_id)

    def accept_proposal(
        self, actor: Actor | None, org_id: int, proposal_id: int
    ) -> ProposalDecision:
        """Create the proposed rule (admins), once however often it is accepted."""
        _authorize(actor, org_id, "accept a proposed rule")
        now = self._clock.now()
        user_id = actor.user_id if actor is not None else None
        with self._uow() as uow:
            proposals = uow.rule_proposals
            proposal = proposals.get(org_id, proposal_id)
            if not proposals.decide(
                org_id, proposal_id, to=ProposalStatus.ACCEPTED, by=user_id, now=now
            ):
                current = proposals.get(org_id, proposal_id)
                if current.status is ProposalStatus.ACCEPTED:
                    return ProposalDecision(
                        proposal=current,
                        changed=False,
                        message=f"Already accepted: rule #{current.rule_id} files "
                        f"{current.words()}.",
                    )
                raise InvalidInput(
                    f"This proposal was dismissed ({current.words()}); add the rule with "
                    "/rules add if you want it after all."
                )
            same = uow.classifier_rules.find(
                org_id, rule_type=proposal.rule_type, pattern=proposal.pattern
            )
            if same is not None and same.category is proposal.category:
                rule_id = same.id
            else:
                # Conflict (another category), budgets and validation, as /rules add says.
                rule_id = self._rules.add_rule_in(
                    uow,
                    actor,
                    org_id,
                    rule_type=proposal.rule_type,
                    pattern=proposal.pattern,
                    category=proposal.category,
                    now=now,
                ).id
            proposals.set_rule(org_id, proposal_id, rule_id=rule_id)
            self._queue_decided(uow, org_id, proposal_id, now=now)
            uow.commit()
            accepted = proposals.get(org_id, proposal_id)
        self._rules.forget_rules(org_id)
        log.info(
            "rule proposal accepted",
            extra={"org_id": org_id, "proposal_id": proposal_id, "rule_id": rule_id},
        )
        return ProposalDecision(
            proposal=accepted,
            changed=True,
            message=f"Accepted: rule #{rule_id} now files {accepted.words()}.",
        )

    def dismiss_proposal(
        self, actor: Actor | None, org_id: int, proposal_id: int
    ) -> ProposalDecision:
        """Dismiss a proposed rule (admins); it is not proposed again."""
        _authorize(actor, org_id, "dismiss a proposed rule")
        now = self._clock.now()
        user_id = actor.user_id if actor is not None else None
        with self._uow() as uow:
            proposals = uow.rule_proposals
            proposals.get(org_id, proposal_id)
            if not proposals.decide(
                org_id, proposal_id, to=ProposalStatus.DISMISSED, by=user_id, now=now
            ):
                current = proposals.get(org_id, proposal_id)
                if current.status is ProposalStatus.DISMISSED:
                    return ProposalDecision(
                        proposal=current, changed=False, message="Already dismissed."
                    )
                raise InvalidInput(
                    f"This proposal was accepted: rule #{current.rule_id} files "
                    f"{current.words()}; remove it with /rules remove {current.rule_id} if it "
                    "is wrong."
                )
            self._queue_decided(uow, org_id, proposal_id, now=now)
            uow.commit()
            dismissed = proposals.get(org_id, proposal_id)
        return ProposalDecision(
            proposal=dismissed,
            changed=True,
            message=f"Dismissed: {dismissed.words()} will not be proposed again.",
        )

    def _queue_decided(
        self, uow: CorrectionsUnitOfWork, org_id: int, proposal_id: int, *, now: datetime
    ) -> None:
        if self._notify:
            uow.chat_notices.queue(
                org_id, NOTICE_RULE_PROPOSAL_DECIDED, {"proposal_id": proposal_id}, now=now
            )

    def record_proposal_message(
        self, org_id: int, proposal_id: int, *, channel: str, ts: str
    ) -> None:
        """Remember the first chat message that shows a proposal (to update it once decided)."""
        with self._uow() as uow:
            uow.rule_proposals.set_message(org_id, proposal_id, channel=channel, ts=ts)
            uow.commit()


def _implied_intent(before: LabelSet, category: Category | None) -> Intent:
    """The intent of a re-label that names a category but no intent: the unsubscribe intent
    goes with REMOVE, to it and away from it (as a rule's REMOVE is an unsubscribe); any
    other intent stays."""
    if category is Category.REMOVE:
        return Intent.UNSUBSCRIBE
    if category is not None and before.category is Category.REMOVE:
        if before.intent is Intent.UNSUBSCRIBE:
            return Intent.NONE
    return before.intent


def _authorize_relabel(
    uow: CorrectionsUnitOfWork, actor: Actor | None, target: RelabelTarget
) -> None:
    """Refuse a re-label by someone who may not act on the message (see `relabel`)."""
    if actor is None:
        return  # an organization-wide API token acts for the organization, as for rules
    # Imported here: domain.outreach.common imports domain.ports, which imports this module.
    from domain.outreach.common import authorize_card, person_name

    if actor.org_id != target.org_id:
        raise NotFound(f"inbound email {target.id} not found")
    if target.card_id is not None:
        authorize_card(uow, actor, uow.cards.get(target.org_id, target.card_id))
        return
    if actor.is_admin or target.mailbox_user_id == actor.user_id:
        return
    if target.mailbox_user_id is None:
        raise NotPermitted(
            f"Only an admin can re-label inbound email {target.id}: no rep's mailbox is known "
            "for it. Ask an admin of your organization."
        )
    owner = person_name(uow, target.org_id, target.mailbox_user_id)
    raise NotPermitted(
        f"Only {owner} (whose mailbox received this email) or an admin can re-label it."
    )


def _authorize(actor: Actor | None, org_id: int, verb: str) -> None:
    if actor is None:
        return  # an organization-wide API token acts as an admin, as for rules
    if actor.org_id != org_id:
        raise NotPermitted("You can only decide the rules of your own organization.")
    if not actor.is_admin:
        raise NotPermitted(f"Only an admin can {verb}; ask an admin of your organization.")
