"""Who sees a reply card (domain/reply_routing.py): the order of the places tried, the
fallback past a channel Salesbot is not in (said on the card), nowhere to post (said, and
kept), the replies inbox that never finishes and cannot be stopped, answers sent from the
mailbox that received the message, strangers, and the triage channel's rules."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from domain.cards import Card, CardState, CardType, CardView, Priority, draft_fingerprint
from domain.classification import Category
from domain.conversations import Link, LinkedBy, SendRef
from domain.deps import Deps
from domain.errors import ExternalServiceError, InvalidInput, InvalidTransition, NotPermitted
from domain.jobs import JobStatus
from domain.outreach import Actor
from domain.outreach.common import authorize_card
from domain.ports import TriageUnitOfWork
from domain.reply_routing import (
    CONTACT_GONE,
    NO_PLACE,
    NOT_A_CONTACT,
    ChannelStatus,
    ChannelUnavailable,
    Destination,
    NowhereToPost,
    RoutedTo,
    Triage,
    describe,
    parse_channel,
    plan_routing,
    post_reply_card,
    sender_note,
    stranger_card_reason,
)
from tests.unit.fakes import (
    ADMIN,
    NOW,
    ORG,
    OTHER_REP,
    REP,
    FakeNotifier,
    FakeUnitOfWork,
    Outreaching,
    actor,
    outreaching,
)

# --- the places a reply card goes ---------------------------------------------------------


def _view(**payload: Any) -> CardView:
    card = Card(
        id=1,
        org_id=ORG,
        type=CardType.NEEDS_HUMAN_RESPONSE,
        state=CardState.IN_REVIEW,
        priority=Priority.HIGH,
        title="Needs a person",
        created_at=NOW,
        updated_at=NOW,
        inbound_email_id=5,
        action_payload=dict(payload),
    )
    return CardView(card=card)


class Chat:
    """Posts to any DM; refuses the channels named (as Slack would), or fails as told."""

    def __init__(self, refusing: dict[str, str] | None = None, dm_error: str | None = None):
        self.refusing = refusing or {}
        self.dm_error = dm_error
        self.posts: list[tuple[Destination, str | None]] = []

    def post(self, view: CardView, place: Destination) -> tuple[str, str]:
        self.posts.append((place, view.card.action_payload.get("routing_note")))
        if place.channel_id is not None and place.channel_id in self.refusing:
            error = self.refusing[place.channel_id]
            raise ChannelUnavailable(f"Slack: ({error})", channel_id=place.channel_id, error=error)
        if place.channel_id is None and self.dm_error:
            raise ExternalServiceError(f"Slack answered {self.dm_error}")
        return place.channel_id or f"D-{place.slack_user_id}", "1.0001"


def test_the_rep_s_dm_comes_first_then_the_review_channel_then_the_triage_channel() -> None:
    plan = plan_routing(
        rep_slack_id="U1", owner_slack_id="U1", review_channel_id="CREV", triage_channel_id="CTRI"
    )

    assert plan.destinations == (
        Destination(RoutedTo.DM, slack_user_id="U1"),
        Destination(RoutedTo.REVIEW_CHANNEL, channel_id="CREV"),
        Destination(RoutedTo.TRIAGE_CHANNEL, channel_id="CTRI"),
    )
    # The campaign's owner is the rep: no second DM to fall back on.
    assert plan.fallback_dm is None
    posted = post_reply_card(Chat().post, _view(), plan)
    assert (posted.channel_id, posted.routed_to, posted.routing_note) == ("D-U1", "dm", None)


def test_a_rep_without_slack_goes_to_the_review_channel_without_a_note() -> None:
    plan = plan_routing(
        rep_slack_id=None, owner_slack_id=None, review_channel_id="CREV", triage_channel_id="CTRI"
    )

    posted = post_reply_card(Chat().post, _view(), plan)

    assert (posted.channel_id, posted.routed_to, posted.routing_note) == (
        "CREV",
        RoutedTo.REVIEW_CHANNEL,
        None,
    )


def test_a_channel_salesbot_is_not_in_falls_back_to_the_owner_s_dm_and_the_card_says_so() -> None:
    chat = Chat(refusing={"CREV": "not_in_channel"})
    plan = plan_routing(
        rep_slack_id=None, owner_slack_id="UOWNER", review_channel_id="CREV", triage_channel_id=None
    )

    posted = post_reply_card(chat.post, _view(), plan)

    note = "Posted here because Salesbot is not in <#CREV>: /invite @Salesbot there"
    assert (posted.channel_id, posted.routed_to, posted.routing_note) == ("D-UOWNER", "dm", note)
    # The message posted carried the note (rendered as a context line).
    assert chat.posts[-1] == (Destination(RoutedTo.DM, slack_user_id="UOWNER"), note)


def test_without_a_dm_a_refusing_channel_gives_way_to_the_triage_channel() -> None:
    chat = Chat(refusing={"CREV": "channel_not_found"})
    plan = plan_routing(
        rep_slack_id=None, owner_slack_id=None, review_channel_id="CREV", triage_channel_id="CTRI"
    )

    posted = post_reply_card(chat.post, _view(), plan)

    assert (posted.channel_id, posted.routed_to) == ("CTRI", RoutedTo.TRIAGE_CHANNEL)
    assert posted.routing_note == (
        "Posted here because Salesbot cannot see <#CREV> (private, or deleted): "
        "/invite @Salesbot there"
    )


def test_an_archived_triage_channel_with_nowhere_else_is_nowhere_to_post_with_the_reason() -> None:
    chat = Chat(refusing={"CTRI": "is_archived"})
    plan = plan_routing(
        rep_slack_id=None, owner_slack_id=None, review_channel_id=None, triage_channel_id="CTRI"
    )

    with pytest.raises(NowhereToPost) as refused:
        post_reply_card(chat.post, _view(), plan)

    assert "<#CTRI> is archived" in refused.value.message
    assert "App Home" in refused.value.message
    assert not refused.value.retryable


def test_with_no_rep_no_review_channel_and_no_triage_channel_it_says_what_to_do() -> None:
    plan = plan_routing(
        rep_slack_id=None, owner_slack_id=None, review_channel_id=None, triage_channel_id=None
    )

    with pytest.raises(NowhereToPost) as refused:
        post_reply_card(Chat().post, _view(), plan)

    assert refused.value.message == NO_PLACE
    assert "/triage set #channel" in NO_PLACE


def test_a_dm_that_cannot_be_opened_gives_way_to_the_next_place_and_says_so() -> None:
    chat = Chat(dm_error="user_not_found")
    plan = plan_routing(
        rep_slack_id="UGONE", owner_slack_id=None, review_channel_id=None, triage_channel_id="CTRI"
    )

    posted = post_reply_card(chat.post, _view(), plan)

    assert (posted.channel_id, posted.routing_note) == (
        "CTRI",
        "Posted here because Salesbot could not DM <@UGONE>",
    )


def test_a_retryable_failure_is_raised_for_the_poster_to_try_again() -> None:
    def rate_limited(view: CardView, place: Destination) -> tuple[str, str]:
        raise ExternalServiceError("Slack answered ratelimited", retryable=True)

    plan = plan_routing(
        rep_slack_id="U1", owner_slack_id=None, review_channel_id="CREV", triage_channel_id=None
    )
    with pytest.raises(ExternalServiceError) as failed:
        post_reply_card(rate_limited, _view(), plan)
    assert failed.value.retryable


def test_a_channel_id_that_is_no_slack_id_is_never_rendered_as_a_mention() -> None:
    chat = Chat(refusing={"x> <!channel": "channel_not_found"})
    plan = plan_routing(
        rep_slack_id=None,
        owner_slack_id="U1",
        review_channel_id="x> <!channel",
        triage_channel_id=None,
    )

    posted = post_reply_card(chat.post, _view(), plan)

    assert posted.routing_note is not None
    assert "<!channel" not in posted.routing_note
    assert "channel xchannel" in posted.routing_note


# --- strangers ---------------------------------------------------------------------------


SEND = SendRef(
    id=3,
    contact_id=None,
    job_id=4,
    campaign_id=5,
    enrollment_id=None,
    gmail_thread_id="t1",
    to_email="gone@pinnacle.test",
    sent_at=NOW,
)


@pytest.mark.parametrize("category", list(Category))
def test_only_an_amc_order_or_an_opportunity_from_a_stranger_makes_a_card(
    category: Category,
) -> None:
    reason = stranger_card_reason(Link(), category)
    gone = stranger_card_reason(Link(send=SEND, linked_by=LinkedBy.THREAD), category)

    if category in (Category.AMC_ORDER, Category.OPPORTUNITY):
        assert (reason, gone) == (NOT_A_CONTACT, CONTACT_GONE)
    else:
        assert (reason, gone) == (None, None)


def test_the_inbound_notes_say_why_a_stranger_s_message_made_a_card_or_none() -> None:
    contact = Link(contact_id=9, linked_by=LinkedBy.CONTACT)
    gone = Link(send=SEND, linked_by=LinkedBy.THREAD)

    assert sender_note(contact, Category.STATUS) is None
    assert sender_note(Link(), Category.STATUS) == (
        "the sender is not a contact: no card (only AMC_ORDER or OPPORTUNITY makes one)"
    )
    assert sender_note(gone, Category.AMC_ORDER) == (
        "the contact of this thread was deleted: a card for a person in the replies inbox "
        "(AMC_ORDER)"
    )


# --- posting through Presenting ------------------------------------------------------------


@pytest.fixture
def h() -> Outreaching:
    return outreaching()


class RefusingNotifier(FakeNotifier):
    """The fake chat, with channels that refuse the bot."""

    def __init__(self, refusing: dict[str, str]) -> None:
        super().__init__()
        self.refusing = refusing
        self.targets: list[str] = []

    def post_card(
        self, view: CardView, *, channel: str | None, owner_slack_id: str | None
    ) -> tuple[str, str]:
        if channel in self.refusing:
            error = self.refusing[channel]
            raise ChannelUnavailable(f"Slack: ({error})", channel_id=channel, error=error)
        self.targets.append(channel or f"D-{owner_slack_id}")
        return super().post_card(view, channel=channel, owner_slack_id=owner_slack_id)


def _reply_card(h: Outreaching, **payload: Any) -> Card:
    with h.uow() as uow:
        job_id = uow.jobs.inbox_job_id(ORG, now=NOW)
        uow.commit()
    card = Card(
        id=next(h.world.next_id),
        org_id=ORG,
        type=CardType.NEEDS_HUMAN_RESPONSE,
        state=CardState.IN_REVIEW,
        priority=Priority.HIGH,
        title="Needs a person: Dana: Order 7",
        created_at=NOW,
        updated_at=NOW,
        job_id=job_id,
        inbound_email_id=77,
        action_payload={"from_email": "dana@pinnacle.test", **payload},
    )
    h.world.cards[card.id] = card
    return card


def test_a_reply_card_goes_to_the_dm_of_the_rep_whose_mailbox_received_it() -> None:
    chat = RefusingNotifier({})
    h = outreaching(chat=chat)
    h.world.triage_channels[ORG] = "CTRIAGE"
    card = _reply_card(h, sender_user_id=OTHER_REP)

    assert h.outreach.presenting.show_card(ORG, card.id, post=True) is None

    assert chat.targets == [f"D-U{OTHER_REP}"]
    posted = h.card(card.id)
    assert posted.slack_message_ts is not None
    assert (posted.action_payload["routed_to"], posted.action_payload["routing_note"]) == (
        "dm",
        None,
    )


def test_a_rep_without_slack_sends_the_card_to_the_triage_channel(h: Outreaching) -> None:
    user = h.world.users[(ORG, REP)]
    h.world.users[(ORG, REP)] = replace(user, slack_user_id=None)
    h.world.triage_channels[ORG] = "CTRIAGE"
    card = _reply_card(h, sender_user_id=REP)

    assert h.outreach.presenting.show_card(ORG, card.id, post=True) is None

    posted = h.card(card.id)
    assert (posted.slack_channel_id, posted.action_payload["routed_to"]) == (
        "CTRIAGE",
        "triage_channel",
    )


def test_with_nowhere_to_post_the_card_keeps_the_reason_and_waits_unposted() -> None:
    h = outreaching()
    user = h.world.users[(ORG, REP)]
    h.world.users[(ORG, REP)] = replace(user, slack_user_id=None)
    card = _reply_card(h, sender_user_id=REP)

    reason = h.outreach.presenting.show_card(ORG, card.id, post=True)

    assert reason == NO_PLACE
    kept = h.card(card.id)
    assert kept.slack_message_ts is None
    assert kept.state == CardState.IN_REVIEW
    assert kept.action_payload["slack_error"] == kept.action_payload["routing_note"] == NO_PLACE


def test_a_triage_channel_salesbot_is_not_in_falls_back_to_nothing_and_says_why() -> None:
    h = outreaching(chat=RefusingNotifier({"CTRIAGE": "not_in_channel"}))
    user = h.world.users[(ORG, REP)]
    h.world.users[(ORG, REP)] = replace(user, slack_user_id=None)
    h.world.triage_channels[ORG] = "CTRIAGE"
    card = _reply_card(h, sender_user_id=REP)

    reason = h.outreach.presenting.show_card(ORG, card.id, post=True)

    assert reason is not None
    assert "Salesbot is not in <#CTRIAGE>" in reason
    assert h.card(card.id).action_payload["routing_note"] == reason


# --- the replies inbox job ----------------------------------------------------------------


def test_the_inbox_job_never_finishes_even_with_every_card_decided(h: Outreaching) -> None:
    card = _reply_card(h, sender_user_id=REP)
    h.world.cards[card.id] = replace(card, state=CardState.REJECTED)
    assert card.job_id is not None

    h.outreach.jobs.finish_job_if_done(ORG, card.job_id)

    assert h.job(card.job_id).status == JobStatus.RUNNING


@pytest.mark.parametrize("to", [JobStatus.CANCELLED, JobStatus.PAUSED])
def test_the_inbox_job_cannot_be_cancelled_or_paused_even_by_an_admin(
    h: Outreaching, to: JobStatus
) -> None:
    with h.uow() as uow:
        job_id = uow.jobs.inbox_job_id(ORG, now=NOW)
        uow.commit()

    with pytest.raises(InvalidTransition) as refused:
        h.outreach.jobs.set_job_status(ORG, job_id, to, by=actor(ADMIN, role="admin"))

    assert refused.value.message.startswith(f"Job #{job_id} is the replies inbox")
    assert "Reject its cards one by one instead" in refused.value.message
    assert h.job(job_id).status == JobStatus.RUNNING


def test_a_reply_is_sent_from_the_mailbox_that_received_the_message(h: Outreaching) -> None:
    body = "Thanks Dana, the fee schedule is attached."
    card = _reply_card(h, sender_user_id=OTHER_REP)
    to, subject = "dana@pinnacle.test", "Re: Fees"
    h.world.cards[card.id] = replace(
        card,
        type=CardType.REPLY_TO_EMAIL,
        action_payload={
            **card.action_payload,
            "to": to,
            "subject": subject,
            "body": body,
            "gmail_thread_id": "thread-9",
            "in_reply_to": "<m1@pinnacle.test>",
        },
        draft_fingerprint=draft_fingerprint(to=to, subject=subject, body=body),
    )
    fingerprint = h.card(card.id).draft_fingerprint

    # The rep whose mailbox received it may act on it, though the inbox has no owner.
    h.outreach.review.approve_card(actor(OTHER_REP), card.id, fingerprint=fingerprint)

    (sent,) = h.mailer.sent
    assert (sent.sender_user_id, sent.thread_id, sent.in_reply_to) == (
        OTHER_REP,
        "thread-9",
        "<m1@pinnacle.test>",
    )


# --- the triage channel ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "channel"),
    [
        ("<#C0123ABCD|replies>", "C0123ABCD"),
        ("<#C0123ABCD>", "C0123ABCD"),
        ("  C0123ABCD ", "C0123ABCD"),
        ("c0123abcd", "C0123ABCD"),
        ("G0PRIVATE1", "G0PRIVATE1"),
        ("#replies", None),
        ("D0123ABCD", None),
        ("<#D0123ABCD|dm>", None),
        ("<@U0123ABCD>", None),
        ("replies please", None),
        ("", None),
        ("C" + "1" * 40, None),
    ],
)
def test_a_channel_is_read_from_slack_s_escape_or_an_id(typed: str, channel: str | None) -> None:
    assert parse_channel(typed) == channel


class Directory:
    """What the chat says of channels (domain.ports.ChannelDirectory)."""

    def __init__(self, **channels: ChannelStatus) -> None:
        self.channels = channels
        self.asked: list[str] = []

    def channel_status(self, org_id: int, channel_id: str) -> ChannelStatus:
        self.asked.append(channel_id)
        if channel_id == "CBROKEN":
            raise ExternalServiceError("Slack answered missing_scope")
        return self.channels.get(channel_id, ChannelStatus(channel_id=channel_id, found=False))


def _triage(h: Outreaching, directory: Directory | None) -> Triage:
    def uow() -> TriageUnitOfWork:
        return FakeUnitOfWork(h.world, h.clock)

    return Triage(Deps(uow=uow, clock=h.clock), channels=directory)


ADMIN_ACTOR = Actor(org_id=ORG, user_id=ADMIN, role="admin")


def test_an_admin_sets_a_channel_salesbot_is_in_and_anyone_reads_it(h: Outreaching) -> None:
    directory = Directory(CTRI=ChannelStatus("CTRI", found=True, name="replies", is_member=True))
    triage = _triage(h, directory)

    view = triage.set_channel(ADMIN_ACTOR, ORG, "<#CTRI|replies>")

    assert (view.channel_id, view.warning) == ("CTRI", None)
    assert h.world.triage_channels[ORG] == "CTRI"
    shown = triage.show(ORG)
    assert shown.channel_id == "CTRI"
    assert shown.routing[-1] == "the triage channel <#CTRI>"
    lines = describe(shown)
    assert lines[0] == "Triage channel: <#CTRI>"
    assert lines[2].startswith("1. the DM of the rep whose mailbox received the reply")


def test_a_rep_cannot_change_the_triage_channel_and_is_told_who_can(h: Outreaching) -> None:
    triage = _triage(h, Directory())

    with pytest.raises(NotPermitted) as refused:
        triage.set_channel(actor(REP), ORG, "CTRI")
    with pytest.raises(NotPermitted):
        triage.clear(actor(REP), ORG)

    assert refused.value.message == (
        "Only an admin can change the triage channel; ask an admin of your organization."
    )
    assert ORG not in h.world.triage_channels


@pytest.mark.parametrize(
    ("status", "warning"),
    [
        (
            ChannelStatus("CTRI", found=True, is_member=False),
            "Salesbot is not in <#CTRI>: /invite @Salesbot there so cards can be posted.",
        ),
        (
            ChannelStatus("CTRI", found=False),
            "Salesbot cannot see <#CTRI>: it is private and Salesbot was not invited, or it "
            "does not exist. /invite @Salesbot there, or cards cannot be posted.",
        ),
    ],
)
def test_a_channel_salesbot_may_not_post_in_is_set_with_a_warning(
    h: Outreaching, status: ChannelStatus, warning: str
) -> None:
    view = _triage(h, Directory(CTRI=status)).set_channel(None, ORG, "CTRI")

    assert (view.channel_id, view.warning) == ("CTRI", warning)
    assert h.world.triage_channels[ORG] == "CTRI"


def test_an_archived_channel_is_refused_and_nothing_changes(h: Outreaching) -> None:
    h.world.triage_channels[ORG] = "COLD"
    directory = Directory(CTRI=ChannelStatus("CTRI", found=True, is_member=True, is_archived=True))

    with pytest.raises(InvalidInput, match="archived"):
        _triage(h, directory).set_channel(ADMIN_ACTOR, ORG, "CTRI")

    assert h.world.triage_channels[ORG] == "COLD"


def test_a_channel_that_cannot_be_checked_is_set_and_the_warning_says_why(h: Outreaching) -> None:
    checked = _triage(h, Directory()).set_channel(ADMIN_ACTOR, ORG, "CBROKEN")
    unchecked = _triage(h, None).set_channel(ADMIN_ACTOR, ORG, "CTRI")

    assert checked.warning == (
        "Salesbot could not check <#CBROKEN> (Slack answered missing_scope); it is set anyway."
    )
    assert unchecked.warning == (
        "Salesbot could not check <#CTRI>: Slack is not connected to this server."
    )


def test_setting_a_triage_channel_queues_the_reply_cards_that_had_nowhere_to_go(
    h: Outreaching,
) -> None:
    waiting = _reply_card(h, sender_user_id=REP)
    drafting = _reply_card(h, sender_user_id=REP)
    h.world.cards[drafting.id] = replace(drafting, state=CardState.SUGGESTED)
    posted = _reply_card(h, sender_user_id=REP)
    h.world.cards[posted.id] = replace(posted, slack_channel_id="D1", slack_message_ts="1.0")
    already = _reply_card(h, sender_user_id=REP)  # its post is queued: not queued again
    assert already.job_id is not None
    with h.uow() as uow:
        uow.tasks.add_many(
            ORG, already.job_id, [{"kind": "post_card", "input": {"card_id": already.id}}]
        )
        uow.commit()
    woken: list[bool] = []

    def uow() -> TriageUnitOfWork:
        return FakeUnitOfWork(h.world, h.clock)

    member = ChannelStatus(channel_id="CTRI", found=True, name="replies", is_member=True)
    triage = Triage(
        Deps(uow=uow, clock=h.clock),
        channels=Directory(CTRI=member),
        on_queued=lambda: woken.append(True),
    )
    view = triage.set_channel(ADMIN_ACTOR, ORG, "CTRI")

    assert view.reposted == 1
    assert woken == [True]
    queued = [t for t in h.world.tasks.values() if t.kind == "post_card"]
    assert [(t.job_id, t.input) for t in queued] == [
        (already.job_id, {"card_id": already.id}),
        (waiting.job_id, {"card_id": waiting.id}),
    ]
    assert "1 reply card that had nowhere to go will be posted now." in describe(view)


def test_without_a_chat_to_post_to_setting_the_channel_queues_nothing(h: Outreaching) -> None:
    _reply_card(h, sender_user_id=REP)

    view = _triage(h, None).set_channel(ADMIN_ACTOR, ORG, "CTRI")

    assert view.reposted == 0
    assert [t for t in h.world.tasks.values() if t.kind == "post_card"] == []


def test_garbage_is_refused_and_clear_forgets_the_channel(h: Outreaching) -> None:
    triage = _triage(h, Directory())
    h.world.triage_channels[ORG] = "CTRI"

    with pytest.raises(InvalidInput, match="name a channel"):
        triage.set_channel(ADMIN_ACTOR, ORG, "#no-such-thing")
    cleared = triage.clear(ADMIN_ACTOR, ORG)

    assert cleared.channel_id is None
    assert ORG not in h.world.triage_channels
    assert describe(cleared)[0] == "No triage channel is set: `/triage set #channel` (admins)."


# --- who may act on a reply card -------------------------------------------------------------


def test_another_rep_cannot_act_on_a_reply_card_of_the_ownerless_inbox(h: Outreaching) -> None:
    card = _reply_card(h, sender_user_id=REP)
    name = h.world.users[(ORG, REP)].label

    with pytest.raises(NotPermitted) as refused:
        authorize_card(h.uow(), actor(OTHER_REP), card)

    assert refused.value.message == (
        f"Only {name} (whose mailbox received this reply) or an admin can act on this card."
    )
    authorize_card(h.uow(), actor(REP), card)
    authorize_card(h.uow(), actor(ADMIN, role="admin"), card)


def test_an_inbox_card_without_a_mailbox_rep_is_for_admins_only(h: Outreaching) -> None:
    card = _reply_card(h)

    with pytest.raises(NotPermitted) as refused:
        authorize_card(h.uow(), actor(REP), card)

    assert refused.value.message.startswith("Only an admin can act on this card")
    authorize_card(h.uow(), actor(ADMIN, role="admin"), card)


def test_a_campaign_reply_card_is_its_mailbox_rep_s_and_its_job_owner_s(h: Outreaching) -> None:
    with h.uow() as uow:
        job_id = uow.jobs.add(
            ORG, name="Win-back", description=None, params={}, owner_id=REP, campaign_id=None
        ).id
        uow.commit()
    card = replace(_reply_card(h, sender_user_id=OTHER_REP), job_id=job_id)

    authorize_card(h.uow(), actor(OTHER_REP), card)
    authorize_card(h.uow(), actor(REP), card)  # REP launched the job
    stranger = actor(ADMIN + 1)
    with pytest.raises(NotPermitted) as refused:
        authorize_card(h.uow(), stranger, card)
    assert "(who launched this job) or an admin can act on this card." in refused.value.message
