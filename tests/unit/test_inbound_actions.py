"""Linking and acting on an inbound message, on fakes: which send a message answers, and
what each kind of message changes (once, whatever is run again)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import pytest

from domain.classification import Category, Classification, Decider, Intent, Sentiment
from domain.conversations import (
    ContactRef,
    ConversationEntry,
    Link,
    LinkedBy,
    LinkKeys,
    LinkQuery,
    SendRef,
    link_message,
    marks_send_replied,
)
from domain.detection import (
    AutoReply,
    Bounce,
    BounceSeverity,
    Complaint,
    Detection,
    FailedRecipient,
    MessageKind,
    UnsubscribeRequest,
    UnsubscribeVia,
)
from domain.engagement import EngagementInput, record_engagements
from domain.inbound_actions import (
    AWAITING_CONFIRMATION,
    UNKNOWN_COMPLAINT,
    ActingOn,
    EnrollmentRef,
    act,
    add_business_days,
    resume_at,
    withheld,
)
from domain.suppression import ContactSummary
from tests.unit.fakes import EngagementStore, FakeEngagement

ORG = 1
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
DANA, RAY = 10, 11
JOB, OTHER_JOB = 100, 101


# --- linking --------------------------------------------------------------------------------


@dataclass
class FakeConversations:
    sends: list[tuple[SendRef, str]] = field(default_factory=list)  # (send, its Message-ID)
    contacts: dict[str, ContactRef] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def prefetch(self, org_id: int, keys: LinkKeys) -> None:
        return None

    def send_by_message_ids(self, org_id: int, message_ids: Sequence[str]) -> SendRef | None:
        self.asked.append("message_ids")
        return next((s for s, mid in self.sends if mid in message_ids), None)

    def send_by_thread(self, org_id: int, thread_id: str) -> SendRef | None:
        self.asked.append("thread")
        return next((s for s, _ in self.sends if s.gmail_thread_id == thread_id), None)

    def latest_send_to(self, org_id: int, address: str, *, since: datetime) -> SendRef | None:
        self.asked.append("latest")
        found = [s for s, _ in self.sends if s.to_email == address and (s.sent_at or NOW) >= since]
        return max(found, key=lambda s: s.sent_at or NOW) if found else None

    def contact(self, org_id: int, contact_id: int) -> ContactRef | None:
        return next((c for c in self.contacts.values() if c.id == contact_id), None)

    def contact_by_address(self, org_id: int, address: str) -> ContactRef | None:
        return self.contacts.get(address.lower())

    def client_by_domains(self, org_id: int, domains: Sequence[str]) -> int | None:
        return next((self.clients[d] for d in domains if d in self.clients), None)

    def attach(self, org_id: int, email_id: int, **_: Any) -> int | None:
        return None

    def mark_replied(self, org_id: int, send_id: int, **_: Any) -> None:
        return None

    def flush(self) -> None:
        return None

    def timeline(self, org_id: int, conversation_id: int) -> list[ConversationEntry]:
        return []


def _send(send_id: int, *, to: str = "dana@pinnacle.example", days_ago: int = 2) -> SendRef:
    return SendRef(
        id=send_id,
        contact_id=DANA,
        job_id=JOB,
        campaign_id=7,
        enrollment_id=50,
        gmail_thread_id=f"t{send_id}",
        to_email=to,
        sent_at=NOW - timedelta(days=days_ago),
    )


def _query(**overrides: Any) -> LinkQuery:
    values: dict[str, Any] = {
        "org_id": ORG,
        "from_email": "dana@pinnacle.example",
        "gmail_thread_id": None,
        "in_reply_to": None,
        "references": (),
        "received_at": NOW,
    }
    values.update(overrides)
    return LinkQuery(**values)


def test_in_reply_to_links_before_the_thread_or_the_sender() -> None:
    repo = FakeConversations(
        sends=[(_send(1), "<one@us>"), (_send(2), "<two@us>")],
        contacts={"dana@pinnacle.example": ContactRef(DANA, 3)},
    )
    link = link_message(repo, _query(in_reply_to="<two@us>", gmail_thread_id="t1"), None, now=NOW)

    assert (link.send.id if link.send else None, link.linked_by) == (2, LinkedBy.IN_REPLY_TO)
    assert (link.contact_id, link.client_id) == (DANA, 3)
    assert repo.asked == ["message_ids"]


def test_a_bounce_links_by_the_message_id_of_our_attached_original() -> None:
    repo = FakeConversations(sends=[(_send(1), "<one@us>")])
    bounce = Detection(
        kind=MessageKind.BOUNCE,
        bounce=Bounce(
            recipients=(
                FailedRecipient(
                    address="dana@pinnacle.example", severity=BounceSeverity.HARD, found_by="dsn"
                ),
            ),
            original_message_id="<one@us>",
        ),
    )
    link = link_message(repo, _query(from_email="mailer-daemon@mx.example"), bounce, now=NOW)

    assert link.linked_by is LinkedBy.REPORTED_ORIGINAL


def test_without_headers_the_latest_send_to_the_sender_within_60_days_links() -> None:
    repo = FakeConversations(
        sends=[(_send(1, days_ago=90), "<old@us>"), (_send(2, days_ago=10), "<new@us>")]
    )
    assert link_message(repo, _query(), None, now=NOW).send == _send(2, days_ago=10)
    repo = FakeConversations(sends=[(_send(1, days_ago=90), "<old@us>")])
    assert link_message(repo, _query(), None, now=NOW) == Link()


def test_a_stranger_from_a_client_subdomain_links_to_the_client() -> None:
    repo = FakeConversations(clients={"pinnacle.example": 3})
    link = link_message(repo, _query(from_email="ray@mail.pinnacle.example"), None, now=NOW)

    assert (link.client_id, link.contact_id, link.linked_by) == (
        3,
        None,
        LinkedBy.CLIENT_DOMAIN,
    )


@pytest.mark.parametrize(
    ("detection", "is_reply"),
    [
        (None, True),
        (Detection(), True),
        (Detection(kind=MessageKind.OUT_OF_OFFICE, auto_reply=AutoReply()), False),
        (Detection(kind=MessageKind.BOUNCE), False),
        (Detection(from_own_rep=True), False),
        (Detection(unsubscribe=UnsubscribeRequest(via=UnsubscribeVia.TEXT)), True),
        (Detection(unsubscribe=UnsubscribeRequest(via=UnsubscribeVia.ADDRESS, token="x")), False),
    ],
)
def test_only_a_person_s_words_mark_a_send_replied(
    detection: Detection | None, is_reply: bool
) -> None:
    assert marks_send_replied(detection) is is_reply


# --- acting ---------------------------------------------------------------------------------


@dataclass
class _Enrollment:
    id: int
    contact_id: int
    job_id: int
    status: str = "active"
    on_reply: str = "stop"
    stop_reason: str | None = None
    stop_email_id: int | None = None
    paused_until: datetime | None = None


@dataclass
class World:
    enrollments: list[_Enrollment] = field(default_factory=list)
    bounced: set[int] = field(default_factory=set)
    opted_out: dict[int, datetime] = field(default_factory=dict)
    soft_bounces: int = 0
    engagement: EngagementStore = field(default_factory=EngagementStore)

    def __post_init__(self) -> None:
        for contact_id in (DANA, RAY):
            self.engagement.add_contact(ORG, contact_id)

    def events(self) -> list[tuple[int, str, dict[str, object]]]:
        return [(r.contact_id, str(r.event), dict(r.detail)) for r in self.engagement.rows]


class FakeActions:
    def __init__(self, world: World) -> None:
        self._w = world

    def prefetch(self, org_id: int, contact_ids: Sequence[int]) -> None:
        return None

    def enrollments(self, org_id: int, contact_id: int) -> list[EnrollmentRef]:
        return [
            EnrollmentRef(e.id, e.job_id, e.status, e.on_reply)
            for e in self._w.enrollments
            if e.contact_id == contact_id and e.status in ("active", "paused")
        ]

    def _running(self, ids: Sequence[int], statuses: tuple[str, ...]) -> list[_Enrollment]:
        return [e for e in self._w.enrollments if e.id in ids and e.status in statuses]

    def stop_enrollments(
        self, org_id: int, ids: Sequence[int], *, reason: str, email_id: int, at: datetime
    ) -> list[int]:
        found = self._running(ids, ("active", "paused"))
        for e in found:
            e.status, e.stop_reason, e.stop_email_id = "stopped", reason, email_id
        return [e.id for e in found]

    def pause_enrollments(
        self,
        org_id: int,
        ids: Sequence[int],
        *,
        until: datetime | None,
        reason: str,
        email_id: int,
        at: datetime,
    ) -> list[int]:
        found = self._running(ids, ("active",))
        for e in found:
            e.status, e.paused_until, e.stop_email_id = "paused", until, email_id
        return [e.id for e in found]

    def set_stop_email(self, org_id: int, ids: Sequence[int], *, email_id: int) -> None:
        for e in self._w.enrollments:
            if e.id in ids and e.stop_email_id is None:
                e.stop_email_id = email_id

    def mark_bounced(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        first = contact_id not in self._w.bounced
        self._w.bounced.add(contact_id)
        return first


class FakeOptOuts:
    def __init__(self, world: World) -> None:
        self._w = world

    def summary(self, org_id: int, contact_id: int) -> ContactSummary | None:
        return ContactSummary(contact_id, f"c{contact_id}@x.example", "Lone Star", None)

    def mark_opted_out(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        if contact_id in self._w.opted_out:
            return False
        self._w.opted_out[contact_id] = at
        return True

    def stop_enrollments(self, org_id: int, contact_id: int, *, reason: str, at: datetime) -> int:
        found = [
            e
            for e in self._w.enrollments
            if e.contact_id == contact_id and e.status in ("active", "paused")
        ]
        for e in found:
            e.status, e.stop_reason = "stopped", reason
        return len(found)

    def cancel_queued_emails(self, org_id: int, contact_id: int, *, email: str, reason: str) -> int:
        return 0


class FakePipeline:
    def __init__(self, world: World) -> None:
        self._w = world

    def count_soft_bounces(
        self, org_id: int, contact_id: int, *, since: datetime, excluding: int
    ) -> int:
        return self._w.soft_bounces


class FakeUnitOfWork:
    def __init__(self, world: World) -> None:
        self.inbound_actions = FakeActions(world)
        self.opt_outs = FakeOptOuts(world)
        self.inbound_pipeline = FakePipeline(world)
        self.conversations = FakeConversations()
        self.engagement = FakeEngagement(world)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def commit(self) -> None:
        return None


def _world() -> World:
    return World(
        enrollments=[
            _Enrollment(1, DANA, JOB),
            _Enrollment(2, DANA, OTHER_JOB),
            _Enrollment(3, RAY, JOB),
        ]
    )


def _result(
    category: Category = Category.OPPORTUNITY,
    *,
    intent: Intent = Intent.NONE,
    by: Decider = Decider.OFFLINE,
    injection: bool = False,
) -> Classification:
    return Classification(
        category=category,
        confidence=0.9,
        sentiment=Sentiment.POSITIVE,
        intent=intent,
        decided_by=by,
        injection_attempt=injection,
    )


def _on(
    detection: Detection | None = None,
    result: Classification | None = None,
    *,
    reported: tuple[int, ...] = (),
    token_contact: int | None = None,
    sender: int | None = DANA,
    auth_failure: str | None = None,
    final: bool = True,
) -> ActingOn:
    return ActingOn(
        email_id=900,
        org_id=ORG,
        detection=detection,
        classification=result or _result(),
        link=Link(send=_send(1), contact_id=DANA, linked_by=LinkedBy.IN_REPLY_TO),
        received_at=NOW,
        reported_contact_ids=reported,
        token_contact_id=token_contact,
        sender_contact_id=sender,
        auth_failure=auth_failure,
        final=final,
    )


def _run(world: World, on: ActingOn) -> list[dict[str, Any]]:
    uow = FakeUnitOfWork(world)
    events: list[EngagementInput] = []
    actions = act(uow, on, now=NOW, events=events)  # type: ignore[arg-type]
    record_engagements(uow.engagement, org_id=ORG, events=events)
    return actions


def test_a_reply_stops_only_the_enrollment_in_the_job_of_the_send_it_answers() -> None:
    world = _world()
    actions = _run(world, _on())

    assert [(a["action"], a["enrollment_ids"]) for a in actions] == [("enrollments_stopped", [1])]
    assert [(e.id, e.status, e.stop_email_id) for e in world.enrollments] == [
        (1, "stopped", 900),
        (2, "active", None),
        (3, "active", None),
    ]
    assert world.events() == [(DANA, "positive_reply", {})]
    assert _run(world, _on()) == []  # a second pass changes nothing
    assert world.events() == [(DANA, "positive_reply", {})]


def test_a_provisional_classification_does_not_score_the_reply_yet() -> None:
    world = _world()
    on = _on()
    _run(world, ActingOn(**{**on.__dict__, "final": False}))

    assert world.events() == []
    assert world.enrollments[0].status == "stopped"


def test_a_reply_pauses_instead_when_the_campaign_pauses_on_reply() -> None:
    world = _world()
    world.enrollments[0].on_reply = "pause"

    assert [a["action"] for a in _run(world, _on())] == ["enrollment_paused"]
    assert (world.enrollments[0].status, world.enrollments[0].paused_until) == ("paused", None)


def test_a_request_to_be_removed_opts_out_once_and_stops_everything() -> None:
    world = _world()
    removal = _result(Category.REMOVE, intent=Intent.UNSUBSCRIBE)
    actions = _run(world, _on(result=removal))

    assert [(a["action"], a["enrollment_ids"]) for a in actions] == [("opted_out", [1, 2])]
    assert world.events() == [(DANA, "opted_out", {"source": "inbound email 900"})]
    assert _run(world, _on(result=removal)) == []
    assert world.events() == [(DANA, "opted_out", {"source": "inbound email 900"})]


def test_an_injection_attempt_never_opts_out_on_the_model_s_word() -> None:
    world = _world()
    actions = _run(
        world, _on(result=_result(Category.REMOVE, intent=Intent.UNSUBSCRIBE, injection=True))
    )

    assert world.opted_out == {}
    assert [a["action"] for a in actions] == ["enrollments_stopped"]
    assert world.events() == [(DANA, "replied", {})]  # the model's reading does not score


def test_a_hard_bounce_marks_every_reported_contact_bounced_and_stops_them() -> None:
    world = _world()
    hard = Detection(
        kind=MessageKind.BOUNCE,
        bounce=Bounce(
            recipients=(
                FailedRecipient(address="x@y", severity=BounceSeverity.HARD, found_by="dsn"),
            )
        ),
    )
    actions = _run(world, _on(hard, reported=(RAY,)))

    assert [(a["action"], a["contact_id"], a["enrollment_ids"]) for a in actions] == [
        ("marked_bounced", RAY, [3])
    ]
    assert world.bounced == {RAY}
    assert world.events() == [(RAY, "bounced", {})]


@pytest.mark.parametrize(("earlier", "bounced"), [(0, False), (1, False), (2, True)])
def test_the_third_soft_bounce_in_30_days_marks_the_address_bounced(
    earlier: int, bounced: bool
) -> None:
    world = _world()
    world.soft_bounces = earlier
    soft = Detection(
        kind=MessageKind.BOUNCE,
        bounce=Bounce(
            recipients=(
                FailedRecipient(address="x@y", severity=BounceSeverity.SOFT, found_by="dsn"),
            )
        ),
    )
    _run(world, _on(soft, reported=(DANA,)))

    assert (DANA in world.bounced) is bounced


def test_an_out_of_office_pauses_active_enrollments_until_the_next_business_day() -> None:
    world = _world()
    # Friday 11 December: back on Monday the 14th.
    away = Detection(
        kind=MessageKind.OUT_OF_OFFICE,
        auto_reply=AutoReply(out_of_office=True, return_date=date(2026, 12, 11)),
    )
    _run(world, _on(away))

    assert [(e.status, e.paused_until) for e in world.enrollments[:2]] == [
        ("paused", datetime(2026, 12, 14, tzinfo=UTC)),
        ("paused", datetime(2026, 12, 14, tzinfo=UTC)),
    ]
    assert resume_at(Detection(kind=MessageKind.OUT_OF_OFFICE), now=NOW) == NOW + timedelta(days=7)
    assert add_business_days(date(2026, 12, 11), 1) == date(2026, 12, 14)


def test_a_verified_list_unsubscribe_token_opts_out_the_contact_it_names() -> None:
    world = _world()
    request = Detection(unsubscribe=UnsubscribeRequest(via=UnsubscribeVia.ADDRESS, token="t"))
    _run(world, _on(request, token_contact=RAY))

    assert set(world.opted_out) == {RAY}


def test_mail_from_our_own_reps_changes_nothing() -> None:
    world = _world()

    assert _run(world, _on(Detection(from_own_rep=True))) == []
    assert {e.status for e in world.enrollments} == {"active"}


# --- who may trigger an automatic action (review of issue 11) ------------------------------


def test_a_provisional_removal_pauses_and_the_final_one_opts_out() -> None:
    world = _world()
    removal = _result(Category.REMOVE, intent=Intent.UNSUBSCRIBE, by=Decider.OFFLINE)
    actions = _run(world, _on(result=removal, final=False))

    assert world.opted_out == {}
    assert [(a["action"], a["reason"], a["enrollment_ids"]) for a in actions] == [
        ("enrollment_paused", AWAITING_CONFIRMATION, [1, 2])
    ]
    assert [e.status for e in world.enrollments] == ["paused", "paused", "active"]
    confirmed = _result(Category.REMOVE, intent=Intent.UNSUBSCRIBE, by=Decider.CLAUDE)
    actions = _run(world, _on(result=confirmed))

    assert set(world.opted_out) == {DANA}
    assert [(a["action"], a["enrollment_ids"]) for a in actions] == [("opted_out", [1, 2])]


def test_a_detector_removal_acts_at_once_even_while_provisional() -> None:
    world = _world()
    words = Detection(unsubscribe=UnsubscribeRequest(via=UnsubscribeVia.TEXT, phrase="remove me"))
    _run(world, _on(words, final=False))

    assert set(world.opted_out) == {DANA}


def test_a_removal_opts_out_only_the_sender_s_own_contact_never_the_thread_s() -> None:
    world = _world()
    request = Detection(unsubscribe=UnsubscribeRequest(via=UnsubscribeVia.ADDRESS, token="bad"))
    removal = _result(Category.REMOVE, intent=Intent.UNSUBSCRIBE, by=Decider.CLAUDE)
    # The link names DANA (from the thread); the sender is no contact of ours.
    assert _run(world, _on(request, sender=None)) == []
    assert _run(world, _on(result=removal, sender=None)) == []
    assert world.opted_out == {}
    _run(world, _on(request, sender=RAY))

    assert set(world.opted_out) == {RAY}


def test_a_sender_failing_authentication_opts_out_no_one_and_is_escalated() -> None:
    world = _world()
    words = Detection(unsubscribe=UnsubscribeRequest(via=UnsubscribeVia.TEXT, phrase="remove me"))
    failing = "the sender's domain fails DMARC (mx.google.com)"
    on = _on(words, auth_failure=failing)
    _run(world, on)

    assert world.opted_out == {}
    reason, _ = withheld(on)
    assert reason is not None
    assert failing in reason
    # A verified token is its own proof.
    token = Detection(unsubscribe=UnsubscribeRequest(via=UnsubscribeVia.ADDRESS, token="t"))
    on = _on(token, token_contact=RAY, auth_failure=failing)
    _run(world, on)

    assert set(world.opted_out) == {RAY}
    assert withheld(on) == (None, ())


def test_a_complaint_acts_only_on_recipients_of_our_mail() -> None:
    world = _world()
    complaint = Detection(
        kind=MessageKind.COMPLAINT,
        complaint=Complaint(feedback_type="abuse", recipients=("dana@pinnacle.example",)),
    )
    stranger = _on(complaint)  # nobody reported matched a send of ours
    assert _run(world, stranger) == []
    assert world.opted_out == {}
    assert withheld(stranger)[0] == UNKNOWN_COMPLAINT
    forged = _on(complaint, reported=(DANA,), auth_failure="fails DMARC")
    assert _run(world, forged) == []
    assert world.opted_out == {}
    ours = _on(complaint, reported=(DANA,))
    _run(world, ours)

    assert set(world.opted_out) == {DANA}
    assert withheld(ours) == (None, ())


def test_a_bounce_marks_no_one_without_a_send_of_ours() -> None:
    world = _world()
    hard = Detection(
        kind=MessageKind.BOUNCE,
        bounce=Bounce(
            recipients=(
                FailedRecipient(address="x@y", severity=BounceSeverity.HARD, found_by="dsn"),
            )
        ),
    )
    on = ActingOn(**{**_on(hard).__dict__, "unknown_reported": ("x@y",)})

    assert _run(world, on) == []
    assert world.bounced == set()
    assert withheld(on) == (
        None,
        ("1 reported address(es) we did not send to: recorded, not acted on",),
    )
