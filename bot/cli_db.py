"""The database as a `salesbot` command opens it: reachable and migrated, or one line why not.

Every command that reads or writes the database goes through `open_database`; any other
database error a command meets is turned into one line by `explain_database_error`. The
password of DATABASE_URL is never printed.
"""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

UPGRADE_HINT = "run `salesbot db upgrade`"


class DatabaseNotReady(Exception):
    """The database cannot be used by this command; the message says why and what to run."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def shown_url(url: str) -> str:
    """Return DATABASE_URL as it may be printed: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "DATABASE_URL"


def open_database(url: str, *, pool_size: int = 2) -> Engine:
    """Return an engine on a reachable database whose schema is the code's; else raise.

    Raises DatabaseNotReady naming the database and what to do (start it, fix
    DATABASE_URL, or `salesbot db upgrade`).
    """
    from storage.db import make_engine

    try:
        engine = make_engine(url, pool_size=pool_size)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseNotReady(f"setting DATABASE_URL is malformed: {exc}") from None
    try:
        check_schema(engine, url)
    except BaseException:
        engine.dispose()
        raise
    return engine


def check_schema(engine: Engine, url: str) -> None:
    """Raise DatabaseNotReady unless the database answers and is at the code's revision."""
    from storage.migrate import current_heads

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                raise DatabaseNotReady(
                    f"the database at {shown_url(url)} has no schema: {UPGRADE_HINT}"
                )
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise DatabaseNotReady(explain_database_error(exc, url)) from None
    heads = current_heads()
    if version not in heads:
        raise DatabaseNotReady(
            f"the database at {shown_url(url)} is at schema revision {version or 'none'}, "
            f"this Salesbot needs {', '.join(sorted(heads))}: {UPGRADE_HINT}"
        )


def explain_database_error(exc: SQLAlchemyError, url: str) -> str:
    """Return one line saying what went wrong with the database, without its password."""
    where = shown_url(url)
    reason = _first_line(exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc)
    password = _password(url)
    if password:
        reason = reason.replace(password, "***")
    lowered = reason.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return f"the database at {where} is missing tables ({reason}): {UPGRADE_HINT}"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated or _is_connect_error(exc):
        return (
            f"cannot connect to the database at {where}: {reason}; is it running, and is "
            "DATABASE_URL right?"
        )
    return f"the database at {where} refused the command: {reason}"


def _is_connect_error(exc: SQLAlchemyError) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


def organizations_besides(url: str, slug: str) -> list[str]:
    """The slugs of the organizations in the database at `url` other than `slug` (none when
    the database or its schema does not exist yet): sandbox mode refuses a real database."""
    from sqlalchemy import create_engine, select

    from storage import models as m
    from storage.db import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(m.Organization.__tablename__):
                return []
            query = select(m.Organization.slug).where(m.Organization.slug != slug).limit(5)
            return list(conn.scalars(query))
    finally:
        engine.dispose()
