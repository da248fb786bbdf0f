"""A plain clone tests itself: the corpus is in the repository, and PostgreSQL is found or started.

`tests/support/corpus.py` reads only `tests/corpus/`; `tests/support/databases.py` uses the
configured or the machine's PostgreSQL when it answers and otherwise starts a throwaway one.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, make_url, text

from tests.support import databases
from tests.support.corpus import REPO_ROOT, corpus_dir

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


def test_the_corpus_is_read_from_the_repository_with_its_sources_and_licences() -> None:
    root = corpus_dir()

    assert root == REPO_ROOT / "tests" / "corpus"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "LICENSES",
        "autoreplies",
        "bounces",
        "replies",
    ]
    assert (root / "SOURCES.md").is_file()
    assert sorted(p.name for p in (root / "LICENSES").iterdir()) == [
        "Apache-2.0.txt",
        "README.md",
        "crisp-email-reply-parser-MIT.txt",
        "email_reply_trimmer-MIT.txt",
        "gitlab-MIT-Expat.txt",
        "mail-gem-MIT.txt",
        "mail-parser-reply-MIT.txt",
        "php-bounce-handler-BSD.txt",
        "sisimai-BSD-2-Clause.txt",
    ]


def test_no_test_bench_or_doc_refers_to_a_folder_beside_the_repository() -> None:
    texts = [
        p
        for folder in ("tests", "bench", "docs", "integrations")
        for p in (REPO_ROOT / folder).rglob("*")
        if p.suffix in (".py", ".md") and "corpus" not in p.relative_to(REPO_ROOT).parts[:2]
    ]
    texts += [REPO_ROOT / "README.md", REPO_ROOT / "Makefile", REPO_ROOT / ".ci" / "run"]
    beside = "../" + "shared"  # split so that this file does not find itself

    assert [str(p.relative_to(REPO_ROOT)) for p in texts if beside in p.read_text()] == []


def test_database_urls_on_a_socket_server_keep_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        databases.ADMIN_URL_VARIABLE,
        "postgresql://postgres@/postgres?host=/tmp/salesbot-test-pg-x/pgdata&port=5432",
    )

    url = make_url(databases.postgres_url("salesbot_test_a"))

    assert (url.drivername, url.username, url.host, url.database, dict(url.query)) == (
        "postgresql+psycopg",
        "postgres",
        None,
        "salesbot_test_a",
        {"host": "/tmp/salesbot-test-pg-x/pgdata", "port": "5432"},
    )


def test_an_unreachable_server_gives_a_throwaway_one_that_is_deleted_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(databases.ADMIN_URL_VARIABLE, UNREACHABLE)

    server = databases.choose_test_server()
    try:
        assert server.embedded
        assert os.environ[databases.ADMIN_URL_VARIABLE] == server.url
        assert f"because {UNREACHABLE} is unreachable" in server.description
        url = databases.create_postgres_database("salesbot_test_throwaway")
        engine = create_engine(url)
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version_num")).scalar_one()
        engine.dispose()
        databases.drop_postgres_database(url)
        socket_dir = Path(make_url(server.url).query["host"])  # type: ignore[arg-type]
    finally:
        server.stop()

    assert int(version) >= 180000
    assert os.environ[databases.ADMIN_URL_VARIABLE] == UNREACHABLE
    assert not socket_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=3)


def test_a_server_that_answers_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session's own server (the machine's, or the throwaway one) answers.
    answering = databases.admin_url()
    monkeypatch.setenv(databases.ADMIN_URL_VARIABLE, answering)

    server = databases.choose_test_server()
    server.stop()  # a no-op for a server the session did not start

    assert (server.embedded, server.url) == (False, answering)
    assert server.description.endswith(f"({databases.ADMIN_URL_VARIABLE})")
    with psycopg.connect(answering, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
