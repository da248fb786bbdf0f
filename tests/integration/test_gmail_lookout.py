"""GmailLookout against the Gmail stand-in, on SQLite and PostgreSQL: what a last look reads
(the thread but the mailbox's own mail, the contact's mail since the last send), what it
stores for the pipeline and what it leaves alone (the history pointer), and its failures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.errors import ExternalServiceError
from integrations.gmail.lookout import GmailLookout
from storage import models as m
from tests.support.gmail_inbound import DANA, REP, Mailbox, connect_mailbox
from tests.support.google import GoogleServer, make_email

SINCE = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
COLLEAGUE = "processor@pinnaclelending.example"


@pytest.fixture
def mailbox(google: GoogleServer, session_factory: Callable[[], Session]) -> Mailbox:
    return connect_mailbox(google, session_factory)


class Woken:
    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


def lookout(mailbox: Mailbox, woken: Woken | None = None) -> GmailLookout:
    return GmailLookout(
        store=mailbox.store,
        sync=mailbox.sync,
        service_for_account=mailbox.service,
        mailbox_for=lambda org_id, user_id: (mailbox.account_id, REP) if user_id == 7 else None,
        clock=mailbox.clock,
        on_stored=woken,
    )


def deliver(mailbox: Mailbox, raw: bytes, *, at: datetime, labels: tuple[str, ...]) -> str:
    return mailbox.google.gmail.deliver(REP, raw, labels=labels, internal_date=at)


def answer(*, sender: str, to: str) -> bytes:
    """An answer in the campaign's thread."""
    return make_email(
        sender=sender,
        to=to,
        subject="Re: Turn times",
        in_reply_to="<step1@salesbot.test>",
        references=["<step1@salesbot.test>"],
    )


def campaign_thread(mailbox: Mailbox) -> tuple[str, dict[str, str]]:
    """The campaign's email and what came after it; return the thread id and the Gmail ids."""
    ours = make_email(sender=REP, to=DANA, message_id="<step1@salesbot.test>", date=SINCE)
    sent = deliver(mailbox, ours, at=SINCE, labels=("SENT",))
    thread_id = mailbox.google.gmail.message(REP, sent).thread_id
    ids = {
        "older": deliver(
            mailbox,
            make_email(sender=DANA, to=REP, subject="Appraisal for 12 Oak St"),
            at=SINCE - timedelta(days=3),
            labels=("INBOX",),
        ),
        "reply": deliver(
            mailbox,
            answer(sender=DANA, to=REP),
            at=SINCE + timedelta(hours=2),
            labels=("INBOX", "UNREAD"),
        ),
        "colleague": deliver(
            mailbox,
            answer(sender=COLLEAGUE, to=REP),
            at=SINCE + timedelta(hours=3),
            labels=("INBOX", "UNREAD"),
        ),
        "rep_by_hand": deliver(
            mailbox,
            answer(sender=REP, to=DANA),
            at=SINCE + timedelta(hours=4),
            labels=("SENT",),
        ),
        "new_thread": deliver(
            mailbox,
            make_email(sender=DANA, to=REP, subject="Fee schedule?"),
            at=SINCE + timedelta(days=1),
            labels=("INBOX", "UNREAD"),
        ),
    }
    return thread_id, ids


def stored(mailbox: Mailbox) -> dict[str, str]:
    return {row.gmail_message_id: row.status for row in mailbox.inbound()}


def test_a_look_stores_the_contacts_side_of_the_thread_and_their_new_mail(
    mailbox: Mailbox,
) -> None:
    thread_id, ids = campaign_thread(mailbox)
    before = mailbox.account()
    woken = Woken()

    result = lookout(mailbox, woken).look(
        mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id=thread_id, since=SINCE
    )

    assert (result.found, result.stored, result.unread, result.holds_step) == (3, 3, 0, True)
    assert result.description == (
        f"3 messages from {DANA}'s side since the last send in {REP}: 3 new to Salesbot, "
        "0 not yet read"
    )
    assert stored(mailbox) == {
        ids["reply"]: "parsed",
        ids["colleague"]: "parsed",
        ids["new_thread"]: "parsed",
    }
    assert {row.from_email for row in mailbox.inbound()} == {DANA, COLLEAGUE}
    assert woken.times == 1
    after = mailbox.account()
    # A thread and a search are not the mailbox's history: its sync owes it the rest.
    assert (after.history_id, after.last_synced_at) == (before.history_id, before.last_synced_at)


def test_a_second_look_waits_for_what_the_pipeline_has_not_read_and_not_longer(
    mailbox: Mailbox,
) -> None:
    thread_id, ids = campaign_thread(mailbox)
    look = lookout(mailbox)
    look.look(
        mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id=thread_id, since=SINCE
    )

    waiting = look.look(
        mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id=thread_id, since=SINCE
    )
    with mailbox.session_factory() as session:
        session.execute(
            update(m.InboundEmail)
            .where(m.InboundEmail.gmail_message_id.in_([ids["reply"], ids["colleague"]]))
            .values(status="processed")
        )
        session.commit()
    one_left = look.look(
        mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id=thread_id, since=SINCE
    )

    assert (waiting.found, waiting.stored, waiting.unread, waiting.holds_step) == (3, 0, 3, True)
    assert (one_left.found, one_left.stored, one_left.unread) == (3, 0, 1)
    assert len(mailbox.inbound()) == 3


def test_mail_the_history_sync_stored_already_is_not_stored_again(mailbox: Mailbox) -> None:
    thread_id, ids = campaign_thread(mailbox)
    mailbox.sync.sync_account(mailbox.account_id)
    with mailbox.session_factory() as session:
        session.execute(update(m.InboundEmail).values(status="processed"))
        session.commit()
    count = mailbox.count_inbound()

    result = lookout(mailbox).look(
        mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id=thread_id, since=SINCE
    )

    assert (result.found, result.stored, result.unread, result.holds_step) == (3, 0, 0, False)
    assert mailbox.count_inbound() == count


def test_a_deleted_thread_still_leaves_the_search(mailbox: Mailbox) -> None:
    _, ids = campaign_thread(mailbox)

    result = lookout(mailbox).look(
        mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id="18c0ffee", since=SINCE
    )

    assert (result.found, result.stored) == (2, 2)
    assert set(stored(mailbox)) == {ids["reply"], ids["new_thread"]}


def test_a_look_without_a_connected_mailbox_asks_gmail_nothing(mailbox: Mailbox) -> None:
    thread_id, _ = campaign_thread(mailbox)
    calls = len(mailbox.google.gmail.calls)

    result = lookout(mailbox).look(
        mailbox.org_id, sender_user_id=8, contact_email=DANA, thread_id=thread_id, since=SINCE
    )

    assert (result.found, result.holds_step) == (0, False)
    assert result.description == "no connected mailbox of the sender to look in"
    assert len(mailbox.google.gmail.calls) == calls


@pytest.mark.parametrize("route", ["threads.get", "messages.list"])
def test_gmail_failing_raises_and_stores_nothing(mailbox: Mailbox, route: str) -> None:
    thread_id, _ = campaign_thread(mailbox)
    mailbox.google.gmail.fail_next(route, 503, "backendError", times=3)

    with pytest.raises(ExternalServiceError, match="Gmail answered 503") as raised:
        lookout(mailbox).look(
            mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id=thread_id, since=SINCE
        )

    assert raised.value.retryable
    assert mailbox.count_inbound() == 0


def test_a_revoked_grant_is_an_external_failure(mailbox: Mailbox) -> None:
    thread_id, _ = campaign_thread(mailbox)
    mailbox.google.oauth.revoke_grant(REP)

    with pytest.raises(ExternalServiceError):
        lookout(mailbox).look(
            mailbox.org_id, sender_user_id=7, contact_email=DANA, thread_id=thread_id, since=SINCE
        )
    with mailbox.session_factory() as session:
        assert session.scalars(select(m.InboundEmail)).all() == []
