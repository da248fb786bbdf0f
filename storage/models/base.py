"""The declarative base every table module builds on, and the column shapes they share.

`Base.metadata` carries the naming convention migrations rely on; the helpers below
declare the columns most tables repeat (id, tenant, creation time, counters, JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, MetaData, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import BigId, JsonType, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention migrations rely on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def pk() -> Mapped[int]:
    """A 64-bit auto-incremented primary key."""
    return mapped_column(BigId, primary_key=True, autoincrement=True)


def org_fk() -> Mapped[int]:
    """The owning organization of a tenant row; deleting the organization deletes the row."""
    return mapped_column(BigId, ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)


def created() -> Mapped[datetime]:
    """A timestamp the database fills with the time of the insert."""
    return mapped_column(UTCDateTime, nullable=False, server_default=func.current_timestamp())


def counter() -> Mapped[int]:
    """A count that starts at zero."""
    return mapped_column(Integer, nullable=False, default=0, server_default="0")


def json_list() -> Mapped[list[Any]]:
    """A JSON list, empty by default."""
    return mapped_column(JsonType, nullable=False, default=list, server_default=text("'[]'"))


def json_dict() -> Mapped[dict[str, Any]]:
    """A JSON object, empty by default."""
    return mapped_column(JsonType, nullable=False, default=dict, server_default=text("'{}'"))
