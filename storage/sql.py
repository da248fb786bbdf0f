"""Small helpers the repositories share to build statements and store rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.types import TypeEngine

from domain.errors import Conflict

Row = TypeVar("Row")


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
