"""`salesbot import reviews FILE --org ORG`, on SQLite and PostgreSQL: all or nothing, with
every bad row's line, column and reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from storage import models as m
from tests.support.builders import make_org

Invoke = Callable[..., tuple[int, str]]
HEADER = "platform,external_id,rating,author,text,url,posted_at\n"


@pytest.fixture
def cli(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Invoke]:
    monkeypatch.chdir(tmp_path)
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", committed_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESBOT_SECRET_KEY", "reviews-csv-test-secret-key-0123456789abcdef")
    with Session(committed_engine) as session:
        make_org(session, slug="lonestar", name="Lone Star Appraisals")
        session.commit()
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, " ".join(result.output.split())

    yield invoke
    with Session(committed_engine) as session:
        session.execute(delete(m.Organization).where(m.Organization.slug == "lonestar"))
        session.commit()


def reviews_in(engine: Engine) -> list[tuple[str, str, int, str]]:
    with Session(engine) as session:
        rows = session.execute(
            select(m.Review.platform, m.Review.external_id, m.Review.rating, m.Review.status)
            .join(m.Organization, m.Organization.id == m.Review.org_id)
            .where(m.Organization.slug == "lonestar")
            .order_by(m.Review.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_clean_file_is_imported_with_its_response_cards(
    cli: Invoke, tmp_path: Path, committed_engine: Engine
) -> None:
    file = tmp_path / "reviews.csv"
    file.write_text(
        HEADER
        + "google,g1,5,Dana,Great work!,,2026-11-30T10:00:00Z\n"
        + 'Yelp,y1,2,Pat,"Late, and nobody called.",https://yelp.example/y1,\n'
        + "trustpilot,t1,3,,,,\n",
        encoding="utf-8",
    )
    code, output = cli("import", "reviews", str(file), "--org", "lonestar")
    assert code == 0, output
    assert "3 reviews imported, 0 already there, 2 response cards, 0 escalations" in output
    assert reviews_in(committed_engine) == [
        ("google", "g1", 5, "new"),
        ("yelp", "y1", 2, "awaiting_response"),
        ("trustpilot", "t1", 3, "awaiting_response"),
    ]
    again_code, again = cli("import", "reviews", str(file), "--org", "lonestar")
    assert again_code == 0
    assert "0 reviews imported, 3 already there" in again
    with Session(committed_engine) as session:
        assert (
            session.scalar(select(func.count(m.Card.id)).where(m.Card.type == "review_response"))
            == 2
        )


def test_unknown_platforms_and_bad_ratings_are_row_errors_and_nothing_is_written(
    cli: Invoke, tmp_path: Path, committed_engine: Engine
) -> None:
    file = tmp_path / "reviews.csv"
    file.write_text(
        HEADER
        + "google,g1,5,Dana,Great,,\n"
        + "myspace,m1,4,Al,Hi,,\n"
        + "yelp,y2,0,Bo,Bad,,\n"
        + "facebook,,3,Cy,Ok,,\n",
        encoding="utf-8",
    )
    code, output = cli("import", "reviews", str(file), "--org", "lonestar")
    assert code == 2
    assert (
        "row 3, platform: unknown platform 'myspace'; use one of google, yelp, facebook, "
        "zillow, trustpilot" in output
    )
    assert "row 4, rating: Input should be greater than or equal to 1" in output
    assert "row 5, external_id:" in output
    assert "3 row(s) refused; nothing was imported" in output
    assert reviews_in(committed_engine) == []


def test_a_header_without_a_required_column_is_refused(cli: Invoke, tmp_path: Path) -> None:
    file = tmp_path / "reviews.csv"
    file.write_text("platform,stars,text\ngoogle,5,x\n", encoding="utf-8")
    code, output = cli("import", "reviews", str(file), "--org", "lonestar")
    assert code == 2
    assert "missing column(s) external_id, rating; unknown column(s) stars" in output
