"""Inbound Gmail storage: push notifications, message rows, the mailbox history pointer.

A named transaction owner: this durable push/sync queue commits on its own, outside the
unit of work (`storage/uow.py`), and `tools/check_commits.py` allows it for that reason.
Every method is one short transaction of its own, because each step of the sync must be
durable before the next one starts: a notification is committed before its push is
answered, message ids are committed together with the pointer that moves past them,
and a fetched message is committed before its lease runs out.

Claims take rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas share the work
without taking the same row; on SQLite the writer lock (BEGIN IMMEDIATE) serialises them.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Integer,
    String,
    Table,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.detection import DetectionContext
from domain.email_message import ParsedEmail
from domain.inbound import (
    CONNECTED,
    MAX_FETCH_ATTEMPTS,
    MAX_NOTIFICATION_ATTEMPTS,
    ClaimedNotification,
    InboundStatus,
    MessageToFetch,
    NewMessage,
    NotificationStatus,
    PushNotice,
    ReadMessage,
    RecordedMessages,
    SyncState,
    retry_delay,
)
from domain.last_look import RecordedFinds
from storage import models as m
from storage.db import SessionFactory
from storage.models import GmailPushNotification
from storage.sql import rowcount
from storage.types import UTCDateTime

# Rows per INSERT statement: well under SQLite's 32,766 bound parameters.
_INSERT_CHUNK: Final = 500
_ERROR_CHARS: Final = 2000
_WAITING: Final = (InboundStatus.RECEIVED.value, InboundStatus.FAILED.value)


def _insert_for(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def clean_text(value: str | None, limit: int | None = None) -> str | None:
    """Make text storable on PostgreSQL: no NUL characters, no lone surrogates, cut to `limit`.

    PostgreSQL refuses NUL in text and `\\u0000` in JSONB; a message carrying one must
    still be stored, so it becomes U+FFFD.
    """
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:limit] if limit is not None else value


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {str(clean_text(str(k))): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return value


def _error_text(error: str) -> str:
    return clean_text(error, _ERROR_CHARS) or ""


def _parsed_values(parsed: ParsedEmail) -> dict[str, Any]:
    """Return the inbound_emails columns of a parsed message."""
    return {
        "gmail_thread_id": clean_text(parsed.gmail_thread_id, 64),
        "message_id_header": clean_text(parsed.message_id, 998),
        "in_reply_to": clean_text(parsed.in_reply_to, 998),
        "references": _clean_json(list(parsed.references)),
        "from_email": clean_text(parsed.from_email, 320),
        "from_name": clean_text(parsed.from_name, 300),
        "to_emails": _clean_json(list(parsed.to)),
        "cc_emails": _clean_json(list(parsed.cc)),
        "subject": clean_text(parsed.subject),
        "received_at": parsed.internal_date or parsed.date,
        "body_text": clean_text(parsed.text),
        "reply_text": clean_text(parsed.reply_text),
        "headers": _clean_json(dict(parsed.headers)),
        "attachments": _clean_json([a.model_dump(mode="json") for a in parsed.attachments]),
        "flags": sorted(flag.value for flag in parsed.flags),
        "defects": _clean_json(list(parsed.defects)),
        "label_ids": list(parsed.label_ids),
        "size_bytes": parsed.size,
        "delivery_status": _clean_json([r.model_dump(mode="json") for r in parsed.delivery_status]),
        "embedded_messages": _clean_json(
            [e.model_dump(mode="json") for e in parsed.embedded_messages]
        ),
    }


def _push_statements(dialect: str) -> tuple[Any, Any]:
    """The statements that store a batch of pushes; built once per dialect.

    The accounts of addresses, and the INSERT of notification rows RETURNING the new ones:
    on PostgreSQL from arrays joined to the accounts, elsewhere a multi-row INSERT of rows
    built from the accounts read first.
    """
    a = m.GmailAccount
    # gmail_accounts holds one row per connected mailbox: scanning it by lower(email) is
    # cheap, and finds the row whatever case the address was stored in. FOR KEY SHARE keeps
    # the accounts from being deleted before the rows that point at them are written.
    accounts = (
        select(a.id, a.org_id, func.lower(a.email).label("address"))
        .where(func.lower(a.email).in_(bindparam("addresses", expanding=True)))
        .order_by(a.id)
        .with_for_update(read=True, key_share=True)
    )
    if dialect == "postgresql":
        return accounts, _INSERT_PUSHES_UNNESTED
    table = cast(Table, GmailPushNotification.__table__)
    # The Core table, not the entity: an ORM insert given parameters is a bulk INSERT.
    rows = (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["gmail_account_id", "pubsub_message_id"])
        .returning(table.c.gmail_account_id, table.c.pubsub_message_id, table.c.email_address)
    )
    return accounts, rows


_INSERT_PUSHES_UNNESTED: Final = text(
    """
    INSERT INTO gmail_push_notifications
        (org_id, gmail_account_id, pubsub_message_id, email_address, history_id, published_at,
         status, attempts, not_before)
    SELECT a.org_id, a.id, push.message_id, push.address, push.history_id, push.published_at,
           :status, 0, :now
    FROM unnest(:message_ids, :addresses, :history_ids, :published)
         WITH ORDINALITY AS push (message_id, address, history_id, published_at, position)
    JOIN gmail_accounts AS a ON lower(a.email) = push.address
    ORDER BY push.position, a.id
    ON CONFLICT (gmail_account_id, pubsub_message_id) DO NOTHING
    RETURNING email_address, pubsub_message_id
    """
).bindparams(
    bindparam("message_ids", type_=postgresql.ARRAY(String())),
    bindparam("addresses", type_=postgresql.ARRAY(String())),
    bindparam("history_ids", type_=postgresql.ARRAY(BigInteger())),
    bindparam("published", type_=postgresql.ARRAY(DateTime(timezone=True))),
    bindparam("now", type_=UTCDateTime()),
)


def _insert_pushes_unnested(
    connection: Connection,
    insert_rows: Any,
    notices: Sequence[PushNotice],
    keys: Sequence[tuple[str, str]],
    now: datetime,
) -> Counter[tuple[str, str]]:
    """INSERT the rows of a batch of pushes (PostgreSQL); count new rows per push key."""
    result = connection.execute(
        insert_rows,
        {
            "message_ids": [message_id for _address, message_id in keys],
            "addresses": [address for address, _message_id in keys],
            "history_ids": [n.history_id for n in notices],
            "published": [
                n.published_at.astimezone(UTC) if n.published_at is not None else None
                for n in notices
            ],
            "status": NotificationStatus.PENDING.value,
            "now": now,
        },
    )
    return Counter((row.email_address, row.pubsub_message_id) for row in result)


def _insert_pushes(
    connection: Connection,
    statements: tuple[Any, Any],
    notices: Sequence[PushNotice],
    keys: Sequence[tuple[str, str]],
    now: datetime,
) -> tuple[Counter[tuple[str, str]], set[str]]:
    """INSERT the rows of a batch of pushes; count new rows per push key, and known addresses."""
    find_accounts, insert_rows = statements
    accounts: dict[str, list[tuple[int, int]]] = {}
    for row in connection.execute(find_accounts, {"addresses": sorted({k[0] for k in keys})}):
        accounts.setdefault(row.address, []).append((row.id, row.org_id))
    rows = [
        {
            "org_id": org_id,
            "gmail_account_id": account_id,
            "pubsub_message_id": message_id,
            "email_address": address,
            "history_id": notice.history_id,
            "published_at": notice.published_at,
            "status": NotificationStatus.PENDING.value,
            "attempts": 0,
            "not_before": now,
        }
        for notice, (address, message_id) in zip(notices, keys, strict=True)
        for account_id, org_id in accounts.get(address, ())
    ]
    # RETURNING, not rowcount: drivers disagree on it for ON CONFLICT DO NOTHING.
    # executemany: SQLAlchemy sends the rows as one multi-row INSERT.
    result = connection.execute(insert_rows, rows) if rows else ()
    new = Counter((row.email_address, row.pubsub_message_id) for row in result)
    return new, set(accounts)


def _insert_ids(
    session: Session,
    org_id: int,
    account_id: int,
    ordered: Sequence[NewMessage],
    lease_until: datetime,
) -> list[tuple[int, str]]:
    """INSERT message rows in multi-row statements; return (row id, Gmail id) of new rows."""
    table = m.InboundEmail.__table__
    stmt = (
        _insert_for(session)(table)
        .on_conflict_do_nothing(index_elements=["gmail_account_id", "gmail_message_id"])
        .returning(table.c.id, table.c.gmail_message_id)
    )
    inserted: list[tuple[int, str]] = []
    for part in _chunks(ordered, _INSERT_CHUNK):
        values = [
            {
                "org_id": org_id,
                "gmail_account_id": account_id,
                "gmail_message_id": msg.gmail_id[:64],
                "gmail_thread_id": (msg.thread_id or "")[:64] or None,
                "label_ids": list(msg.label_ids),
                "status": InboundStatus.RECEIVED.value,
                "next_attempt_at": lease_until,
                "retry_count": 0,
            }
            for msg in part
        ]
        # executemany: SQLAlchemy batches the rows into multi-row INSERTs
        # ("insertmanyvalues") from one cached statement, RETURNING the new rows.
        result = session.execute(stmt, values)
        inserted.extend((row.id, row.gmail_message_id) for row in result)
    return inserted


# PostgreSQL takes the ids as three arrays, whatever their number: one short statement,
# instead of a multi-row INSERT whose thousands of parameters the driver must rewrite
# (with the JSON defaults of every column not given). Rows go in the order given.
_INSERT_UNNESTED: Final = text(
    """
    INSERT INTO inbound_emails
        (org_id, gmail_account_id, gmail_message_id, gmail_thread_id, label_ids, status,
         next_attempt_at, retry_count)
    SELECT :org_id, :account_id, new.gmail_id, new.thread_id, CAST(new.labels AS jsonb),
           :status, :lease_until, 0
    FROM unnest(:gmail_ids, :thread_ids, :labels) WITH ORDINALITY
         AS new (gmail_id, thread_id, labels, position)
    ORDER BY new.position
    ON CONFLICT (gmail_account_id, gmail_message_id) DO NOTHING
    RETURNING id, gmail_message_id
    """
).bindparams(
    bindparam("gmail_ids", type_=postgresql.ARRAY(String())),
    bindparam("thread_ids", type_=postgresql.ARRAY(String())),
    bindparam("labels", type_=postgresql.ARRAY(String())),
    bindparam("lease_until", type_=UTCDateTime()),
)


def _insert_ids_unnested(
    session: Session,
    org_id: int,
    account_id: int,
    ordered: Sequence[NewMessage],
    lease_until: datetime,
) -> list[tuple[int, str]]:
    """INSERT message rows in one statement (PostgreSQL); return the new rows' ids."""
    result = session.execute(
        _INSERT_UNNESTED,
        {
            "org_id": org_id,
            "account_id": account_id,
            "gmail_ids": [msg.gmail_id[:64] for msg in ordered],
            "thread_ids": [(msg.thread_id or "")[:64] or None for msg in ordered],
            "labels": [json.dumps(list(msg.label_ids)) for msg in ordered],
            "status": InboundStatus.RECEIVED.value,
            "lease_until": lease_until,
        },
    )
    return [(row.id, row.gmail_message_id) for row in result]


def _claim_statement(dialect: str) -> Any:
    """UPDATE the due notifications to processing, RETURNING them (SKIP LOCKED on PostgreSQL)."""
    n = cast(Table, GmailPushNotification.__table__)
    due = (
        select(n.c.id)
        .where(
            n.c.not_before <= bindparam("now", type_=UTCDateTime()),
            n.c.status.in_([NotificationStatus.PENDING.value, NotificationStatus.PROCESSING.value]),
            n.c.gmail_account_id.not_in(bindparam("skip", expanding=True)),
        )
        .order_by(n.c.not_before, n.c.id)
        .limit(bindparam("limit", type_=Integer()))
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (
        update(n)
        .where(n.c.id.in_(due.scalar_subquery()))
        .values(
            status=NotificationStatus.PROCESSING.value,
            not_before=bindparam("lease_until", type_=UTCDateTime()),
            attempts=n.c.attempts + 1,
        )
        .returning(n.c.id, n.c.gmail_account_id, n.c.history_id, n.c.attempts)
    )


class SqlInboundStore:
    """The inbound store on SQLAlchemy (implements `domain.inbound.InboundStore`)."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory
        # The push INSERT, built once per dialect: pushes are the hottest write.
        self._push_statements: dict[str, Any] = {}
        self._claim_statements: dict[str, Any] = {}

    # -- mailboxes -------------------------------------------------------------------------

    def sync_state(self, account_id: int) -> SyncState | None:
        """Return a mailbox's sync state, or None if the account does not exist."""
        with self._sessions() as session:
            row = session.get(m.GmailAccount, account_id)
            if row is None:
                return None
            return SyncState(
                account_id=row.id,
                org_id=row.org_id,
                email=row.email,
                status=row.status,
                history_id=row.history_id,
                last_synced_at=row.last_synced_at,
                watch_expires_at=row.watch_expires_at,
                connected_at=row.created_at,
            )

    def accounts_due_for_sync(self, *, synced_before: datetime) -> list[int]:
        """Return connected mailboxes not synced since a time (pushes may have been lost)."""
        a = m.GmailAccount
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(a.id)
                    .where(
                        a.status == CONNECTED,
                        or_(a.last_synced_at.is_(None), a.last_synced_at < synced_before),
                    )
                    .order_by(a.id)
                )
            )

    def accounts_needing_watch(self, *, expiring_before: datetime) -> list[int]:
        """Return connected mailboxes without a watch or whose watch expires before a time."""
        a = m.GmailAccount
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(a.id)
                    .where(
                        a.status == CONNECTED,
                        or_(a.watch_expires_at.is_(None), a.watch_expires_at < expiring_before),
                    )
                    .order_by(a.id)
                )
            )

    def set_watch(
        self, account_id: int, *, expires_at: datetime, history_id: int | None = None
    ) -> None:
        """Remember when a mailbox's push watch expires, and its first history pointer.

        The pointer is only set where there is none: a mailbox already synced keeps its own,
        which may be older than the watch's (messages between them are still to list).
        """
        a = m.GmailAccount
        values: dict[str, Any] = {"watch_expires_at": expires_at}
        if history_id is not None:
            values["history_id"] = func.coalesce(a.history_id, history_id)
        with self._sessions() as session:
            session.execute(update(a).where(a.id == account_id).values(**values))
            session.commit()

    # -- push notifications -------------------------------------------------------------------

    def store_pushes(self, notices: Sequence[PushNotice], *, now: datetime) -> list[int | None]:
        """Store pushes, one row per mailbox of each push's address, in one transaction.

        Returns, per push, how many rows are new (0: a redelivery), or None when no
        account has the address. Rows are keyed by (account, Pub/Sub message id): an
        address connected in two organizations gets a notification in each. A batch is
        one INSERT on PostgreSQL (plus a look at the accounts if some push added no row),
        two statements elsewhere, whatever the number of pushes.
        """
        if not notices:
            return []
        keys = [(n.email.strip().lower()[:320], n.message_id[:128]) for n in notices]
        with self._sessions() as session:
            connection = session.connection()
            dialect = connection.dialect.name
            statements = self._push_statements.get(dialect)
            if statements is None:
                statements = self._push_statements[dialect] = _push_statements(dialect)
            find_accounts, insert_rows = statements
            if dialect == "postgresql":
                new = _insert_pushes_unnested(connection, insert_rows, notices, keys, now)
                known = {address for address, _message_id in new}
                unsure = {address for address, _message_id in keys if address not in known}
                if unsure:  # a redelivery, or an address no account has
                    found = connection.execute(find_accounts, {"addresses": sorted(unsure)})
                    known.update(row.address for row in found)
            else:
                new, known = _insert_pushes(connection, statements, notices, keys, now)
            session.commit()
        outcomes: list[int | None] = []
        for key in keys:
            # A push sent twice in one batch is new once: the first copy counts it.
            added = new.pop(key, 0)
            outcomes.append(added if added or key[0] in known else None)
        return outcomes

    def claim_notifications(
        self,
        *,
        limit: int,
        now: datetime,
        lease_until: datetime,
        skip_accounts: Collection[int] = (),
    ) -> list[ClaimedNotification]:
        """Claim due notifications (pending, or processing with an expired lease).

        Notifications of `skip_accounts` (mailboxes being synced) are left where they are.
        One statement, built once: the processor threads ask after every stored push.
        """
        with self._sessions() as session:
            dialect = session.get_bind().dialect.name
            stmt = self._claim_statements.get(dialect)
            if stmt is None:
                stmt = self._claim_statements[dialect] = _claim_statement(dialect)
            rows = session.connection().execute(
                stmt,
                {
                    "now": now,
                    "lease_until": lease_until,
                    "limit": limit,
                    "skip": list(skip_accounts),
                },
            )
            claimed = [
                ClaimedNotification(
                    id=r.id,
                    account_id=r.gmail_account_id,
                    history_id=r.history_id,
                    attempts=r.attempts,
                )
                for r in sorted(rows, key=lambda r: r.id)
            ]
            session.commit()
        return claimed

    def finish_notifications(self, ids: Iterable[int], *, now: datetime) -> None:
        """Mark notifications processed."""
        wanted = list(ids)
        if not wanted:
            return
        n = GmailPushNotification
        with self._sessions() as session:
            for part in _chunks(wanted, _INSERT_CHUNK):
                session.execute(
                    update(n)
                    .where(n.id.in_(part))
                    .values(
                        status=NotificationStatus.DONE.value,
                        not_before=None,
                        processed_at=now,
                        error=None,
                    )
                )
            session.commit()

    def defer_notifications(
        self, claimed: Sequence[ClaimedNotification], *, error: str, now: datetime
    ) -> None:
        """Put notifications back for a later attempt, or mark them failed after the last."""
        n = GmailPushNotification
        with self._sessions() as session:
            for note in claimed:
                final = note.attempts >= MAX_NOTIFICATION_ATTEMPTS
                session.execute(
                    update(n)
                    .where(n.id == note.id)
                    .values(
                        status=(
                            NotificationStatus.FAILED.value
                            if final
                            else NotificationStatus.PENDING.value
                        ),
                        not_before=None if final else now + retry_delay(note.attempts),
                        error=_error_text(error),
                    )
                )
            session.commit()

    def purge_notifications(self, *, processed_before: datetime) -> int:
        """Delete notifications done or failed before a time; return how many."""
        n = GmailPushNotification
        with self._sessions() as session:
            result = session.execute(
                delete(n).where(
                    n.not_before.is_(None),
                    n.status.in_([NotificationStatus.DONE.value, NotificationStatus.FAILED.value]),
                    n.created_at < processed_before,
                )
            )
            session.commit()
        return rowcount(result)

    # -- messages --------------------------------------------------------------------------

    def record_messages(
        self,
        account_id: int,
        messages: Sequence[NewMessage],
        *,
        history_id: int,
        synced_at: datetime,
        lease_until: datetime,
    ) -> RecordedMessages:
        """Store new message ids and move the history pointer forward, in one transaction.

        The pointer moves only forward (a conditional UPDATE), so a slower sync that read
        an older history id cannot move it back. Ids already stored belong to whoever
        stored them; the rows inserted here are returned for this caller to fetch.
        """
        unique = {msg.gmail_id: msg for msg in messages}
        # One lock order for every writer (sorted ids), so concurrent syncs never deadlock.
        ordered = [unique[key] for key in sorted(unique)]
        a = m.GmailAccount
        with self._sessions() as session:
            org_id = session.scalar(select(a.org_id).where(a.id == account_id))
            if org_id is None:
                raise LookupError(f"gmail account {account_id} does not exist")
            if session.get_bind().dialect.name == "postgresql":
                inserted = _insert_ids_unnested(session, org_id, account_id, ordered, lease_until)
            else:
                inserted = _insert_ids(session, org_id, account_id, ordered, lease_until)
            moved = session.execute(
                update(a)
                .where(a.id == account_id, or_(a.history_id.is_(None), a.history_id < history_id))
                .values(history_id=history_id)
            )
            session.execute(
                update(a)
                .where(
                    a.id == account_id,
                    or_(a.last_synced_at.is_(None), a.last_synced_at < synced_at),
                )
                .values(last_synced_at=synced_at)
            )
            session.commit()
        to_fetch = tuple(
            MessageToFetch(row_id=row_id, account_id=account_id, gmail_id=gmail_id)
            for row_id, gmail_id in sorted(inserted)
        )
        return RecordedMessages(to_fetch=to_fetch, pointer_moved=rowcount(moved) > 0)

    def record_found(
        self, account_id: int, messages: Sequence[NewMessage], *, lease_until: datetime
    ) -> RecordedFinds:
        """Store message ids a last look found (domain/last_look.py), as the sync stores
        ids it lists, but without moving the history pointer or the last sync time: the
        look read one thread and one search, not the mailbox's history.

        Returns the rows this call inserted, for the caller to fetch, and how many of the
        found messages were stored before but not yet read by the inbound pipeline (their
        content not fetched, fetched but not classified, or a failure retried later).
        """
        unique = {msg.gmail_id[:64]: msg for msg in messages}
        if not unique:
            return RecordedFinds(to_fetch=())
        ordered = [unique[key] for key in sorted(unique)]
        a, e = m.GmailAccount, m.InboundEmail
        with self._sessions() as session:
            org_id = session.scalar(select(a.org_id).where(a.id == account_id))
            if org_id is None:
                raise LookupError(f"gmail account {account_id} does not exist")
            inserted = _insert_ids(session, org_id, account_id, ordered, lease_until)
            mine = {gmail_id for _, gmail_id in inserted}
            others = [key for key in unique if key not in mine]
            unread = 0
            if others:
                unread = int(
                    session.scalar(
                        select(func.count())
                        .select_from(e)
                        .where(
                            e.gmail_account_id == account_id,
                            e.gmail_message_id.in_(others),
                            or_(
                                e.status.in_(
                                    (InboundStatus.RECEIVED.value, InboundStatus.PARSED.value)
                                ),
                                (e.status == InboundStatus.FAILED.value)
                                & e.next_attempt_at.is_not(None),
                            ),
                        )
                    )
                    or 0
                )
            session.commit()
        to_fetch = tuple(
            MessageToFetch(row_id=row_id, account_id=account_id, gmail_id=gmail_id)
            for row_id, gmail_id in sorted(inserted)
        )
        return RecordedFinds(to_fetch=to_fetch, unread=unread)

    def detection_context(self, account_id: int) -> DetectionContext:
        """Return the reps' addresses and the unsubscribe mailboxes of the mailbox's org."""
        a, u = m.GmailAccount, m.User
        with self._sessions() as session:
            org_id = session.scalar(select(a.org_id).where(a.id == account_id))
            if org_id is None:
                return DetectionContext()
            mailboxes = set(session.scalars(select(a.email).where(a.org_id == org_id)))
            users = session.execute(
                select(u.email, u.gmail_address_allowed).where(u.org_id == org_id)
            ).all()
        reps = set(mailboxes)
        for email, allowed in users:
            reps.add(email)
            if allowed:
                reps.add(allowed)
        return DetectionContext(
            rep_addresses=frozenset(reps), unsubscribe_mailboxes=frozenset(mailboxes)
        )

    def save_parsed(self, results: Sequence[ReadMessage]) -> None:
        """Store parsed messages on their rows (status parsed), in one transaction.

        One UPDATE sent with many parameter sets (executemany): the cost per message is a
        parameter set, not a statement. Only rows still waiting change, so a late worker
        never moves a message back that a later stage has taken further.
        """
        if not results:
            return
        table = cast(Table, m.InboundEmail.__table__)
        columns = [*_parsed_values(results[0].parsed), "detection"]
        values: dict[Any, Any] = {table.c[name]: bindparam(f"p_{name}") for name in columns}
        # A message fetched without a thread id keeps the one its history record gave.
        values[table.c.gmail_thread_id] = func.coalesce(
            bindparam("p_gmail_thread_id", type_=table.c.gmail_thread_id.type),
            table.c.gmail_thread_id,
        )
        values[table.c.status] = InboundStatus.PARSED.value
        values[table.c.error] = None
        values[table.c.next_attempt_at] = None
        stmt = (
            update(table)
            .where(
                table.c.id == bindparam("p_row_id"),
                # Not IN (...): an expanding IN cannot be sent with executemany.
                or_(*(table.c.status == status for status in _WAITING)),
            )
            .values(values)
        )
        params = [
            {
                "p_row_id": message.row_id,
                **{f"p_{k}": v for k, v in _parsed_values(parsed).items()},
                "p_detection": _clean_json(detection.model_dump(mode="json")),
            }
            for message, parsed, detection in results
        ]
        with self._sessions() as session:
            session.execute(stmt, params)
            session.commit()

    def mark_failed(self, message: MessageToFetch, *, error: str, now: datetime) -> None:
        """Keep a message's row with its error and schedule its next attempt.

        After MAX_FETCH_ATTEMPTS the row stays `failed` without a next attempt: it waits
        for a person, who sees the error.
        """
        attempts = message.attempts + 1
        next_at = None if attempts >= MAX_FETCH_ATTEMPTS else now + retry_delay(attempts)
        e = m.InboundEmail
        with self._sessions() as session:
            session.execute(
                update(e)
                .where(e.id == message.row_id, e.status.in_(_WAITING))
                .values(
                    status=InboundStatus.FAILED.value,
                    error=_error_text(error),
                    retry_count=e.retry_count + 1,
                    next_attempt_at=next_at,
                )
            )
            session.commit()

    def mark_gone(self, message: MessageToFetch, *, error: str) -> None:
        """Record that Gmail no longer has a message (deleted before it was fetched)."""
        e = m.InboundEmail
        with self._sessions() as session:
            session.execute(
                update(e)
                .where(e.id == message.row_id, e.status.in_(_WAITING))
                .values(
                    status=InboundStatus.GONE.value, error=_error_text(error), next_attempt_at=None
                )
            )
            session.commit()

    def claim_retries(
        self, *, limit: int, now: datetime, lease_until: datetime
    ) -> list[MessageToFetch]:
        """Claim message rows of connected mailboxes that are due for another fetch."""
        e, a = m.InboundEmail, m.GmailAccount
        with self._sessions() as session:
            query = (
                select(e.id)
                .join(a, a.id == e.gmail_account_id)
                .where(e.next_attempt_at <= now, e.status.in_(_WAITING), a.status == CONNECTED)
                .order_by(e.next_attempt_at, e.id)
                .limit(limit)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(of=e, skip_locked=True)
            ids = list(session.scalars(query))
            if not ids:
                return []
            session.execute(update(e).where(e.id.in_(ids)).values(next_attempt_at=lease_until))
            rows = session.execute(
                select(e.id, e.gmail_account_id, e.gmail_message_id, e.retry_count)
                .where(e.id.in_(ids))
                .order_by(e.id)
            ).all()
            session.commit()
        return [
            MessageToFetch(
                row_id=r.id,
                account_id=r.gmail_account_id,
                gmail_id=r.gmail_message_id,
                attempts=r.retry_count,
            )
            for r in rows
        ]


def advisory_key(name: str) -> int:
    """Return a stable signed 64-bit PostgreSQL advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


@contextmanager
def periodic_lock(
    session_factory: SessionFactory, name: str, *, lease: timedelta = timedelta(minutes=5)
) -> Iterator[bool]:
    """Hold the periodic job `name` for a block; yield whether this process took it.

    One process runs each periodic tick: the others see False and skip it. On PostgreSQL
    it is a transaction-scoped advisory lock, gone when the block ends or the process
    dies. Elsewhere (SQLite, where several processes may share one file: `serve` and a
    CLI command) it is a row of `periodic_leases` taken until `lease` from now and given
    back at the end; a process that dies holding it is seen dead at once (same host, pid
    gone), or its lease runs out.
    """
    with session_factory() as session:
        if session.get_bind().dialect.name != "postgresql":
            holder = _lease_holder()
            taken = _take_lease(session, name, holder, lease)
            try:
                yield taken
            finally:
                if taken:
                    session.execute(
                        update(m.PeriodicLease)
                        .where(m.PeriodicLease.name == name, m.PeriodicLease.holder == holder)
                        .values(holder=None, lease_until=None)
                    )
                    session.commit()
            return
        taken = bool(
            session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": advisory_key(name)}
            )
        )
        try:
            yield taken
        finally:
            # The transaction only holds the lock; ending it releases the lock. Commit, not
            # rollback: a session joined to an outer transaction (tests) must not undo
            # what the tick's own sessions committed after it.
            session.commit()


def _dead_here(holder: str) -> bool:
    """True when a lease holder names a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:60] or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _lease_holder() -> str:
    """This process and thread, as a lease holder's name."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{threading.get_ident()}"


def _take_lease(session: Session, name: str, holder: str, lease: timedelta) -> bool:
    """Take the lease row `name` if it is free, ran out, or its holder died; commit; True
    if taken. SQLite serves one machine, so a holder on this host whose process is gone
    (`kill -9`) is known dead at once instead of after its lease."""
    now = datetime.now(UTC)
    lease_row = m.PeriodicLease
    row = session.get(lease_row, name)
    if row is None:
        try:
            session.add(lease_row(name=name, holder=None, lease_until=None))
            session.commit()
        except IntegrityError:
            session.rollback()  # another process made it first
        row = session.get(lease_row, name)
    free = or_(lease_row.lease_until.is_(None), lease_row.lease_until < now)
    if row is not None and row.holder and _dead_here(row.holder):
        free = or_(free, lease_row.holder == row.holder)
    result = session.execute(
        update(lease_row)
        .where(lease_row.name == name, free)
        .values(holder=holder, lease_until=now + lease)
    )
    session.commit()
    return rowcount(result) > 0
