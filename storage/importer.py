"""CSV import into the CRM tables: streaming, batched upserts by natural key.

The file is read once, row by row; rows are validated by `domain.imports` and
written in batches, each batch its own unit of work, so good rows land even when a
later batch holds bad ones and memory stays flat whatever the size of the file.
A batch costs a handful of statements whatever its size: one query for the client
ids of its domains, one for the rows that already exist, one upsert
(`INSERT ... ON CONFLICT DO UPDATE`) and, for orders, the properties, the
clients' `last_ordered_at` and the orders that follow a contact's reply
(`storage/engagement.py:record_orders_after_replies`: no query for a batch whose
clients' contacts never replied).

Upsert rules (docs/csv-import.md says them to users):
- an empty cell, or a column the file does not have, leaves the stored value alone;
- an import may opt a contact out or mark its address bounced or complained, but
  never undoes either: the contact's choice wins, and the earliest opt-out date stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    Text,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session

from domain.contacts import EmailStatus, OrderStatus
from domain.errors import SalesbotError
from domain.imports import (
    Checked,
    ClientRow,
    ContactRow,
    CsvRows,
    ImportKind,
    ImportReport,
    OrderRow,
    ParsedRow,
    PropertyAddress,
    RowError,
    RowParser,
    SourceRow,
    check_rows,
    map_header,
)
from domain.lead_scoring import rescore_contacts
from storage import models as m
from storage.db import SessionFactory
from storage.engagement import Repliers, load_repliers, record_orders_after_replies
from storage.sql import chunks
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

BATCH_SIZE = 2000

Item = tuple[SourceRow, ParsedRow]
Values = dict[str, Any]
Excluded = Any  # the `excluded` pseudo-table of an INSERT ... ON CONFLICT


def import_csv(
    session_factory: SessionFactory,
    *,
    org_id: int,
    kind: ImportKind,
    lines: Iterable[str],
    now: datetime,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import a CSV text stream of `kind` into an organization and report what happened.

    `lines` must come from a file opened with `newline=""`. Raises ImportFileError
    before writing anything if the header lacks a required column. With `dry_run`
    every batch is written and rolled back, so the counts are those a real run
    would give. A batch the database refuses stops the import: `report.fatal` says
    which rows, and the batches before it stay imported.
    """
    rows = CsvRows(lines)
    header = map_header(kind, rows.header)
    writer = _WRITERS[kind](org_id=org_id, now=now)
    report = ImportReport(
        kind=kind, header=header.header, ignored_columns=header.ignored, dry_run=dry_run
    )
    checked = check_rows(RowParser(header, now=now), rows)
    # Checking rows is Python work; writing a batch is mostly waiting for the database.
    # One writer thread overlaps the two: batch N is written while batch N+1 is read,
    # and no more than two batches are ever in memory.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-import") as pool:
        pending: Future[_Outcome] | None = None
        for batch in _batches(checked, report, batch_size):
            if pending is not None and not _settle(pending, report):
                pending = None
                break
            pending = pool.submit(_write_batch, session_factory, writer, batch, dry_run)
        if pending is not None:
            _settle(pending, report)
    if not dry_run and isinstance(writer, _OrderWriter) and writer.touched_clients:
        _rescore_leads(session_factory, org_id, sorted(writer.touched_clients), at=now)
    log.info(
        "csv import finished",
        extra={
            "org_id": org_id,
            "kind": kind.value,
            "rows": report.rows,
            "inserted": report.inserted,
            "updated": report.updated,
            "rejected": report.rejected,
            "dry_run": dry_run,
            "fatal": report.fatal,
        },
    )
    return report


def _rescore_leads(
    session_factory: SessionFactory, org_id: int, client_ids: list[int], *, at: datetime
) -> None:
    """Score again the contacts of the clients an order import touched (their order volume
    and recency changed): once, at the end of the import, a thousand clients a unit of
    work. Scoring per batch would score a client's contacts once per batch its orders are
    in; an import that dies before this point leaves them to the daily run."""
    scored = 0
    try:
        for part in chunks(client_ids, 1000):
            with UnitOfWork(session_factory) as uow:
                scored += rescore_contacts(uow.targeting, org_id, at=at, client_ids=part)
                uow.commit()
    except SalesbotError as exc:
        # The orders are imported; the daily run scores the contacts again.
        log.warning(
            "lead scores not refreshed after the import",
            extra={"org_id": org_id, "reason": exc.message},
        )
        return
    log.info("lead scores refreshed after the import", extra={"org_id": org_id, "scored": scored})


def _batches(checked: Iterable[Checked], report: ImportReport, size: int) -> Iterator[list[Item]]:
    """Yield the rows that passed in batches, counting every row and rejecting the others."""
    batch: list[Item] = []
    for item in checked:
        report.rows += 1
        if isinstance(item, RowError):
            report.reject(item)
            continue
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_batch(
    session_factory: SessionFactory, writer: _Writer, batch: list[Item], dry_run: bool
) -> _Outcome:
    """Write one batch in its own unit of work (rolled back in a dry run)."""
    try:
        with UnitOfWork(session_factory) as uow:
            if uow.session.get_bind().dialect.name == "postgresql":
                # psycopg prepares a statement run five times, and PostgreSQL may then
                # switch to a generic plan that cannot see how few rows `= ANY(keys)`
                # selects: it scans the org's whole table for every batch. Plan each
                # lookup for its own keys.
                uow.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
            outcome = writer.write(uow.session, batch)
            if not dry_run:
                uow.commit()
    except DBAPIError as exc:
        first, last = batch[0][0].row, batch[-1][0].row
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        log.exception("import batch refused", extra={"rows": f"{first}-{last}"})
        before = (
            "Nothing was written (dry run)"
            if dry_run
            else "Rows before them were imported; fix the cause and import the file again "
            "(it is safe to repeat)"
        )
        return _Outcome(refused=f"the database refused rows {first}-{last}: {reason}. {before}.")
    return outcome


def _settle(pending: Future[_Outcome], report: ImportReport) -> bool:
    """Add a written batch to the report; return False if the database refused it."""
    outcome = pending.result()
    report.inserted += outcome.inserted
    report.updated += outcome.updated
    for error in outcome.errors:
        report.reject(error)
    report.fatal = outcome.refused
    return outcome.refused is None


# --- writers --------------------------------------------------------------------------


@dataclass
class _Outcome:
    inserted: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    refused: str | None = None


class _Writer(Protocol):
    def __init__(self, *, org_id: int, now: datetime) -> None: ...

    def write(self, session: Session, batch: Sequence[Item]) -> _Outcome: ...


def _reject(source: SourceRow, reason: str) -> RowError:
    return RowError(source.row, source.line, reason, source.cells)


class _ClientWriter:
    def __init__(self, *, org_id: int, now: datetime) -> None:
        self._org_id = org_id
        self._now = now

    def write(self, session: Session, batch: Sequence[Item]) -> _Outcome:
        rows = [row for _, row in batch if isinstance(row, ClientRow)]
        existing = _existing(session, m.Client.domain, self._org_id, [r.domain for r in rows])
        values = [
            (
                {
                    "org_id": self._org_id,
                    # A new client without a name is named after its domain; an
                    # existing one keeps its name (see `replace` below).
                    "name": row.name or row.domain,
                    "domain": row.domain,
                    "client_type": row.client_type,
                    "tags": list(row.tags or ()),
                    "updated_at": self._now,
                },
                _given(name=row.name, tags=row.tags),
            )
            for row in rows
        ]
        table = _table(m.Client)
        _upsert(
            session,
            table,
            values,
            conflict=("org_id", "domain"),
            always=lambda x: {
                "client_type": func.coalesce(x.client_type, table.c.client_type),
                "updated_at": x.updated_at,
            },
        )
        return _Outcome(inserted=len(rows) - len(existing), updated=len(existing))


class _ContactWriter:
    def __init__(self, *, org_id: int, now: datetime) -> None:
        self._org_id = org_id
        self._now = now

    def write(self, session: Session, batch: Sequence[Item]) -> _Outcome:
        outcome = _Outcome()
        contacts = [(s, r) for s, r in batch if isinstance(r, ContactRow)]
        client_ids = _ids_by(
            session,
            m.Client.id,
            m.Client.domain,
            self._org_id,
            [r.client_domain for _, r in contacts if r.client_domain],
        )
        rows: list[ContactRow] = []
        for source, row in contacts:
            if row.client_domain is not None and row.client_domain not in client_ids:
                outcome.errors.append(
                    _reject(
                        source, f"unknown client domain {row.client_domain} (import clients first)"
                    )
                )
                continue
            rows.append(row)
        existing = _existing(session, m.Contact.email, self._org_id, [r.email for r in rows])
        values = [
            (
                {
                    "org_id": self._org_id,
                    "email": row.email,
                    "client_id": client_ids[row.client_domain] if row.client_domain else None,
                    "first_name": row.first_name,
                    "last_name": row.last_name,
                    "title": row.title,
                    "phone": row.phone,
                    "role_code": row.role_code,
                    "role_category": row.role_category.value if row.role_category else None,
                    "state": row.state,
                    "tags": list(row.tags or ()),
                    "lead_score": row.lead_score,
                    "timezone": row.timezone,
                    "opted_out_at": row.opted_out_at,
                    "email_status": (row.email_status or EmailStatus.VALID).value,
                    "email_preferences": {t.value: False for t in sorted(row.turned_off)},
                    "updated_at": self._now,
                },
                _given(tags=row.tags),
            )
            for row in rows
        ]
        table = _table(m.Contact)
        kept = (
            "client_id",
            "first_name",
            "last_name",
            "title",
            "phone",
            "role_code",
            "role_category",
            "state",
            "lead_score",
            "timezone",
        )

        def always(x: Excluded) -> dict[str, ColumnElement[Any]]:
            return {
                **_coalesced(table, x, kept),
                # The contact's choice wins: an import opts out but never opts back in,
                # and the first opt-out date is the one kept.
                "opted_out_at": func.coalesce(table.c.opted_out_at, x.opted_out_at),
                # Only an address still valid takes the file's status: bounced and
                # complained (whatever else may come) are never undone by an import.
                "email_status": case(
                    (table.c.email_status == EmailStatus.VALID.value, x.email_status),
                    else_=table.c.email_status,
                ),
                # The types the file turns off join the stored choices; none is turned
                # back on (the contact's choice wins, as for opted_out).
                "email_preferences": _merged_preferences(
                    session, table.c.email_preferences, x.email_preferences
                ),
                "updated_at": x.updated_at,
            }

        _upsert(session, table, values, conflict=("org_id", "email"), always=always)
        self._stop_unreachable(
            session,
            [
                r.email
                for r in rows
                if r.opted_out_at
                or (r.email_status is not None and r.email_status != EmailStatus.VALID)
            ],
        )
        outcome.inserted = len(rows) - len(existing)
        outcome.updated = len(existing)
        return outcome

    def _stop_unreachable(self, session: Session, emails: list[str]) -> None:
        """The contact's choice wins: an opt-out or a bad address in the file stops every
        running enrollment of that contact, in every job, in the same transaction."""
        if not emails:
            return
        unreachable = select(m.Contact.id).where(
            m.Contact.org_id == self._org_id,
            m.Contact.email.in_(emails),
            (m.Contact.opted_out_at.is_not(None))
            | (m.Contact.email_status != EmailStatus.VALID.value),
        )
        session.execute(
            update(m.Enrollment)
            .where(
                m.Enrollment.org_id == self._org_id,
                m.Enrollment.status.in_(["active", "paused"]),
                m.Enrollment.contact_id.in_(unreachable),
            )
            .values(
                status="stopped",
                stop_reason="opted out or unreachable (import)",
                updated_at=self._now,
            )
        )


class _OrderWriter:
    def __init__(self, *, org_id: int, now: datetime) -> None:
        self._org_id = org_id
        self._now = now
        # The contacts that ever replied, read at the first batch: an order can only follow
        # one of theirs. A first reply stored while the import runs is seen by the next
        # import of the same orders (which records what this one missed, once).
        self._repliers: Repliers | None = None
        # The clients whose orders changed: their contacts' lead scores are refreshed at
        # the end of the import (`_rescore_leads`).
        self.touched_clients: set[int] = set()

    def write(self, session: Session, batch: Sequence[Item]) -> _Outcome:
        outcome = _Outcome()
        orders = [(s, r) for s, r in batch if isinstance(r, OrderRow)]
        client_ids = _ids_by(
            session,
            m.Client.id,
            m.Client.domain,
            self._org_id,
            [r.client_domain for _, r in orders],
        )
        contact_ids = _ids_by(
            session,
            m.Contact.id,
            m.Contact.email,
            self._org_id,
            [r.contact_email for _, r in orders if r.contact_email],
        )
        rows: list[OrderRow] = []
        for source, row in orders:
            problems = []
            if row.client_domain not in client_ids:
                problems.append(f"unknown client domain {row.client_domain} (import clients first)")
            if row.contact_email is not None and row.contact_email not in contact_ids:
                problems.append(
                    f"unknown contact_email {row.contact_email} (import contacts first)"
                )
            if problems:
                outcome.errors.append(_reject(source, "; ".join(problems)))
            else:
                rows.append(row)
        if not rows:
            return outcome
        numbers = [r.order_number for r in rows]
        previous_clients = {
            number: client_id
            for number, client_id in session.execute(
                select(m.AppraisalOrder.order_number, m.AppraisalOrder.client_id).where(
                    m.AppraisalOrder.org_id == self._org_id,
                    _one_of(session, m.AppraisalOrder.order_number, numbers),
                )
            )
        }
        property_ids = self._properties(session, rows)
        values = [
            (
                {
                    "org_id": self._org_id,
                    "order_number": row.order_number,
                    "client_id": client_ids[row.client_domain],
                    "contact_id": contact_ids[row.contact_email] if row.contact_email else None,
                    "property_id": property_ids[row.property.key] if row.property else None,
                    "property_address": row.property_address,
                    "status": (row.status or OrderStatus.ORDERED).value,
                    "ordered_at": row.ordered_at,
                    "due_at": row.due_at,
                    "completed_at": row.completed_at,
                    "fee": row.fee,
                    "updated_at": self._now,
                },
                _given(status=row.status),
            )
            for row in rows
        ]
        table = _table(m.AppraisalOrder)
        kept = ("contact_id", "property_id", "property_address", "due_at", "completed_at", "fee")
        _upsert(
            session,
            table,
            values,
            conflict=("org_id", "order_number"),
            always=lambda x: {
                **_coalesced(table, x, kept),
                "client_id": x.client_id,
                "ordered_at": x.ordered_at,
                "updated_at": x.updated_at,
            },
        )
        # An order that moved to another client changes the old client's date too.
        affected = {client_ids[r.client_domain] for r in rows} | set(previous_clients.values())
        self._refresh_last_ordered(session, sorted(affected))
        self.touched_clients.update(affected)
        # In the batch's transaction: an order that follows a contact's reply is in that
        # contact's engagement history exactly when the order is imported (repeats: once).
        if self._repliers is None:
            self._repliers = load_repliers(session, self._org_id)
        record_orders_after_replies(
            session,
            self._org_id,
            [(r.order_number, client_ids[r.client_domain], r.ordered_at) for r in rows],
            repliers=self._repliers,
        )
        outcome.inserted = len(rows) - len(previous_clients)
        outcome.updated = len(previous_clients)
        return outcome

    def _properties(self, session: Session, rows: Sequence[OrderRow]) -> dict[str, int]:
        """Create the properties of these orders that do not exist; return ids by key."""
        # The first spelling of an address is the one kept, in the file as in the table.
        by_key: dict[str, PropertyAddress] = {}
        for row in rows:
            if row.property is not None:
                by_key.setdefault(row.property.key, row.property)
        if not by_key:
            return {}
        properties = [
            {
                "org_id": self._org_id,
                "address_line": p.line,
                "city": p.city,
                "state": p.state,
                "postal_code": p.postal_code,
                "address_key": key,
            }
            for key, p in sorted(by_key.items())
        ]
        stmt, params = _insert(session, _table(m.Property), properties)
        session.execute(
            stmt.on_conflict_do_nothing(index_elements=["org_id", "address_key"]), params
        )
        return _ids_by(session, m.Property.id, m.Property.address_key, self._org_id, list(by_key))

    def _refresh_last_ordered(self, session: Session, client_ids: list[int]) -> None:
        """Set clients.last_ordered_at to the date of each client's latest order."""
        latest = (
            select(func.max(m.AppraisalOrder.ordered_at))
            .where(
                m.AppraisalOrder.org_id == m.Client.org_id,
                m.AppraisalOrder.client_id == m.Client.id,
            )
            .scalar_subquery()
        )
        session.execute(
            update(m.Client)
            .where(
                m.Client.org_id == self._org_id,
                m.Client.id.in_(client_ids),
                m.Client.last_ordered_at.is_distinct_from(latest),
            )
            .values(last_ordered_at=latest),
            execution_options={"synchronize_session": False},
        )


_WRITERS: dict[ImportKind, type[_Writer]] = {
    ImportKind.CLIENTS: _ClientWriter,
    ImportKind.CONTACTS: _ContactWriter,
    ImportKind.ORDERS: _OrderWriter,
}


# --- statements -----------------------------------------------------------------------


def _merged_preferences(
    session: Session, stored: ColumnElement[Any], given: ColumnElement[Any]
) -> ColumnElement[Any]:
    """The stored email preferences with the file's (its `false` entries) laid over them.

    The result is the stored value itself when the file changes nothing, so that the
    upsert's "is anything different" test leaves such a row alone.
    """
    if session.get_bind().dialect.name == "postgresql":
        merged: ColumnElement[Any] = stored.op("||")(given)
        return merged
    patched = func.json_patch(stored, given)
    return case((patched == func.json(stored), stored), else_=patched)


def _table(model: type[m.Base]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def _given(**values: object) -> frozenset[str]:
    """The names of the not-null columns a row gives a value for (the others are kept)."""
    return frozenset(name for name, value in values.items() if value is not None)


def _coalesced(table: Table, x: Excluded, names: Sequence[str]) -> dict[str, ColumnElement[Any]]:
    """SET clauses that take the file's value, or keep the stored one where it gave none."""
    return {name: func.coalesce(x[name], table.c[name]) for name in names}


def _insert(session: Session, table: Table, rows: list[Values]) -> tuple[Any, list[Values] | None]:
    """An INSERT of `rows` that knows ON CONFLICT, and the parameters to execute it with.

    On PostgreSQL the whole batch travels as one JSON document and the statement
    inserts `SELECT * FROM json_to_recordset(document)`: one statement and one
    parameter for the batch, which costs the server half the work of a statement
    per row and the client a small fraction of it (the document is encoded in C).
    On SQLite, an in-process database, the rows are executed one by one (executemany).
    """
    if session.get_bind().dialect.name != "postgresql":
        return sqlite.insert(table), rows
    names = list(rows[0])
    document = json.dumps(rows, default=_json_value)
    source = (
        func.json_to_recordset(cast(bindparam("rows", document, type_=Text), postgresql.JSON))
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(with_types=True)
    )
    selected = select(*(source.c[name] for name in names))
    return postgresql.insert(table).from_select(names, selected), None


def _json_value(value: object) -> str:
    """Encode what json cannot: timestamps (ISO 8601, with their zone) and amounts."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot put {type(value).__name__} in an import batch")


def _upsert(
    session: Session,
    table: Table,
    values: Sequence[tuple[Values, frozenset[str]]],
    *,
    conflict: tuple[str, ...],
    always: Callable[[Excluded], dict[str, ColumnElement[Any]]],
) -> None:
    """Insert rows or update them by `conflict`.

    Rows are grouped by which not-null columns they give (`replace`): those columns
    are overwritten, the `always` clauses apply to every row. A stored row that the
    file would not change is left untouched (no new row version, no index writes,
    `updated_at` kept), which makes importing the same file again cheap. Rows go in
    key order so that concurrent imports lock them in the same order and cannot
    deadlock.
    """
    groups: dict[frozenset[str], list[Values]] = {}
    for row, replace in values:
        groups.setdefault(replace, []).append(row)
    for replace, rows in groups.items():
        rows.sort(key=lambda r: tuple(r[c] for c in conflict))
        stmt, params = _insert(session, table, rows)
        set_: dict[str, Any] = always(stmt.excluded)
        set_.update({name: stmt.excluded[name] for name in replace})
        changes = [
            table.c[name].is_distinct_from(value)
            for name, value in set_.items()
            if name != "updated_at"
        ]
        upsert = stmt.on_conflict_do_update(
            index_elements=list(conflict), set_=set_, where=or_(*changes)
        )
        session.execute(upsert, params)


def _existing(
    session: Session, key: InstrumentedAttribute[str], org_id: int, values: Sequence[str]
) -> set[str]:
    """Return which of these natural keys already exist in the organization."""
    if not values:
        return set()
    org_column = key.class_.org_id
    return set(
        session.scalars(select(key).where(org_column == org_id, _one_of(session, key, values)))
    )


def _ids_by(
    session: Session,
    id_column: InstrumentedAttribute[int],
    key: InstrumentedAttribute[str],
    org_id: int,
    values: Sequence[str],
) -> dict[str, int]:
    """Return the ids of the rows with these keys in the organization, by key."""
    if not values:
        return {}
    org_column = key.class_.org_id
    query = select(key, id_column).where(org_column == org_id, _one_of(session, key, values))
    return {k: i for k, i in session.execute(query)}


def _one_of(
    session: Session, column: InstrumentedAttribute[str], values: Iterable[str]
) -> ColumnElement[bool]:
    """`column IN values`, as `= ANY(array)` on PostgreSQL: one parameter, not thousands."""
    distinct = sorted(set(values))
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("keys", distinct, type_=postgresql.ARRAY(String)))
    return column.in_(distinct)
