"""Test databases: one SQLite file and one PostgreSQL database per xdist worker.

PostgreSQL is required: if it cannot be reached the tests fail, they never skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from sqlalchemy import Engine, inspect, text

from storage.db import make_engine
from storage.migrate import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def worker_id() -> str:
    """Return the xdist worker name and process id: unique even when test runs overlap."""
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


def postgres_url(name: str) -> str:
    """Return the SQLAlchemy URL of database `name` on the test server."""
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def create_postgres_database(name: str) -> str:
    """(Re)create an empty PostgreSQL database and return its URL."""
    try:
        conn = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is required for the tests and is unreachable at {POSTGRES_ADMIN_URL}: "
            f"{exc}".strip()
        ) from exc
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url(name)


def drop_postgres_database(url: str) -> None:
    """Drop a test database made by create_postgres_database."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_engine(kind: str, tmp_dir: Path, *, suffix: str = "") -> Engine:
    """Return an engine on a fresh database of `kind`, migrated with Alembic."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_dir / f'salesbot-{worker_id()}{suffix}.db'}"
    elif kind == "postgresql":
        url = create_postgres_database(f"salesbot_test_{worker_id()}{suffix}")
    else:
        raise ValueError(kind)
    upgrade(url)
    return make_engine(url, pool_size=20)


def truncate_all(engine: Engine) -> None:
    """Empty every table (for tests that must really commit)."""
    from storage.models import Base

    existing = set(inspect(engine).get_table_names())
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in existing]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            conn.execute(text("PRAGMA defer_foreign_keys=ON"))
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
