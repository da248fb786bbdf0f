"""Gmail history sync through google-api-python-client and the Gmail stand-in, on SQLite and
PostgreSQL: pointer forward only, full sync when history is gone, failures kept and retried."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.detection import BounceSeverity, Detection, MessageKind
from domain.email_message import EmailFlag, ParsedEmail
from domain.inbound import MessageToFetch, NewMessage, ReadMessage
from integrations.gmail.sync import GmailSync, SyncSettings
from jobs.gmail_sync import GmailInboundProcessor
from sandbox.gmail_api import WatchCall
from storage.db import make_session_factory
from tests.support.corpus import corpus_dir
from tests.support.gmail_inbound import DANA, REP, TOPIC, Mailbox, connect_mailbox
from tests.support.google import (
    GoogleServer,
    encode_raw,
    make_email,
)


@pytest.fixture
def connect(google: GoogleServer, session_factory: Callable[[], Session]) -> Callable[..., Mailbox]:
    """Connect the rep's mailbox on the test's rolled-back transaction."""
    return lambda **options: connect_mailbox(google, session_factory, **options)


@pytest.fixture
def mailbox(connect: Callable[..., Mailbox]) -> Mailbox:
    return connect()


def _push_and_process(mailbox: Mailbox) -> int:
    with TestClient(mailbox.app()) as client:
        assert mailbox.post_push(client).status_code == 204
    return mailbox.processor.run_pending()


# -- history ----------------------------------------------------------------------------------


def test_history_sync_stores_and_parses_every_message_added_across_pages(
    connect: Callable[..., Mailbox],
) -> None:
    mailbox = connect(sync_settings=SyncSettings(page_size=2))
    ids = [mailbox.deliver(make_email(sender=DANA, to=REP, subject=f"Order {n}")) for n in range(5)]

    result = mailbox.sync.sync_account(mailbox.account_id)

    assert (result.mode, result.listed, result.stored, result.parsed, result.failed) == (
        "history",
        5,
        5,
        5,
        0,
    )
    assert mailbox.gmail_calls("history.list") == 3
    stored = mailbox.inbound()
    assert [(e.gmail_message_id, e.subject, e.status) for e in stored] == [
        (gmail_id, f"Order {n}", "parsed") for n, gmail_id in enumerate(ids)
    ]
    assert [e.label_ids for e in stored] == [["INBOX", "UNREAD"]] * 5
    assert mailbox.account().history_id == mailbox.google.gmail.history_id(REP)


def test_a_second_sync_with_nothing_new_fetches_nothing(mailbox: Mailbox) -> None:
    mailbox.deliver(make_email(sender=DANA, to=REP))
    mailbox.sync.sync_account(mailbox.account_id)

    again = mailbox.sync.sync_account(mailbox.account_id)

    assert (again.listed, again.stored) == (0, 0)
    assert mailbox.gmail_calls("messages.get") == 1
    assert mailbox.count_inbound() == 1


def test_expired_history_is_recovered_by_a_full_sync_with_no_message_missed(
    mailbox: Mailbox,
) -> None:
    ids = [mailbox.deliver(make_email(sender=DANA, to=REP, subject=f"Reply {n}")) for n in range(5)]
    mailbox.google.gmail.expire_history(REP, mailbox.google.gmail.history_id(REP))

    processed = _push_and_process(mailbox)

    assert processed == 1
    stored = mailbox.inbound()
    assert sorted((e.gmail_message_id, e.status) for e in stored) == sorted(
        (gmail_id, "parsed") for gmail_id in ids
    )
    assert [c.status for c in mailbox.google.gmail.calls if c.route == "history.list"] == [404]
    assert mailbox.gmail_calls("messages.list") == 1
    assert mailbox.account().history_id == mailbox.google.gmail.history_id(REP)
    assert [n.status for n in mailbox.notifications()] == ["done"]


def test_history_older_than_gmail_keeps_goes_straight_to_a_bounded_full_sync(
    connect: Callable[..., Mailbox],
) -> None:
    now = datetime.now(UTC)
    mailbox = connect(last_synced_at=now - timedelta(days=7))
    too_old = make_email(sender=DANA, to=REP, subject="Forty days ago")
    mailbox.deliver(too_old, internal_date=now - timedelta(days=40))
    recent = mailbox.deliver(
        make_email(sender=DANA, to=REP, subject="Six days ago"),
        internal_date=now - timedelta(days=6),
    )
    newest = mailbox.deliver(make_email(sender=DANA, to=REP, subject="Today"))

    result = mailbox.sync.sync_account(mailbox.account_id)

    assert result.mode == "full"
    assert mailbox.gmail_calls("history.list") == 0
    assert sorted(e.gmail_message_id for e in mailbox.inbound()) == sorted([recent, newest])


def test_a_full_sync_never_refetches_messages_already_stored(mailbox: Mailbox) -> None:
    first = mailbox.deliver(make_email(sender=DANA, to=REP, subject="Before"))
    mailbox.sync.sync_account(mailbox.account_id)
    second = mailbox.deliver(make_email(sender=DANA, to=REP, subject="After"))
    mailbox.google.gmail.expire_history(REP, mailbox.google.gmail.history_id(REP))

    result = mailbox.sync.sync_account(mailbox.account_id)

    assert (result.mode, result.listed, result.stored) == ("full", 2, 1)
    assert [e.gmail_message_id for e in mailbox.inbound()] == [first, second]
    assert mailbox.gmail_calls("messages.get") == 2


def test_mail_a_rep_sends_by_hand_is_stored_with_its_sent_label_and_drafts_are_not(
    mailbox: Mailbox,
) -> None:
    raw = make_email(sender=REP, to=DANA, subject="Following up by hand")
    mailbox.service().users().messages().send(userId="me", body={"raw": encode_raw(raw)}).execute()
    mailbox.deliver(make_email(sender=REP, to=DANA, subject="Draft"), labels=("DRAFT",))

    mailbox.sync.sync_account(mailbox.account_id)

    assert [(e.subject, e.from_email, e.label_ids) for e in mailbox.inbound()] == [
        ("Following up by hand", REP, ["SENT"])
    ]


def test_a_corpus_bounce_delivered_end_to_end_is_stored_with_its_dsn_fields(
    mailbox: Mailbox,
) -> None:
    raw = (corpus_dir() / "bounces" / "flanker" / "mailbox-full.eml").read_bytes()
    gmail_id = mailbox.deliver(raw)

    _push_and_process(mailbox)

    [bounce] = mailbox.inbound()
    assert (bounce.gmail_message_id, bounce.status, bounce.from_email, bounce.subject) == (
        gmail_id,
        "parsed",
        "MAILER-DAEMON@AOL.com",
        "Undelivered Mail Returned to Sender",
    )
    assert {k: bounce.headers[k] for k in ("Action", "Status", "Diagnostic-Code")} == {
        "Action": "failed",
        "Status": "5.2.2",
        "Diagnostic-Code": "smtp; 552 5.2.2 E4.12 user MAILBOX FULL",
    }
    assert bounce.delivery_status == [
        {
            "final_recipient": "rfc822; user@aol.com",
            "original_recipient": "rfc822;user@aol.com",
            "action": "failed",
            "status": "5.2.2",
            "diagnostic_code": "smtp; 552 5.2.2 E4.12 user MAILBOX FULL",
            "remote_mta": "dns; air-dc.gair-dc.mail.aol.com",
        }
    ]
    assert [e["message_id"] for e in bounce.embedded_messages] == ["<4E326A95.3010907@example.com>"]
    assert bounce.size_bytes == len(raw)
    detection = Detection.model_validate(bounce.detection)
    assert detection.kind is MessageKind.BOUNCE
    assert detection.bounce is not None
    assert [(r.address, r.severity) for r in detection.bounce.recipients] == [
        ("user@aol.com", BounceSeverity.HARD)
    ]
    assert detection.bounce.original_message_id == "<4E326A95.3010907@example.com>"


def test_the_detectors_run_at_parse_time_with_what_they_know_of_the_organization(
    mailbox: Mailbox,
) -> None:
    """Our reps are recognised, and mail to the `+unsub-<token>` address carries its token."""
    unsubscribe_to = REP.replace("@", "+unsub-o1c2.abcdefghijklmnop@")
    mailbox.deliver(make_email(sender=DANA, to=unsubscribe_to, subject="", body=""))
    mailbox.deliver(make_email(sender=REP, to=DANA, subject="Fwd: rates", body="see below"))
    mailbox.deliver(make_email(sender=DANA, to=REP, subject="Re: turn times", body="Yes please."))

    mailbox.sync.sync_account(mailbox.account_id)

    found = {e.subject: Detection.model_validate(e.detection) for e in mailbox.inbound()}
    assert found[""].unsubscribe is not None
    assert found[""].unsubscribe.token == "o1c2.abcdefghijklmnop"
    assert found["Fwd: rates"].from_own_rep
    assert found["Re: turn times"] == Detection()


def test_an_oversized_message_is_stored_truncated_with_a_flag(
    connect: Callable[..., Mailbox],
) -> None:
    mailbox = connect(sync_settings=SyncSettings(max_body_chars=1000))
    mailbox.deliver(make_email(sender=DANA, to=REP, body="appraisal " * 600))

    mailbox.sync.sync_account(mailbox.account_id)

    [stored] = mailbox.inbound()
    assert (stored.status, stored.flags, len(stored.body_text or "")) == (
        "parsed",
        [EmailFlag.TRUNCATED.value],
        1000,
    )


# -- the pointer ----------------------------------------------------------------------------------


def test_the_pointer_does_not_move_back_when_an_older_history_id_is_recorded(
    mailbox: Mailbox,
) -> None:
    start = mailbox.account().history_id
    assert start is not None
    now = mailbox.clock.now()
    lease = now + timedelta(minutes=10)

    ahead = mailbox.store.record_messages(
        mailbox.account_id, [], history_id=start + 50, synced_at=now, lease_until=lease
    )
    behind = mailbox.store.record_messages(
        mailbox.account_id,
        [NewMessage("19a0000000000001")],
        history_id=start + 20,
        synced_at=now - timedelta(minutes=1),
        lease_until=lease,
    )

    assert (ahead.pointer_moved, behind.pointer_moved) == (True, False)
    account = mailbox.account()
    assert (account.history_id, account.last_synced_at) == (start + 50, now)
    assert [m.gmail_id for m in behind.to_fetch] == ["19a0000000000001"]


def test_the_pointer_never_moves_backwards_under_two_concurrent_syncs(
    google: GoogleServer, committed_engine: Engine
) -> None:
    mailbox = connect_mailbox(google, make_session_factory(committed_engine))
    first_two = [mailbox.deliver(make_email(sender=DANA, to=REP)) for _ in range(2)]
    listed, go = threading.Event(), threading.Event()
    slow = GmailSync(
        mailbox.store, lambda _id: mailbox.pausing_service("/history", listed, go), mailbox.clock
    )
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(slow.sync_account(mailbox.account_id)))

    thread.start()
    assert listed.wait(15)  # the slow sync has read history up to the first two messages
    older_history_id = mailbox.google.gmail.history_id(REP)
    last_two = [mailbox.deliver(make_email(sender=DANA, to=REP)) for _ in range(2)]
    fast = mailbox.sync.sync_account(mailbox.account_id)
    go.set()
    thread.join(15)

    [slow_result] = results
    newest_history_id = mailbox.google.gmail.history_id(REP)
    assert (fast.history_id, fast.stored, fast.pointer_moved) == (newest_history_id, 4, True)
    assert (slow_result.history_id, slow_result.stored, slow_result.pointer_moved) == (
        older_history_id,
        0,
        False,
    )
    assert mailbox.account().history_id == newest_history_id
    assert sorted((e.gmail_message_id, e.status) for e in mailbox.inbound()) == sorted(
        (gmail_id, "parsed") for gmail_id in first_two + last_two
    )
    assert mailbox.gmail_calls("messages.get") == 4


def test_a_mailbox_one_processor_thread_is_syncing_is_left_alone_by_the_other(
    google: GoogleServer, committed_engine: Engine
) -> None:
    mailbox = connect_mailbox(google, make_session_factory(committed_engine))
    mailbox.deliver(make_email(sender=DANA, to=REP))
    listed, go = threading.Event(), threading.Event()
    first_service = iter([mailbox.pausing_service("/history", listed, go)])
    sync = GmailSync(
        mailbox.store, lambda _id: next(first_service, None) or mailbox.service(), mailbox.clock
    )
    processor = GmailInboundProcessor(
        sync=sync,
        store=mailbox.store,
        session_factory=mailbox.session_factory,
        clock=mailbox.clock,
        topic=TOPIC,
    )
    with TestClient(mailbox.app()) as client:
        assert mailbox.post_push(client, message_id="first").status_code == 204
        syncing = threading.Thread(target=processor.process_batch)
        syncing.start()
        assert listed.wait(15)  # one thread is syncing the mailbox
        assert mailbox.post_push(client, message_id="second").status_code == 204

        during = processor.process_batch()  # the other thread
        go.set()
        syncing.join(15)
    after = processor.run_pending()

    assert (during, after) == (0, 1)
    assert mailbox.gmail_calls("history.list") == 1
    assert sorted((n.pubsub_message_id, n.status) for n in mailbox.notifications()) == [
        ("first", "done"),
        ("second", "done"),
    ]
    assert [e.status for e in mailbox.inbound()] == ["parsed"]


# -- failures ----------------------------------------------------------------------------------


def test_a_message_whose_fetch_fails_is_kept_and_stored_by_a_later_retry(mailbox: Mailbox) -> None:
    gmail_id = mailbox.deliver(make_email(sender=DANA, to=REP, subject="Second try"))
    mailbox.google.gmail.fail_next("messages.get", 500, "backendError")
    failed_at = mailbox.clock.now()

    result = mailbox.sync.sync_account(mailbox.account_id)
    [kept] = mailbox.inbound()
    too_early = mailbox.processor.retry_failed()
    mailbox.clock.advance(seconds=61)
    retried = mailbox.processor.retry_failed()

    assert (result.stored, result.failed) == (1, 1)
    assert (kept.gmail_message_id, kept.status, kept.retry_count, kept.error) == (
        gmail_id,
        "failed",
        1,
        "messages.get: Gmail answered 500 (Backend Error)",
    )
    assert kept.next_attempt_at == failed_at + timedelta(minutes=1)
    assert (too_early, retried) == (0, 1)
    [stored] = mailbox.inbound()
    assert (stored.status, stored.subject, stored.error, stored.next_attempt_at) == (
        "parsed",
        "Second try",
        None,
        None,
    )
    assert mailbox.account().history_id == mailbox.google.gmail.history_id(REP)


def test_a_message_deleted_before_its_fetch_is_kept_as_gone(mailbox: Mailbox) -> None:
    gmail_id = mailbox.deliver(make_email(sender=DANA, to=REP))
    mailbox.google.gmail.delete_message(REP, gmail_id)

    mailbox.sync.sync_account(mailbox.account_id)

    assert [(e.gmail_message_id, e.status, e.error) for e in mailbox.inbound()] == [
        (gmail_id, "gone", "messages.get: Gmail answered 404 (Requested entity was not found.)")
    ]


def test_a_message_abandoned_by_a_crashed_worker_is_fetched_after_its_lease(
    mailbox: Mailbox,
) -> None:
    gmail_id = mailbox.deliver(make_email(sender=DANA, to=REP, subject="Orphan"))
    now = mailbox.clock.now()
    # A worker stored the id and moved the pointer, then died before fetching it.
    mailbox.store.record_messages(
        mailbox.account_id,
        [NewMessage(gmail_id)],
        history_id=mailbox.google.gmail.history_id(REP),
        synced_at=now,
        lease_until=now + timedelta(minutes=10),
    )

    during_lease = mailbox.processor.retry_failed()
    mailbox.clock.advance(minutes=11)
    after_lease = mailbox.processor.retry_failed()

    assert (during_lease, after_lease) == (0, 1)
    assert [(e.status, e.subject) for e in mailbox.inbound()] == [("parsed", "Orphan")]


def test_a_push_whose_sync_fails_is_kept_with_its_error_and_processed_later(
    mailbox: Mailbox,
) -> None:
    mailbox.deliver(make_email(sender=DANA, to=REP))
    mailbox.google.gmail.fail_next("history.list", 503, "backendError", times=2)
    with TestClient(mailbox.app()) as client:
        assert mailbox.post_push(client).status_code == 204

    mailbox.processor.run_pending()
    [waiting] = mailbox.notifications()
    mailbox.clock.advance(seconds=61)
    mailbox.processor.run_pending()

    assert (waiting.status, waiting.attempts, waiting.error) == (
        "pending",
        1,
        "history.list: Gmail answered 503 (Backend Error)",
    )
    assert [n.status for n in mailbox.notifications()] == ["done"]
    assert [e.status for e in mailbox.inbound()] == ["parsed"]


def test_text_postgresql_cannot_store_is_made_storable(mailbox: Mailbox) -> None:
    [row] = mailbox.store.record_messages(
        mailbox.account_id,
        [NewMessage("19a00000000000ff")],
        history_id=mailbox.google.gmail.history_id(REP),
        synced_at=mailbox.clock.now(),
        lease_until=mailbox.clock.now(),
    ).to_fetch
    parsed = ParsedEmail(
        subject="nul\x00byte",
        text="body\x00text \udcff",
        headers={"X-Failed-Recipients": "a\x00b"},
        gmail_id="19a00000000000ff",
    )

    mailbox.store.save_parsed([ReadMessage(row, parsed, Detection(notes=("nul\x00 in a note",)))])

    [stored] = mailbox.inbound()
    assert (stored.status, stored.subject, stored.body_text, stored.headers) == (
        "parsed",
        "nul\ufffdbyte",
        "body\ufffdtext ?",
        {"X-Failed-Recipients": "a\ufffdb"},
    )
    assert stored.detection["notes"] == ["nul\ufffd in a note"]


def test_a_failed_message_waits_for_a_person_after_its_last_attempt(mailbox: Mailbox) -> None:
    [row] = mailbox.store.record_messages(
        mailbox.account_id,
        [NewMessage("19a00000000000aa")],
        history_id=mailbox.google.gmail.history_id(REP),
        synced_at=mailbox.clock.now(),
        lease_until=mailbox.clock.now(),
    ).to_fetch

    mailbox.store.mark_failed(
        MessageToFetch(row.row_id, row.account_id, row.gmail_id, attempts=9),
        error="messages.get: Gmail answered 500 (Backend Error)",
        now=mailbox.clock.now(),
    )

    [kept] = mailbox.inbound()
    assert (kept.status, kept.retry_count, kept.next_attempt_at) == ("failed", 1, None)


# -- periodic jobs -------------------------------------------------------------------------------


def test_catch_up_syncs_mailboxes_whose_pushes_were_lost_and_skips_fresh_ones(
    connect: Callable[..., Mailbox],
) -> None:
    mailbox = connect(last_synced_at=datetime.now(UTC) - timedelta(minutes=10))
    mailbox.deliver(make_email(sender=DANA, to=REP))
    mailbox.deliver(make_email(sender=DANA, to=REP))

    first = mailbox.processor.catch_up()
    second = mailbox.processor.catch_up()

    assert (first, second) == (1, 0)
    assert [e.status for e in mailbox.inbound()] == ["parsed", "parsed"]


def test_watches_are_renewed_on_inbox_and_sent_when_they_expire_within_two_days(
    mailbox: Mailbox,
) -> None:
    first = mailbox.processor.renew_watches()
    fresh = mailbox.processor.renew_watches()
    mailbox.clock.advance(days=5, hours=1)
    expiring = mailbox.processor.renew_watches()

    assert (first, fresh, expiring) == (1, 0, 1)
    calls = mailbox.google.gmail.watch_calls
    assert [(c.email, c.topic_name, c.label_ids, c.label_filter_behavior) for c in calls] == [
        (REP, TOPIC, ("INBOX", "SENT"), "include")
    ] * 2
    latest: WatchCall = calls[-1]
    assert mailbox.account().watch_expires_at == datetime.fromtimestamp(
        latest.expiration_ms / 1000, UTC
    )


def test_the_first_watch_gives_a_new_mailbox_its_history_pointer_and_later_ones_keep_it(
    connect: Callable[..., Mailbox],
) -> None:
    """Mail arriving after the watch is listed from its historyId: no full sync is needed."""
    mailbox = connect(never_synced=True)
    mailbox.deliver(make_email(sender=DANA, to=REP, subject="Before the watch"))

    mailbox.processor.renew_watches()
    watched_at = mailbox.account().history_id
    mailbox.deliver(make_email(sender=DANA, to=REP, subject="After the watch"))
    result = mailbox.sync.sync_account(mailbox.account_id)
    mailbox.clock.advance(days=6)
    mailbox.processor.renew_watches()

    assert watched_at is not None
    assert result.mode == "history"
    assert [e.subject for e in mailbox.inbound()] == ["After the watch"]
    # A renewal answers a newer historyId; the pointer the sync moved is kept.
    assert mailbox.account().history_id == result.history_id
    assert len(mailbox.google.gmail.watch_calls) == 2


def test_catch_up_watches_a_newly_connected_mailbox_before_syncing_it(
    connect: Callable[..., Mailbox],
) -> None:
    mailbox = connect(never_synced=True)
    mailbox.deliver(make_email(sender=DANA, to=REP, subject="Before connecting"))

    synced = mailbox.processor.catch_up()
    again = mailbox.processor.catch_up()

    assert (synced, again) == (1, 0)
    assert len(mailbox.google.gmail.watch_calls) == 1
    assert mailbox.account().watch_expires_at is not None
    # The pointer came from the watch: the history sync found nothing older to store.
    assert mailbox.inbound() == []
    assert (mailbox.gmail_calls("messages.list"), mailbox.gmail_calls("history.list")) == (0, 1)


# -- concurrency of one sync ---------------------------------------------------------------------


def test_fetch_threads_and_parser_processes_store_every_message_once_in_order(
    connect: Callable[..., Mailbox], caplog: pytest.LogCaptureFixture
) -> None:
    mailbox = connect(sync_settings=SyncSettings(fetch_threads=3, parse_workers=1))
    ids = [
        mailbox.deliver(make_email(sender=DANA, to=REP, subject=f"Order {n}")) for n in range(120)
    ]
    mailbox.google.gmail.fail_next("messages.get", 500, "backendError", times=2)

    try:
        result = mailbox.sync.sync_account(mailbox.account_id)
    finally:
        mailbox.sync.close()

    assert (result.stored, result.parsed, result.failed) == (120, 118, 2)
    stored = mailbox.inbound()
    assert [e.gmail_message_id for e in stored] == ids
    parsed = [e for e in stored if e.status == "parsed"]
    assert [e.subject for e in parsed] == [f"Order {ids.index(e.gmail_message_id)}" for e in parsed]
    assert sorted(e.status for e in stored) == ["failed"] * 2 + ["parsed"] * 118
    assert mailbox.gmail_calls("messages.get") == 120
    assert "storing a batch of parsed messages failed" not in caplog.text


def test_a_revoked_grant_stops_the_sync_with_a_reason_and_keeps_the_push(
    mailbox: Mailbox,
) -> None:
    mailbox.deliver(make_email(sender=DANA, to=REP))
    mailbox.google.oauth.revoke_grant(REP)
    mailbox.google.oauth.expire_access_tokens(REP)

    _push_and_process(mailbox)

    [waiting] = mailbox.notifications()
    assert (waiting.status, waiting.error) == (
        "pending",
        "Google refused the mailbox's credentials (revoked or expired grant); reconnect Gmail",
    )
    assert mailbox.count_inbound() == 0
