"""What a reply card's intent does, on fakes: the times proposed in the contact's zone, the
person a referral names found or added, a "not now" paused until its date, the answers
drafted without a model, and enrolling a referral from its card (once, or refused with
the reason)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from domain.cards import Card, CardState, CardType, Priority
from domain.classification import Category, Classification, Decider, Intent
from domain.conversations import Link, SendRef
from domain.deps import Deps
from domain.errors import InvalidInput
from domain.inbound_actions import EnrollmentRef
from domain.intents import ProposedTime, ReferralCandidate, ResumeDate
from domain.jobs import JobParams, JobStatus, StepTemplate, TargetSelection, TaskKind
from domain.outreach import CardRefused
from domain.outreach.referrals import check_address
from domain.replies import (
    ContactInfo,
    InboundMessage,
    Rep,
    Replies,
    ReplyContext,
    ReplyDraft,
)
from domain.reply_actions import (
    OPT_OUT_NOTE,
    act_on_intent,
    confirms_opt_out,
    describe_time,
    draft_answer,
    may_still_auto_send,
    meeting_confirmation,
    opt_out_confirmation,
    split_name,
)
from domain.reply_cards import ReplyFacts, plan_reply_card
from domain.reply_policy import ReplyPolicy
from domain.understanding import InboundMessage as PipelineMessage
from tests.unit.fakes import (
    NOW,
    ORG,
    REP,
    FakeReplyActions,
    FakeUnitOfWork,
    Outreaching,
    World,
    actor,
    make_contact,
    outreaching,
)

CHICAGO = ZoneInfo("America/Chicago")
DANA = 1
JOB, CAMPAIGN, CLIENT = 50, 60, 100


# --- fakes of what the card conversion reads ------------------------------------------------


@dataclass
class FakeIntents:
    """An intent reader that answers what the test set, and remembers what it was asked."""

    referrals_found: list[ReferralCandidate] = field(default_factory=list)
    times: list[ProposedTime] = field(default_factory=list)
    resume: ResumeDate | None = None
    zones: list[str | None] = field(default_factory=list)

    def referrals(
        self, text: str, *, sender: str | None, own_addresses: Any
    ) -> list[ReferralCandidate]:
        return list(self.referrals_found)

    def meeting_times(self, text: str, *, sent_at: datetime, tz: str | None) -> list[ProposedTime]:
        self.zones.append(tz)
        return list(self.times)

    def resume_date(self, text: str, *, sent_at: datetime, tz: str | None) -> ResumeDate | None:
        self.zones.append(tz)
        return self.resume


@dataclass
class FakeInboundActions:
    running: list[EnrollmentRef] = field(default_factory=list)
    paused: list[tuple[list[int], datetime | None, str]] = field(default_factory=list)

    def enrollments(self, org_id: int, contact_id: int) -> list[EnrollmentRef]:
        return list(self.running)

    def pause_enrollments(
        self,
        org_id: int,
        ids: list[int],
        *,
        until: datetime | None,
        reason: str,
        email_id: int,
        at: datetime,
    ) -> list[int]:
        active = [i for i in ids if any(e.id == i and e.status == "active" for e in self.running)]
        self.paused.append((active, until, reason))
        return active


@dataclass
class CardUow:
    """What `act_on_intent` reads and changes in the pipeline's unit of work."""

    world: World = field(default_factory=World)
    inbound_actions: FakeInboundActions = field(default_factory=FakeInboundActions)

    @property
    def reply_actions(self) -> FakeReplyActions:
        return FakeReplyActions(self.world)


def message(text: str = "…", **changes: Any) -> PipelineMessage:
    values: dict[str, Any] = {
        "id": 900,
        "org_id": ORG,
        "attempts": 1,
        "lease_until": NOW,
        "from_email": "dana@pinnacle.test",
        "from_name": "Dana Whitfield",
        "to_emails": ("maria@lonestar.test",),
        "subject": "Re: Turn times",
        "text": text,
        "text_truncated": False,
        "received_at": NOW,
        "gmail_thread_id": "t-1",
        "in_reply_to": None,
        "references": (),
        "detection": {},
        "threshold": 0.7,
    }
    return PipelineMessage(**{**values, **changes})


def link(*, campaign: int | None = CAMPAIGN) -> Link:
    send = SendRef(
        id=7,
        contact_id=DANA,
        job_id=JOB,
        campaign_id=campaign,
        enrollment_id=3,
        gmail_thread_id="t-1",
        to_email="dana@pinnacle.test",
        sent_at=NOW - timedelta(days=2),
    )
    return Link(send=send, contact_id=DANA, client_id=CLIENT)


def plan_for(intent: Intent, category: Category = Category.OPPORTUNITY) -> Any:
    said = Classification(
        category=category, confidence=0.97, intent=intent, decided_by=Decider.CLAUDE
    )
    return plan_reply_card(said, ReplyFacts(known_contact=True), ReplyPolicy())


def card_uow() -> CardUow:
    uow = CardUow()
    uow.world.contacts[(ORG, DANA)] = make_contact(DANA, email="dana@pinnacle.test", state="TX")
    uow.world.campaign_names[(ORG, CAMPAIGN)] = "Q4 win-back"
    uow.world.client_names[(ORG, CLIENT)] = "Pinnacle Lending"
    return uow


# --- acting on intent when the card is made ------------------------------------------------


def test_proposed_times_are_written_in_the_contact_s_zone() -> None:
    uow = card_uow()
    tuesday = datetime(2026, 12, 8, 20, 0, tzinfo=UTC)
    intents = FakeIntents(
        times=[ProposedTime(start=tuesday, words="Tuesday at 2pm"), ProposedTime(words="2pm")]
    )

    done = act_on_intent(
        uow, message(), plan_for(Intent.MEETING_REQUEST), link(), intents=intents, now=NOW
    )  # type: ignore[arg-type]

    assert intents.zones == ["America/Chicago"]  # Texas
    assert done.payload == {
        "proposed_times": [
            {"start": "2026-12-08T14:00:00-06:00", "end": None, "words": "Tuesday at 2pm"},
            {"start": None, "end": None, "words": "2pm"},
        ]
    }
    assert done.title == "Confirm a meeting with Dana Whitfield"


def test_a_contact_s_own_time_zone_comes_before_their_state_s() -> None:
    uow = card_uow()
    uow.world.contact_zones[(ORG, DANA)] = "America/New_York"
    intents = FakeIntents(
        times=[ProposedTime(start=datetime(2026, 12, 8, 19, tzinfo=UTC), words="2pm")]
    )

    done = act_on_intent(
        uow, message(), plan_for(Intent.MEETING_REQUEST), link(), intents=intents, now=NOW
    )  # type: ignore[arg-type]

    assert done.payload["proposed_times"][0]["start"] == "2026-12-08T14:00:00-05:00"


def test_a_referral_to_someone_new_adds_them_as_a_contact_of_the_sender_s_client() -> None:
    uow = card_uow()
    named = ReferralCandidate(
        email="karen.liu@pinnacle.test",
        name="Karen de la Cruz",
        role="appraisal desk manager",
        score=0.95,
        words="reach out to Karen de la Cruz, our appraisal desk manager",
    )

    done = act_on_intent(
        uow,
        message(),
        plan_for(Intent.REFERRAL),
        link(),
        intents=FakeIntents([named]),
        now=NOW,  # type: ignore[arg-type]
    )

    referral = done.payload["referral"]
    karen = uow.reply_actions.find_contact(ORG, "karen.liu@pinnacle.test")
    assert karen is not None
    assert referral == {
        "email": "karen.liu@pinnacle.test",
        "name": "Karen de la Cruz",
        "role": "appraisal desk manager",
        "contact_id": karen.id,
        "campaign_id": CAMPAIGN,
        "campaign_name": "Q4 win-back",
        "enrolled_job_id": None,
        "words": named.words,
    }
    added = uow.world.contacts[(ORG, karen.id)]
    assert (added.first_name, added.last_name, added.title, added.client_id) == (
        "Karen",
        "de la Cruz",
        "appraisal desk manager",
        CLIENT,
    )
    assert uow.world.contact_tags[(ORG, karen.id)] == ["referral"]
    assert done.title == "Referral from Dana Whitfield: reach Karen de la Cruz"


def test_a_referral_to_a_known_contact_finds_them_and_adds_no_one() -> None:
    uow = card_uow()
    uow.world.contacts[(ORG, 2)] = make_contact(
        2, email="ray@pinnacle.test", first_name="Ray", last_name="Ames"
    )
    named = ReferralCandidate(email="Ray@pinnacle.test", score=0.8, words="try Ray@pinnacle.test")

    done = act_on_intent(
        uow,
        message(),
        plan_for(Intent.WRONG_PERSON, Category.UPDATES),
        link(),
        intents=FakeIntents([named]),
        now=NOW,  # type: ignore[arg-type]
    )

    assert (done.payload["referral"]["contact_id"], done.payload["referral"]["name"]) == (
        2,
        "Ray Ames",
    )
    assert len(uow.world.contacts) == 2


def test_a_referral_without_an_address_leaves_the_address_to_the_rep() -> None:
    uow = card_uow()

    done = act_on_intent(
        uow,
        message(),
        plan_for(Intent.REFERRAL),
        link(campaign=None),
        intents=FakeIntents(),
        now=NOW,
    )  # type: ignore[arg-type]

    assert done.payload["referral"] == {
        "email": None,
        "name": None,
        "role": None,
        "contact_id": None,
        "campaign_id": None,
        "campaign_name": None,
        "enrolled_job_id": None,
        "words": "",
    }
    assert done.title == "Referral from Dana Whitfield: reach the person they named"


def test_not_now_with_a_date_pauses_the_contact_and_their_active_enrollments() -> None:
    uow = card_uow()
    uow.inbound_actions.running = [
        EnrollmentRef(11, 70, "active", "stop"),
        EnrollmentRef(12, 71, "paused", "stop"),
    ]
    intents = FakeIntents(resume=ResumeDate(on=date(2027, 1, 4), words="in January"))

    done = act_on_intent(uow, message(), plan_for(Intent.NOT_NOW), link(), intents=intents, now=NOW)  # type: ignore[arg-type]

    until = datetime(2027, 1, 4, tzinfo=CHICAGO)
    assert done.payload == {
        "paused_until": "2027-01-04T00:00:00-06:00",
        "pause_words": "in January",
    }
    assert uow.world.contact_pauses[(ORG, DANA)] == (until.astimezone(UTC), "not now: in January")
    assert uow.inbound_actions.paused == [([11], until.astimezone(UTC), "not now")]


def test_not_now_without_a_date_or_with_a_past_one_pauses_nothing() -> None:
    for resume in (None, ResumeDate(on=NOW.date() - timedelta(days=3), words="last week")):
        uow = card_uow()
        done = act_on_intent(
            uow,
            message(),
            plan_for(Intent.NOT_NOW),
            link(),
            intents=FakeIntents(resume=resume),
            now=NOW,
        )  # type: ignore[arg-type]
        assert done.payload == {}
        assert uow.world.contact_pauses == {}


def test_a_strong_opportunity_card_is_titled_with_the_client() -> None:
    said = Classification(
        category=Category.OPPORTUNITY,
        confidence=0.97,
        intent=Intent.INTERESTED,
        decided_by=Decider.CLAUDE,
    )
    plan = plan_reply_card(said, ReplyFacts(known_contact=True, stale_client=True), ReplyPolicy())

    done = act_on_intent(card_uow(), message(), plan, link(), intents=None, now=NOW)  # type: ignore[arg-type]

    assert (plan.card_type, done.title) == (
        CardType.CREATE_DEAL,
        "Open a deal for Pinnacle Lending",
    )


@pytest.mark.parametrize(
    ("written", "split"),
    [
        ("Karen Liu", ("Karen", "Liu")),
        ("Ana de la Cruz", ("Ana", "de la Cruz")),
        ("Priya", ("Priya", None)),
        ("  ", (None, None)),
        (None, (None, None)),
    ],
)
def test_a_written_name_splits_into_first_and_last(
    written: str | None, split: tuple[str | None, str | None]
) -> None:
    assert split_name(written) == split


# --- answers drafted without a model ------------------------------------------------------


def context(**changes: Any) -> ReplyContext:
    values: dict[str, Any] = {
        "org_id": ORG,
        "as_of": NOW,
        "message": InboundMessage(id=900, subject="Re: Turn times", reply_text="Please remove me."),
        "contact": ContactInfo(
            id=DANA,
            email="dana@pinnacle.test",
            first_name="Dana",
            last_name="Whitfield",
            opted_out=True,
        ),
        "rep": Rep(
            user_id=REP,
            name="Maria Lopez",
            email="maria@lonestar.test",
            firm_name="Lone Star Appraisals",
        ),
    }
    return ReplyContext(**{**values, **changes})


def test_the_opt_out_confirmation_is_a_short_fixed_text_signed_by_the_rep() -> None:
    draft = opt_out_confirmation(context())

    assert draft.body_text == (
        "Hi Dana,\n\n"
        "You're removed from our mailing list: you will not receive any more emails from our "
        "campaigns.\n\n"
        "Sorry for the bother, and thank you for letting us know.\n\n"
        "Best regards,\nMaria Lopez\nLone Star Appraisals"
    )
    assert (draft.source, draft.notes) == ("template", [OPT_OUT_NOTE])
    assert "Dana Whitfield has opted out of outreach emails." in draft.facts_used


def describe(start: datetime, end: datetime | None = None) -> str:
    return describe_time(start.astimezone(CHICAGO), end.astimezone(CHICAGO) if end else None)


def test_proposed_times_read_as_a_person_writes_them() -> None:
    tuesday_2pm = datetime(2026, 12, 8, 20, 0, tzinfo=UTC)
    assert describe(tuesday_2pm) == "Tuesday, December 8 at 2:00 PM"
    assert describe(tuesday_2pm - timedelta(hours=5), tuesday_2pm - timedelta(hours=2)) == (
        "Tuesday, December 8 between 9:00 AM and 12:00 PM"
    )
    assert describe(tuesday_2pm - timedelta(days=1), tuesday_2pm + timedelta(days=3)) == (
        "between Monday, December 7 and Friday, December 11"
    )


def iso(hour: int, day: int = 8) -> str:
    return datetime(2026, 12, day, hour, 0, tzinfo=CHICAGO).isoformat()


def test_one_proposed_time_is_confirmed() -> None:
    draft = meeting_confirmation(
        context(), [{"start": iso(14), "end": None, "words": "Tuesday at 2"}]
    )

    assert draft is not None
    assert "Thank you, Tuesday, December 8 at 2:00 PM works for me." in draft.body_text
    assert "calendar invitation" in draft.body_text
    assert draft.body_text.endswith("Maria Lopez\nLone Star Appraisals")


def test_a_window_asks_for_the_hour_and_several_times_ask_which() -> None:
    window = meeting_confirmation(
        context(), [{"start": iso(9), "end": iso(12), "words": "Tuesday morning"}]
    )
    several = meeting_confirmation(
        context(),
        [
            {"start": iso(14), "end": None, "words": "Tuesday at 2"},
            {"start": "not a time", "end": None, "words": "?"},
            {"start": iso(16, day=9), "end": None, "words": "Wednesday at 4"},
        ],
    )

    assert window is not None
    assert "Tuesday, December 8 between 9:00 AM and 12:00 PM works for me." in window.body_text
    assert "What time suits you best?" in window.body_text
    assert several is not None
    assert (
        "a few times: Tuesday, December 8 at 2:00 PM or Wednesday, December 9 at 4:00 PM."
        in several.body_text
    )
    assert "Which one suits you best?" in several.body_text


def test_times_that_name_no_day_leave_the_draft_to_the_usual_answer() -> None:
    assert meeting_confirmation(context(), [{"start": None, "end": None, "words": "2pm"}]) is None
    assert meeting_confirmation(context(), []) is None


class ModelThatMustNotWrite:
    """A reply drafter standing for the model: the opt-out's confirmation never reaches it."""

    name = "claude:test"

    def __init__(self) -> None:
        self.asked = 0

    def draft(self, context: ReplyContext) -> ReplyDraft:
        self.asked += 1
        return ReplyDraft(
            body_text="A model's words", body_html="<p>A model's words</p>", source="claude:test"
        )


def test_the_opt_out_confirmation_never_comes_from_the_model_and_other_answers_do() -> None:
    world = World()
    world.reply_contexts[(ORG, 900)] = context()
    model = ModelThatMustNotWrite()
    replies = Replies(
        Deps(uow=lambda: FakeUnitOfWork(world, _clock()), clock=_clock()), drafter=model
    )

    confirmation = draft_answer(replies, ORG, 900, {"reply_action": "confirm_opt_out"})
    answer = draft_answer(replies, ORG, 900, {"reply_action": "draft_reply"})

    assert confirmation.notes == [OPT_OUT_NOTE]
    assert answer.body_text == "A model's words"
    assert model.asked == 1


def _clock() -> Any:
    from domain.clock import FixedClock

    return FixedClock(NOW)


def test_an_auto_sent_card_is_checked_again_before_it_leaves() -> None:
    assert may_still_auto_send({"category": "REMOVE", "injection_attempt": False})
    assert not may_still_auto_send({"category": "REMOVE", "injection_attempt": True})
    assert not may_still_auto_send({"category": "AMC_ORDER", "injection_attempt": False})
    assert confirms_opt_out({"reply_action": "confirm_opt_out"})
    assert not confirms_opt_out({"reply_action": "draft_reply"})


# --- enrolling a referral from its card ----------------------------------------------------


PARAMS = JobParams(
    target=TargetSelection(contact_ids=[DANA]),
    templates=[StepTemplate(subject="Turn times", body="Hi {{ first_name }}")],
)


def referral_world(
    h: Outreaching,
    *,
    email: str | None = "karen@pinnacle.test",
    status: JobStatus = JobStatus.RUNNING,
) -> Card:
    """A running campaign job of the rep and a referral card of it naming Karen."""
    h.world.contacts[(ORG, DANA)] = make_contact(DANA)
    with h.uow() as uow:
        job = uow.jobs.add(
            ORG,
            name="Q4 win-back · launch",
            description=None,
            params=PARAMS.model_dump(mode="json"),
            owner_id=REP,
            campaign_id=CAMPAIGN,
        )
        uow.jobs.set_status(ORG, job.id, JobStatus.RUNNING, expected=[JobStatus.PENDING], now=NOW)
        uow.jobs.mark_planned(job.id, now=NOW)
        if status is not JobStatus.RUNNING:
            uow.jobs.set_status(ORG, job.id, status, expected=[JobStatus.RUNNING], now=NOW)
        uow.commit()
    karen = None
    if email is not None:
        karen = FakeReplyActions(h.world).add_contact(
            ORG,
            email=email,
            first_name="Karen",
            last_name="Liu",
            title=None,
            client_id=100,
            tags=["referral"],
            at=NOW,
        )
    card = Card(
        id=next(h.world.next_id),
        org_id=ORG,
        type=CardType.CREATE_TASK,
        state=CardState.IN_REVIEW,
        priority=Priority.MEDIUM,
        title="Referral from Dana: reach Karen Liu",
        created_at=NOW,
        updated_at=NOW,
        job_id=job.id,
        contact_id=DANA,
        client_id=100,
        inbound_email_id=900,
        action_payload={
            "from_email": "dana@pinnacle.test",
            "from_name": "Dana Whitfield",
            "reply_action": "enroll_referral",
            "referral": {
                "email": email,
                "name": "Karen Liu" if email else None,
                "role": None,
                "contact_id": karen.id if karen else None,
                "campaign_id": CAMPAIGN,
                "campaign_name": "Q4 win-back",
                "enrolled_job_id": None,
                "words": "try Karen",
            },
        },
    )
    h.world.cards[card.id] = card
    return card


def test_enrolling_a_referral_queues_their_first_email_and_marks_the_card_done() -> None:
    h = outreaching()
    card = referral_world(h)

    enrolled = h.outreach.referrals.enroll(actor(), card.id)

    karen = FakeReplyActions(h.world).find_contact(ORG, "karen@pinnacle.test")
    assert karen is not None
    assert (enrolled.already, enrolled.contact_id, enrolled.job_id) == (
        False,
        karen.id,
        card.job_id,
    )
    assert enrolled.message.startswith("✅ Enrolled Karen Liu in “Q4 win-back”")
    done = h.card(card.id)
    assert (done.state, done.approved_by, done.action_payload["referral"]["enrolled_job_id"]) == (
        CardState.DONE,
        REP,
        card.job_id,
    )
    (enrollment,) = [e for e in h.world.enrollments.values() if e.contact_id == karen.id]
    assert enrollment.job_id == card.job_id
    (task,) = [t for t in h.world.tasks.values() if t.contact_id == karen.id]
    assert (task.kind, task.step) == (TaskKind.DRAFT_EMAIL, 0)

    again = h.outreach.referrals.enroll(actor(), card.id)
    assert again.already
    assert "already enrolled" in again.message
    assert len([e for e in h.world.enrollments.values() if e.contact_id == karen.id]) == 1


def test_a_referral_without_an_address_is_enrolled_with_the_one_the_rep_typed() -> None:
    h = outreaching()
    card = referral_world(h, email=None)
    assert h.outreach.referrals.referral(actor(), card.id).needs_address
    with pytest.raises(InvalidInput, match="named no address"):
        h.outreach.referrals.enroll(actor(), card.id)

    enrolled = h.outreach.referrals.enroll(
        actor(), card.id, email=" Kyle@Riverbend.test ", name="Kyle  Brennan"
    )

    kyle = FakeReplyActions(h.world).find_contact(ORG, "kyle@riverbend.test")
    assert kyle is not None
    assert (kyle.first_name, kyle.last_name, kyle.client_id) == ("Kyle", "Brennan", 100)
    assert h.world.contact_tags[(ORG, kyle.id)] == ["referral"]
    referral = h.card(card.id).action_payload["referral"]
    assert (referral["email"], referral["name"], referral["contact_id"]) == (
        "kyle@riverbend.test",
        "Kyle Brennan",
        kyle.id,
    )
    assert enrolled.contact_id == kyle.id


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"opted_out": True}, "opted out"),
        ({"email_status": "bounced"}, "cannot receive email \\(bounced\\)"),
    ],
)
def test_a_person_who_opted_out_or_bounced_is_not_enrolled(
    change: dict[str, Any], refusal: str
) -> None:
    h = outreaching()
    card = referral_world(h)
    karen_id = card.action_payload["referral"]["contact_id"]
    h.world.contacts[(ORG, karen_id)] = replace(h.world.contacts[(ORG, karen_id)], **change)

    with pytest.raises(InvalidInput, match=refusal):
        h.outreach.referrals.enroll(actor(), card.id)

    assert h.card(card.id).state == CardState.IN_REVIEW
    assert not any(e.contact_id == karen_id for e in h.world.enrollments.values())


def test_a_finished_job_or_no_campaign_is_refused_with_what_to_do() -> None:
    h = outreaching()
    card = referral_world(h, status=JobStatus.SUCCEEDED)
    with pytest.raises(
        InvalidInput, match="has finished \\(succeeded\\); launch the campaign again"
    ):
        h.outreach.referrals.enroll(actor(), card.id)

    h = outreaching()
    card = referral_world(h)
    payload = {
        **card.action_payload,
        "referral": {**card.action_payload["referral"], "campaign_id": None},
    }
    h.world.cards[card.id] = replace(card, action_payload=payload)
    with pytest.raises(InvalidInput, match="answers no campaign email"):
        h.outreach.referrals.enroll(actor(), card.id)


def test_a_rejected_referral_card_enrolls_no_one() -> None:
    h = outreaching()
    card = referral_world(h)
    h.world.cards[card.id] = replace(card, state=CardState.REJECTED)

    with pytest.raises(CardRefused, match="rejected"):
        h.outreach.referrals.enroll(actor(), card.id)
    assert h.world.enrollments == {}


@pytest.mark.parametrize(
    "typed", ["kyle at riverbend", "kyle@riverbend", "a b@c.d", "", "x" * 320 + "@a.io"]
)
def test_an_address_that_is_not_one_is_refused(typed: str) -> None:
    with pytest.raises(InvalidInput):
        check_address(typed)


def test_a_typed_address_is_kept_as_contacts_keep_them() -> None:
    assert (
        check_address("  Kyle.Brennan@Riverbend.Example.com ")
        == "kyle.brennan@riverbend.example.com"
    )
