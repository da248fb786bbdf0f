"""Apply Alembic migrations from code (the CLI, the tests, start-up)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from storage.db import normalize_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """Return an Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalize_database_url(url).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Bring the database behind an open connection up to `revision`."""
    command.upgrade(alembic_config(connection=connection), revision)


def current_heads() -> set[str]:
    """Return the head revisions the code expects (read once: the scripts ship with the code,
    so /healthz and /readyz do not parse the migrations folder on every call)."""
    return set(_script_heads())


@functools.cache
def _script_heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())
