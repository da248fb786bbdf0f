"""Understanding inbound mail: from a parsed message to a classified, linked, acted-on one.

The pipeline is a durable queue on `inbound_emails` (docs/inbound.md):

1. **Claim** (one short unit of work): parsed rows that are due (`next_attempt_at` empty or
   past) are taken under a lease (`next_attempt_at` = the lease's end), fairly across
   organizations, and their attempt count goes up. A row whose process died under it
   comes back when its lease ends; one that died `MAX_PIPELINE_ATTEMPTS` times is parked.
2. **Decide** (no unit of work: the model may be slow): the detectors' verdict first
   (bounces, complaints, automatic answers, unsubscribe requests), then the org's rules,
   then the model (Claude when configured, else the offline model), then the org's
   confidence threshold. When Claude cannot be reached the offline model answers at once
   and the row is queued to be classified again (`reclassify_at`) when Claude is back.
3. **Record** (one unit of work for the batch; one per message if the batch fails): link
   the message to our send, conversation, contact or client, write the classification,
   act (`domain.inbound_actions`), and finish the row as `processed`, all at once, so a
   crash before the commit leaves nothing half done and a crash after it repeats nothing.

A message that fails is retried with a growing delay; its fifth failure parks it as
`failed` with the reason (`error`), visible in the API and `/healthz`, until
`salesbot inbound reclassify --status failed` puts it back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain import faults
from domain.classification import (
    Category,
    Classification,
    ClassifyRequest,
    CorrectionExample,
    escalate_if_unsure,
)
from domain.clock import Clock
from domain.conversations import (
    Link,
    LinkedBy,
    LinkQuery,
    link_keys,
    link_message,
    marks_send_replied,
    reported_addresses,
)
from domain.detection import Detection, MessageKind
from domain.email_message import EmailFlag
from domain.engagement import EngagementInput, record_engagements
from domain.errors import ExternalServiceError
from domain.inbound import retry_delay
from domain.inbound_actions import OUR_SEND_WINDOW, ActingOn, act, withheld
from domain.reply_cards import make_reply_card
from domain.reply_routing import sender_note

if TYPE_CHECKING:
    from domain.ports import (
        IntentReader,
        MessageClassifier,
        UnderstandingUnitOfWork,
        UnsubscribeTokenReader,
    )
    from domain.rules import Rules

log = logging.getLogger(__name__)

#: Failures of one message before it is parked as `failed` (a person retries it).
MAX_PIPELINE_ATTEMPTS: Final = 5
#: Characters of a message's text given to a model; the rest is cut, with a note.
MAX_MODEL_TEXT: Final = 8_000
#: Characters of the subject given to the rules and the model.
MAX_SUBJECT: Final = 998
#: The first wait before a message classified offline (Claude away) is asked of Claude again.
RECLASSIFY_FIRST: Final = timedelta(minutes=2)
#: The longest wait between later asks while Claude stays away: the pipeline's retries
#: double up to hours, but an ask during an outage costs nothing (the classifier's breaker
#: answers at once), and Claude's return should reach every waiting message within minutes.
RECLASSIFY_LONGEST: Final = timedelta(minutes=10)
#: Characters of a failure's reason kept on the row.
MAX_ERROR: Final = 500
#: The organization's latest re-labels by its reps given to the model as examples (the
#: classifier clips each one's text): recent teaching, at a bounded cost per message.
MAX_EXAMPLES: Final = 8


# --- what the pipeline reads and writes ---------------------------------------------------


@dataclass(frozen=True)
class InboundMessage:
    """A claimed inbound message, as the pipeline reads it (text already bounded)."""

    id: int
    org_id: int
    attempts: int
    lease_until: datetime
    from_email: str | None
    from_name: str | None
    to_emails: tuple[str, ...]
    subject: str
    # The new text of the reply (quoted history removed), or the whole body when none.
    text: str
    # True when `text` was longer than the pipeline reads (cut to MAX_MODEL_TEXT).
    text_truncated: bool
    received_at: datetime | None
    gmail_thread_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    # The detectors' findings as stored at parse time ({} → they did not run).
    detection: dict[str, Any]
    threshold: float
    # Gmail labelled it SENT: a rep sent it (by hand, or our outbox's copy in their mailbox).
    sent_by_us: bool = False
    # The parser's flags (domain.email_message.EmailFlag values): hidden text, ...
    flags: tuple[str, ...] = ()
    # What we sent them, when it answers one of our sends (for the model): subject, campaign.
    context: str | None = None
    # The conversation an earlier run put it in (its reply is counted there already).
    conversation_id: int | None = None
    # A processed message claimed again to be classified by Claude (it was away).
    reclassifying: bool = False
    # Why the sender fails authentication (domain.mail_auth), or None when nothing fails.
    auth_failure: str | None = None
    # The message's own Message-ID header (a reply to it names it in In-Reply-To).
    message_id: str | None = None


@dataclass(frozen=True)
class Decided:
    """The decision about one message, before it is recorded."""

    classification: Classification
    notes: tuple[str, ...] = ()
    # When to ask Claude again (it was unreachable); None when this decision is final.
    reclassify_at: datetime | None = None


@dataclass(frozen=True)
class _CardDue:
    """A message whose card is made once the batch's engagement is recorded."""

    message: InboundMessage
    classification: Classification
    detection: Detection | None
    link: Link
    provisional: bool


@dataclass(frozen=True)
class Recorded:
    """What the record step writes for one message."""

    classification: Classification
    link: Link
    conversation_id: int | None
    actions: list[dict[str, Any]]
    notes: tuple[str, ...]
    reclassify_at: datetime | None


# --- what the API shows -------------------------------------------------------------------


class InboundLinks(BaseModel):
    """What a message was linked to."""

    model_config = ConfigDict(frozen=True)

    linked_by: str | None = None
    email_send_id: int | None = None
    campaign_id: int | None = None
    job_id: int | None = None
    contact_id: int | None = None
    client_id: int | None = None
    conversation_id: int | None = None


class DetectionSummary(BaseModel):
    """The detectors' verdict in short."""

    model_config = ConfigDict(frozen=True)

    ran: bool
    kind: str | None = None
    bounce_severity: str | None = None
    failed_recipients: list[str] = Field(default_factory=list)
    out_of_office_until: str | None = None
    unsubscribe_via: str | None = None
    from_own_rep: bool = False
    notes: list[str] = Field(default_factory=list)


class InboundEmailSummary(BaseModel):
    """One inbound email in a list."""

    model_config = ConfigDict(frozen=True)

    id: int
    status: str
    received_at: datetime | None
    from_email: str | None
    from_name: str | None
    subject: str | None
    category: str | None
    confidence: float | None
    sentiment: str | None
    intent: str | None
    decided_by: str | None
    injection_attempt: bool
    linked: bool
    email_send_id: int | None
    contact_id: int | None
    processed_at: datetime | None
    error: str | None


class InboundEmailDetail(InboundEmailSummary):
    """One inbound email with everything the pipeline decided and did."""

    decided_detail: str | None
    classification_reason: str | None
    sentiment_score: float | None
    entities: dict[str, Any]
    notes: list[str]
    links: InboundLinks
    actions: list[dict[str, Any]]
    detection: DetectionSummary
    pipeline_attempts: int
    reclassify_at: datetime | None
    # The message's new text (the org's own mail), cut to `REPLY_TEXT_SHOWN` characters.
    reply_text: str | None
    reply_text_truncated: bool


#: Characters of a message's text the API returns.
REPLY_TEXT_SHOWN: Final = 4_000


@dataclass(frozen=True)
class InboundFilter:
    """Filters of the inbound list."""

    category: str | None = None
    intent: str | None = None
    sentiment: str | None = None
    linked: bool | None = None
    status: str | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class RequeueCounts:
    """What `salesbot inbound reclassify` put back in the queue."""

    processed: int = 0
    failed: int = 0
    parsed: int = 0

    @property
    def total(self) -> int:
        """How many rows were put back."""
        return self.processed + self.failed + self.parsed


def summarize_detection(raw: dict[str, Any]) -> DetectionSummary:
    """Return the detectors' verdict in short (ran=False when they did not run)."""
    detection = read_detection(raw)[0]
    if detection is None:
        return DetectionSummary(ran=False)
    bounce = detection.bounce
    return DetectionSummary(
        ran=True,
        kind=detection.kind.value,
        bounce_severity=(
            ("hard" if bounce.is_hard else bounce.recipients[0].severity.value)
            if bounce is not None and bounce.recipients
            else None
        ),
        failed_recipients=list(reported_addresses(detection)),
        out_of_office_until=(
            detection.auto_reply.return_date.isoformat()
            if detection.auto_reply is not None and detection.auto_reply.return_date
            else None
        ),
        unsubscribe_via=detection.unsubscribe.via.value if detection.unsubscribe else None,
        from_own_rep=detection.from_own_rep,
        notes=list(detection.notes),
    )


def read_detection(raw: dict[str, Any]) -> tuple[Detection | None, tuple[str, ...]]:
    """Return the stored Detection and notes; None when the detectors did not run."""
    if not raw:
        return None, ("the detectors did not run on this message; read as a person's",)
    try:
        return Detection.model_validate(raw), ()
    except ValidationError:
        return None, ("the stored detection could not be read; read as a person's",)


def bounded_subject(subject: str | None) -> str:
    """Return the subject as rules and models read it."""
    return (subject or "")[:MAX_SUBJECT]


def _error_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR] if text else type(exc).__name__


# --- the service --------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineSettings:
    """Bounds of one pipeline round."""

    batch_size: int = 100
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = MAX_PIPELINE_ATTEMPTS


@dataclass
class RoundOutcome:
    """What one round did (for logs and benches)."""

    claimed: int = 0
    processed: int = 0
    failed: int = 0
    parked: int = 0
    skipped: int = 0
    reclassified: int = 0
    errors: dict[int, str] = field(default_factory=dict)
    #: Decisions made this round by who made them (detector, rule, claude, offline).
    decided_by: Counter[str] = field(default_factory=Counter)
    #: What recording the round's messages did (opted_out, marked_bounced...), once committed.
    actions: Counter[str] = field(default_factory=Counter)


class Understanding:
    """The inbound pipeline after `parsed`: claim, decide, link, act, record."""

    def __init__(
        self,
        uow: Callable[[], UnderstandingUnitOfWork],
        *,
        clock: Clock,
        model: MessageClassifier,
        offline: MessageClassifier,
        rules: Rules | None = None,
        unsubscribe_tokens: UnsubscribeTokenReader | None = None,
        settings: PipelineSettings | None = None,
        intents: IntentReader | None = None,
    ) -> None:
        self._uow = uow
        # Reads a reply's referrals, proposed times and resume date for its card.
        self._intents = intents
        self._clock = clock
        self._model = model
        self._offline = offline
        self._rules = rules
        self._tokens = unsubscribe_tokens
        self.settings = settings or PipelineSettings()

    @property
    def reclassifies(self) -> bool:
        """True when messages classified offline wait for a model that may come back."""
        return self._model is not self._offline

    # -- the queue ------------------------------------------------------------------------

    def run_once(self, *, org_id: int | None = None) -> RoundOutcome:
        """Claim a batch of parsed messages (else of messages to re-classify) and process it.

        `org_id` claims only that organization's parsed messages, and no re-classification
        (`salesbot inbound reclassify --org` runs what it queued, not other organizations').
        """
        now = self._clock.now()
        lease_until = now + self.settings.lease
        with self._uow() as uow:
            parked = uow.inbound_pipeline.park_exhausted(
                max_attempts=self.settings.max_attempts, now=now
            )
            claimed = uow.inbound_pipeline.claim(
                limit=self.settings.batch_size,
                now=now,
                lease_until=lease_until,
                max_attempts=self.settings.max_attempts,
                org_id=org_id,
            )
            if not claimed and self.reclassifies and org_id is None:
                claimed = uow.inbound_pipeline.claim_reclassifications(
                    limit=self.settings.batch_size, now=now, lease_until=lease_until
                )
            uow.commit()
        outcome = RoundOutcome(claimed=len(claimed), parked=parked)
        if not claimed:
            return outcome
        faults.reach("understanding.claimed")
        self._process(claimed, outcome)
        faults.reach("understanding.recorded")
        return outcome

    def _process(self, messages: Sequence[InboundMessage], outcome: RoundOutcome) -> None:
        decided, errors = self.decide(messages)
        outcome.decided_by.update(d.classification.decided_by.value for d in decided.values())
        ready = [m for m in messages if m.id in decided]
        try:
            acted: Counter[str] = Counter()
            with self._uow() as uow:
                done = self._record_all(uow, ready, decided, now=self._clock.now(), acted=acted)
                uow.commit()
            outcome.actions.update(acted)
            outcome.processed += done
            outcome.skipped += len(ready) - done
        except Exception:  # noqa: BLE001 - the batch is retried a message at a time below
            log.warning("inbound batch record failed; recording one at a time", exc_info=True)
            outcome.processed = outcome.skipped = 0
            for message in ready:
                try:
                    acted = Counter[str]()
                    with self._uow() as uow:
                        done = self._record_all(
                            uow, [message], decided, now=self._clock.now(), acted=acted
                        )
                        uow.commit()
                    outcome.actions.update(acted)
                    outcome.processed += done
                    outcome.skipped += 1 - done
                except Exception as exc:  # noqa: BLE001 - kept on the row and retried
                    log.exception("inbound message record failed", extra={"email_id": message.id})
                    errors[message.id] = _error_text(exc)
        outcome.reclassified = sum(1 for m in ready if m.reclassifying and m.id not in errors)
        if errors:
            self._fail(messages, errors, outcome)

    def _fail(
        self, messages: Sequence[InboundMessage], errors: dict[int, str], outcome: RoundOutcome
    ) -> None:
        now = self._clock.now()
        by_id = {m.id: m for m in messages}
        with self._uow() as uow:
            for email_id, error in errors.items():
                message = by_id[email_id]
                parked = uow.inbound_pipeline.fail(
                    email_id,
                    error=error,
                    lease_until=message.lease_until,
                    parked=message.attempts >= self.settings.max_attempts,
                    next_attempt_at=now + _next_try(message),
                    reclassifying=message.reclassifying,
                )
                outcome.failed += 1
                outcome.parked += parked
                log.warning(
                    "inbound message failed",
                    extra={
                        "email_id": email_id,
                        "attempts": message.attempts,
                        "parked": parked,
                        "reason": error,
                    },
                )
            uow.commit()
        outcome.errors.update(errors)

    # -- deciding --------------------------------------------------------------------------

    def decide(
        self, messages: Sequence[InboundMessage]
    ) -> tuple[dict[int, Decided], dict[int, str]]:
        """Classify messages (outside any unit of work); return decisions and failures."""
        decided: dict[int, Decided] = {}
        errors: dict[int, str] = {}
        to_model: list[tuple[InboundMessage, tuple[str, ...]]] = []
        for message in messages:
            try:
                settled = self._settle(message)
            except Exception as exc:  # noqa: BLE001 - one message's failure is its own
                log.exception("inbound message decision failed", extra={"email_id": message.id})
                errors[message.id] = _error_text(exc)
                continue
            if isinstance(settled, Decided):
                decided[message.id] = settled
            else:
                to_model.append((message, settled))
        # The rep's own outgoing mail (Gmail label SENT) is never acted on: the offline model
        # records what it is, and Claude is not paid to read our own emails.
        ours = [(m, n) for m, n in to_model if m.sent_by_us]
        theirs = [(m, n) for m, n in to_model if not m.sent_by_us]
        if theirs:
            self._ask_models(theirs, decided, errors, model=self._model)
        if ours:
            self._ask_models(ours, decided, errors, model=self._offline)
        return decided, errors

    def _settle(self, message: InboundMessage) -> Decided | tuple[str, ...]:
        """Decide without a model when detectors or rules can; else return the notes so far."""
        detection, notes = read_detection(message.detection)
        if message.text_truncated:
            notes += (f"text cut to {MAX_MODEL_TEXT} characters before classification",)
        if message.sent_by_us or (detection is not None and detection.from_own_rep):
            notes += ("sent by one of our reps: recorded, not acted on",)
        settled = detection.classification() if detection is not None else None
        if detection is not None and settled is not None:
            detail = _detector_detail(detection, settled)
            return Decided(settled.model_copy(update={"decided_detail": detail}), notes)
        if self._rules is not None and not message.reclassifying:
            ruled = self._rules.classify(
                message.org_id,
                sender_email=message.from_email,
                subject=bounded_subject(message.subject),
            )
            if ruled is not None:
                return Decided(ruled, notes)
        return notes

    def _ask_models(
        self,
        batch: list[tuple[InboundMessage, tuple[str, ...]]],
        decided: dict[int, Decided],
        errors: dict[int, str],
        *,
        model: MessageClassifier,
    ) -> None:
        examples = (
            self._examples({m.org_id for m, _ in batch}) if model is not self._offline else {}
        )
        requests = [_request(m, examples.get(m.org_id, ())) for m, _ in batch]
        try:
            answers = model.classify_many(requests)
        except ExternalServiceError as exc:
            answers = [exc for _ in requests]
        except Exception as exc:  # noqa: BLE001 - the batch's messages fail and are retried
            log.exception("inbound classification failed", extra={"count": len(batch)})
            for message, _ in batch:
                errors[message.id] = _error_text(exc)
            return
        now = self._clock.now()
        away = [i for i, answer in enumerate(answers) if isinstance(answer, ExternalServiceError)]
        offline: dict[int, Classification | ExternalServiceError] = {}
        if away and model is not self._offline:
            offline_answers = self._offline.classify_many([requests[i] for i in away])
            offline = dict(zip(away, offline_answers, strict=True))
        for i, ((message, notes), answer) in enumerate(zip(batch, answers, strict=True)):
            reclassify_at: datetime | None = None
            if isinstance(answer, ExternalServiceError):
                fallback = offline.get(i, answer)
                if isinstance(fallback, ExternalServiceError) or message.reclassifying:
                    # Asked again while Claude is still away: keep the offline decision.
                    if message.reclassifying:
                        errors[message.id] = f"the model is still unreachable: {answer.message}"
                    else:
                        errors[message.id] = f"no model could classify it: {answer.message}"
                    continue
                notes += (
                    f"{model.name} unreachable ({answer.message[:120]}); classified "
                    "offline, to be classified again when it answers",
                )
                answer = fallback
                reclassify_at = now + RECLASSIFY_FIRST
            result = escalate_if_unsure(answer, threshold=message.threshold)
            decided[message.id] = Decided(result, notes, reclassify_at)

    def _examples(self, org_ids: set[int]) -> dict[int, tuple[CorrectionExample, ...]]:
        """The organizations' latest corrections by their reps, as examples for the model.

        Examples help the model; they are not needed to classify, so a failure to read them
        is logged and the messages are classified without.
        """
        try:
            with self._uow() as uow:
                found = uow.corrections.examples_for(sorted(org_ids), limit=MAX_EXAMPLES)
        except Exception:  # noqa: BLE001 - classified without examples, and said in the log
            log.exception("reading reps' corrections failed", extra={"orgs": sorted(org_ids)})
            return {}
        return {org_id: tuple(rows) for org_id, rows in found.items()}

    # -- recording -------------------------------------------------------------------------

    def _record_all(
        self,
        uow: UnderstandingUnitOfWork,
        messages: Sequence[InboundMessage],
        decided: dict[int, Decided],
        *,
        now: datetime,
        acted: Counter[str] | None = None,
    ) -> int:
        """Record messages claimed together; return how many this claim still held
        (`acted` counts the actions taken, by name).

        The rows are locked in one statement and everything linking may look up is fetched
        in a few queries per organization, so a message costs a statement or two, not ten.
        """
        if not messages:
            return 0
        first = messages[0]
        held = uow.inbound_pipeline.hold(
            [m.id for m in messages],
            lease_until=first.lease_until,
            reclassifying=first.reclassifying,
        )
        by_org: dict[int, list[tuple[LinkQuery, Detection | None]]] = {}
        for message in messages:
            by_org.setdefault(message.org_id, []).append(
                (_link_query(message), read_detection(message.detection)[0])
            )
        for org_id, items in by_org.items():
            uow.conversations.prefetch(org_id, link_keys(items, now=now))
        links = {
            m.id: link_message(
                uow.conversations, _link_query(m), read_detection(m.detection)[0], now=now
            )
            for m in messages
            if m.id in held
        }
        contacts: dict[int, set[int]] = {}
        for message in messages:
            link = links.get(message.id)
            if link is not None and link.contact_id is not None:
                contacts.setdefault(message.org_id, set()).add(link.contact_id)
        for org_id, contact_ids in contacts.items():
            uow.inbound_actions.prefetch(org_id, sorted(contact_ids))
        done = 0
        events: dict[int, list[EngagementInput]] = {}
        cards: list[_CardDue] = []
        for message in messages:
            if message.id in links:
                done += self._record(
                    uow,
                    message,
                    decided[message.id],
                    link=links[message.id],
                    held=held,
                    events=events.setdefault(message.org_id, []),
                    cards=cards,
                    now=now,
                    acted=acted,
                )
        uow.conversations.flush()
        uow.inbound_pipeline.flush()
        re_engaging: set[int] = set()  # the messages that re-engaged their stale client
        for org_id, org_events in events.items():
            if org_events:
                changes = record_engagements(uow.engagement, org_id=org_id, events=org_events)
                re_engaging.update(
                    item.inbound_email_id
                    for item, change in zip(org_events, changes, strict=True)
                    if change is not None
                    and change.re_engaged_client_id is not None
                    and item.inbound_email_id is not None
                )
        # Cards last: whether the reply re-engaged its client is known once it is scored.
        for due in cards:
            make_reply_card(
                uow,
                due.message,
                due.classification,
                due.detection,
                due.link,
                now=now,
                intents=self._intents,
                re_engaged=due.message.id in re_engaging,
                provisional=due.provisional,
            )
        return done

    def _record(
        self,
        uow: UnderstandingUnitOfWork,
        message: InboundMessage,
        decision: Decided,
        *,
        link: Link,
        held: dict[int, list[dict[str, Any]]],
        events: list[EngagementInput],
        cards: list[_CardDue],
        now: datetime,
        acted: Counter[str] | None = None,
    ) -> bool:
        """Act on and record one linked message in the caller's unit of work."""
        pipeline = uow.inbound_pipeline
        earlier = held.get(message.id)
        if earlier is None:
            return False
        detection, _ = read_detection(message.detection)
        result = decision.classification
        if message.sent_by_us:  # the rep's own mail: linked and recorded, never acted on
            detection = (detection or Detection()).model_copy(update={"from_own_rep": True})
        own = detection is not None and detection.from_own_rep
        replied = marks_send_replied(detection) and not own
        conversation_id: int | None = None
        if link.send is not None and not message.sent_by_us:
            conversation_id = uow.conversations.attach(
                message.org_id,
                message.id,
                send=link.send,
                thread_id=link.send.gmail_thread_id or message.gmail_thread_id,
                at=message.received_at or now,
                sentiment=result.sentiment.value if replied else None,
                is_reply=replied,
                counted=message.conversation_id is not None,
            )
            if replied:
                uow.conversations.mark_replied(
                    message.org_id,
                    link.send.id,
                    email_id=message.id,
                    at=message.received_at or now,
                    sentiment=result.sentiment.value,
                )
        reported, unknown = _our_recipients(uow, message, detection, link, now=now)
        sender = (
            uow.conversations.contact_by_address(message.org_id, message.from_email)
            if message.from_email
            else None
        )
        on = ActingOn(
            email_id=message.id,
            org_id=message.org_id,
            detection=detection,
            classification=result,
            link=link,
            received_at=message.received_at,
            reported_contact_ids=reported,
            unknown_reported=unknown,
            sender_contact_id=sender.id if sender is not None else None,
            token_contact_id=self._token_contact(message, detection),
            final=decision.reclassify_at is None,
            auth_failure=message.auth_failure,
        )
        escalation, withheld_notes = withheld(on)
        if escalation is not None:
            result = result.model_copy(update={"category": Category.ESCALATE, "reason": escalation})
            on = replace(on, classification=result)
        actions = act(uow, on, now=now, events=events)
        if acted is not None:
            acted.update(str(action["action"]) for action in actions)
        card_notes: tuple[str, ...] = ()
        if not own and not message.sent_by_us:
            # A provisional (offline) classification makes only a card for a person: an AMC
            # order must not wait for Claude to come back.
            cards.append(_CardDue(message, result, detection, link, provisional=not on.final))
        if on.final and not own and not message.sent_by_us:
            stranger = sender_note(link, result.category)
            if stranger and (detection is None or detection.kind is MessageKind.ORDINARY):
                card_notes = (stranger,)
        pipeline.record(
            message.id,
            Recorded(
                classification=result,
                link=link,
                conversation_id=conversation_id,
                actions=actions,
                notes=decision.notes
                + withheld_notes
                + result.notes
                + ((f"linked by: {link.linked_by.value}",) if link.linked_by else ())
                + card_notes,
                reclassify_at=decision.reclassify_at,
            ),
            earlier_actions=earlier,
            now=now,
        )
        return True

    def _token_contact(self, message: InboundMessage, detection: Detection | None) -> int | None:
        if detection is None or detection.unsubscribe is None or self._tokens is None:
            return None
        token = detection.unsubscribe.token
        named = self._tokens.read(token) if token else None
        if named is None or named[0] != message.org_id:
            return None
        return named[1]

    # -- re-running ------------------------------------------------------------------------

    def requeue(
        self, *, since: datetime, org_id: int | None = None, status: str | None = None
    ) -> RequeueCounts:
        """Put processed (or parked, or parsed) messages received since a date back in the queue.

        Idempotent: running it twice queues the same rows once more; each is processed again
        and its actions re-evaluated (nothing done twice, an opt-out never undone).
        """
        with self._uow() as uow:
            counts = uow.inbound_pipeline.requeue(
                since=since, org_id=org_id, status=status, now=self._clock.now()
            )
            uow.commit()
        return counts


def _our_recipients(
    uow: UnderstandingUnitOfWork,
    message: InboundMessage,
    detection: Detection | None,
    link: Link,
    *,
    now: datetime,
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Return the contacts of ours a bounce or complaint reports on, and the other addresses.

    A contact counts only when we mailed it: the report carries the Message-ID of one of
    our sends (that send's contact), or this org sent to the reported address within
    `OUR_SEND_WINDOW`. Anyone can name any address in a report; only our sends are proof.
    """
    addresses = reported_addresses(detection)
    if not addresses and (detection is None or detection.complaint is None):
        return (), ()
    found: list[int] = []
    if link.linked_by is LinkedBy.REPORTED_ORIGINAL and link.send is not None:
        if link.send.contact_id is not None:
            found.append(link.send.contact_id)
    unknown: list[str] = []
    since = (message.received_at or now) - OUR_SEND_WINDOW
    for address in addresses[:10]:
        send = uow.conversations.latest_send_to(message.org_id, address, since=since)
        if send is not None and send.contact_id is not None:
            if send.contact_id not in found:
                found.append(send.contact_id)
        elif not (link.send is not None and link.send.to_email == address):
            unknown.append(address)
    return tuple(found), tuple(unknown)


def _detector_detail(detection: Detection, settled: Classification) -> str:
    bounce = detection.bounce
    if bounce is not None:
        if bounce.is_hard:
            return "hard bounce"
        if bounce.recipients and all(r.severity.value == "delayed" for r in bounce.recipients):
            return "delayed delivery"
        return "soft bounce"
    return settled.decided_detail or detection.kind.value


def _link_query(message: InboundMessage) -> LinkQuery:
    return LinkQuery(
        org_id=message.org_id,
        from_email=message.from_email,
        gmail_thread_id=message.gmail_thread_id,
        in_reply_to=message.in_reply_to,
        references=message.references,
        received_at=message.received_at,
    )


def _request(
    message: InboundMessage, examples: tuple[CorrectionExample, ...] = ()
) -> ClassifyRequest:
    flags = frozenset(EmailFlag(f) for f in message.flags if f in _FLAGS)
    return ClassifyRequest(
        subject=bounded_subject(message.subject),
        body=message.text,
        from_email=message.from_email,
        from_name=message.from_name,
        to=message.to_emails[:50],
        received_at=message.received_at,
        context=message.context,
        flags=flags,
        examples=examples,
    )


_FLAGS: Final = frozenset(flag.value for flag in EmailFlag)


def _next_try(message: InboundMessage) -> timedelta:
    """How long a failed message waits: the pipeline's doubling delay, at most
    RECLASSIFY_LONGEST for a message waiting for Claude to come back."""
    delay = retry_delay(message.attempts)
    return min(delay, RECLASSIFY_LONGEST) if message.reclassifying else delay
