"""Small helpers the repositories share to build statements and store rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, Result, any_, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.types import TypeEngine

from domain.errors import Conflict, NotFound
from storage.models.base import Base

Row = TypeVar("Row")
Model = TypeVar("Model", bound=Base)


def chunks(rows: list[Row], size: int = 1000) -> Iterator[list[Row]]:
    """Split rows so a multi-row statement stays under the databases' parameter limits."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def clip(reason: str, limit: int = 1000) -> str:
    """Keep a stored reason to a readable length."""
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def one_of(
    session: Session,
    column: QueryableAttribute[Any],
    values: Sequence[object],
    item: TypeEngine[Any],
) -> ColumnElement[bool]:
    """`column` is one of `values`: one array parameter on PostgreSQL, whatever the length
    (a list of bind parameters stops at 65,535), and IN on SQLite (callers keep lists
    within its 32,766 variables)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(item)))
    return column.in_(list(values))


def assign_fields(row: object, data: dict[str, Any], names: Sequence[str]) -> None:
    """Copy the named fields of `data` onto an ORM row."""
    for name in names:
        setattr(row, name, data[name])


def flush_or_conflict(session: Session, conflict_message: str) -> None:
    """Flush, turning a unique-constraint violation into a Conflict that names it."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(conflict_message) from exc


def org_row(
    session: Session,
    model: type[Model],
    org_id: int,
    row_id: int,
    *,
    what: str,
    populate_existing: bool = False,
) -> Model:
    """Return the organization's row of `model` with this id, or raise NotFound
    ("{what} {row_id} not found"); `populate_existing` reloads a row the session holds.

    `model` needs `org_id` and `id` columns; `filter_by` names them, as the bound (`Base`)
    does not declare them."""
    row = session.scalars(
        select(model)
        .filter_by(org_id=org_id, id=row_id)
        .execution_options(populate_existing=populate_existing)
    ).one_or_none()
    if row is None:
        raise NotFound(f"{what} {row_id} not found")
    return row


def rowcount(result: Result[Any]) -> int:
    """Return how many rows an UPDATE, DELETE or INSERT matched (the session types its result
    as a `Result`; a DML statement's is a `CursorResult`, which has the count)."""
    return int(cast("CursorResult[Any]", result).rowcount)
