"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

Each test runs inside a transaction rolled back at the end; the code under test
commits savepoints (`join_transaction_mode="create_savepoint"`), so nothing leaks
between tests. Tests that need real commits (concurrency) use `committed_engine`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from storage.uow import UnitOfWork
from tests.support.databases import (
    TestServer,
    choose_test_server,
    drop_postgres_database,
    migrated_engine,
    truncate_all,
)
from tests.support.google import GoogleServer, running_google_stand_in
from tests.support.slack import ServedSlack, serve_slack_stand_in

DATABASES = ["sqlite", "postgresql"]

warnings.filterwarnings("ignore", category=DeprecationWarning, module="google")

_SERVER = pytest.StashKey[TestServer]()


def pytest_configure(config: pytest.Config) -> None:
    # Once per session, in the controlling process: xdist workers (and the processes tests
    # start) inherit TEST_POSTGRES_ADMIN_URL from it, so they all use the same server.
    if hasattr(config, "workerinput"):
        return
    config.stash[_SERVER] = choose_test_server()


def pytest_sessionstart(session: pytest.Session) -> None:
    server = session.config.stash.get(_SERVER, None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if server is not None and reporter is not None:
        reporter.write_line(server.description)


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_SERVER, None)
    if server is not None:
        server.stop()


class _LazyEngines:
    """Create (and migrate) each database the first time a test asks for it."""

    def __init__(self, tmp: Path, suffix: str = "") -> None:
        self._tmp = tmp
        self._suffix = suffix
        self._engines: dict[str, Engine] = {}

    def __getitem__(self, kind: str) -> Engine:
        if kind not in self._engines:
            self._engines[kind] = migrated_engine(kind, self._tmp, suffix=self._suffix)
        return self._engines[kind]

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
            if engine.dialect.name == "postgresql":
                drop_postgres_database(engine.url.render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def _engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_LazyEngines]:
    engines = _LazyEngines(tmp_path_factory.mktemp("db"))
    yield engines
    engines.dispose()


@pytest.fixture(scope="session")
def _committed_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_LazyEngines]:
    engines = _LazyEngines(tmp_path_factory.mktemp("committed"), suffix="_committed")
    yield engines
    engines.dispose()


@pytest.fixture(params=DATABASES)
def db_kind(request: pytest.FixtureRequest) -> str:
    """The database a test runs on: 'sqlite' or 'postgresql'."""
    return str(request.param)


@pytest.fixture
def engine(_engines: _LazyEngines, db_kind: str) -> Engine:
    """A migrated engine of the current database kind."""
    return _engines[db_kind]


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose outer transaction is rolled back after the test."""
    conn = engine.connect()
    trans = conn.begin()
    try:
        yield conn
    finally:
        trans.rollback()
        conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> Callable[[], Session]:
    """Sessions joined to the test's transaction; their commits are savepoints."""

    def factory() -> Session:
        return Session(
            bind=connection,
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
            autoflush=False,
        )

    return factory


@pytest.fixture
def session(session_factory: Callable[[], Session]) -> Iterator[Session]:
    """A session for arranging and inspecting data."""
    with session_factory() as s:
        yield s


@pytest.fixture
def uow(session_factory: Callable[[], Session]) -> UnitOfWork:
    """A unit of work bound to the test's transaction."""
    return UnitOfWork(session_factory)


@pytest.fixture
def clock() -> FixedClock:
    """A clock fixed at 2026-11-25 15:00 UTC."""
    return FixedClock(datetime(2026, 11, 25, 15, 0, tzinfo=UTC))


@pytest.fixture
def committed_engine(_committed_engines: _LazyEngines, db_kind: str) -> Iterator[Engine]:
    """An engine whose commits are real (tables emptied after the test), for concurrency."""
    engine = _committed_engines[db_kind]
    try:
        yield engine
    finally:
        truncate_all(engine)


@pytest.fixture(scope="module")
def served_slack() -> Iterator[ServedSlack]:
    """The Slack stand-in served over HTTP, one per test module."""
    with serve_slack_stand_in() as served:
        yield served


@pytest.fixture(scope="module")
def google_stand_in() -> Iterator[GoogleServer]:
    """The Google stand-in (OAuth and Gmail API) served over HTTP, one per test module."""
    with running_google_stand_in() as running:
        yield running


@pytest.fixture
def google(google_stand_in: GoogleServer) -> GoogleServer:
    """The module's Google stand-in, emptied and its clock at the real time, for one test."""
    google_stand_in.google.reset()
    google_stand_in.clock.set_to_real_time()
    return google_stand_in
