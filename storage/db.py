"""Engines, sessions and the unit of work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

SessionFactory = Callable[[], Session]


def normalize_database_url(url: str) -> str:
    """Return a URL with the driver this project uses (psycopg 3 for PostgreSQL)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """Create an engine for SQLite or PostgreSQL with the settings each needs."""
    url = normalize_database_url(url)
    # Bound parameters carry what users wrote (template bodies, addresses): never in an
    # error message or a log line.
    kwargs: dict[str, Any] = {"echo": echo, "future": True, "hide_parameters": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if ":memory:" in url or url in ("sqlite://", "sqlite+pysqlite://"):
            raise ValueError("in-memory SQLite is not supported; use a file path")
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin) so that transactions
    # and savepoints behave as on PostgreSQL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue on busy_timeout
    # instead of failing with "database is locked" when a reader upgrades. Read-only
    # work asks for AUTOCOMMIT and reads the last committed state without a lock.
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_connection_lost(error: BaseException) -> bool:
    """Tell whether `error` came from the database connection (killed, restarted, locked
    out for a moment) rather than from the statement: the same work can be tried again.

    `OperationalError` is what a terminated backend (`pg_terminate_backend`, a failover),
    a deadlock or a serialization failure raises on PostgreSQL, and what a busy file
    raises on SQLite; `InterfaceError` a connection already closed.
    """
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory units of work draw from."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
