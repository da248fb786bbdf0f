"""The `salesbot` commands that bootstrap a deployment: organizations, Slack, tokens, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from bot.slack_oauth import install_link_signer, org_of_install_link
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID, SlackStandIn
from storage import models as m
from storage.migrate import upgrade
from tests.support.accounts import create_token
from tests.support.builders import make_client, make_org
from tests.support.slack import ServedSlack

SECRET_KEY = "cli-test-secret-key-0123456789-abcdefghijklmnop"
SLACK_SETTINGS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_API_URL",
    "GOOGLE_CLIENT_ID",
    "ANTHROPIC_API_KEY",
)

Invoke = Callable[..., tuple[int, str]]


@pytest.fixture
def slack(served_slack: ServedSlack) -> SlackStandIn:
    served_slack.stand_in.reset()
    return served_slack.stand_in


@pytest.fixture
def cli(committed_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Invoke:
    """Run `salesbot …` on the committed database, without Slack settings unless set.

    The output comes back with runs of white space folded to one space (terminal wrapping).
    """
    monkeypatch.chdir(tmp_path)
    for name in SLACK_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", committed_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESBOT_SECRET_KEY", SECRET_KEY)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> tuple[int, str]:  # noqa: A002
        result = runner.invoke(app, list(args), input=input)
        return result.exit_code, " ".join(result.output.split())

    return invoke


def single_workspace(monkeypatch: pytest.MonkeyPatch, served: ServedSlack) -> None:
    monkeypatch.setenv("SLACK_API_URL", served.api_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", DEFAULT_BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "cli-test-signing-secret")


def team_of(engine: Engine, slug: str) -> str | None:
    with Session(engine) as session:
        return session.scalar(
            select(m.Organization.slack_team_id).where(m.Organization.slug == slug)
        )


def users_of(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(u.email, u.role) for u in session.scalars(select(m.User).order_by(m.User.email))]


# --- org create / link-slack -----------------------------------------------------------------


def test_org_create_binds_the_slack_workspace_it_is_given(
    cli: Invoke, committed_engine: Engine
) -> None:
    code, output = cli(
        "org", "create", "--slug", "lonestar", "--name", "Lone Star", "--slack-team-id", "T0LONE"
    )
    assert (code, output) == (
        0,
        "organization lonestar created (id "
        f"{_org_id(committed_engine, 'lonestar')}), bound to Slack workspace T0LONE",
    )
    assert team_of(committed_engine, "lonestar") == "T0LONE"


def test_org_create_refuses_a_slack_team_id_that_is_not_one_and_creates_nothing(
    cli: Invoke, committed_engine: Engine
) -> None:
    code, output = cli("org", "create", "--slug", "lonestar", "--slack-team-id", "lonestar")
    assert code == 2
    assert output.startswith("error: 'lonestar' is not a Slack workspace id: it looks like T0123")
    assert _org_id(committed_engine, "lonestar") is None


def test_org_create_refuses_a_workspace_that_already_belongs_to_another_organization(
    cli: Invoke, committed_engine: Engine
) -> None:
    assert cli("org", "create", "--slug", "first", "--slack-team-id", "T0LONE")[0] == 0
    code, output = cli("org", "create", "--slug", "second", "--slack-team-id", "T0LONE")
    assert (code, output) == (
        1,
        "error: Slack workspace T0LONE already belongs to organization first",
    )
    assert _org_id(committed_engine, "second") is None


def test_org_create_with_a_bot_token_refuses_a_workspace_the_token_does_not_belong_to(
    cli: Invoke,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    served_slack: ServedSlack,
    slack: SlackStandIn,
) -> None:
    """`org link-slack --team-id` checked the id against SLACK_BOT_TOKEN's workspace;
    `org create --slack-team-id` bound any id, and every command from Slack then found no
    organization."""
    single_workspace(monkeypatch, served_slack)
    code, output = cli("org", "create", "--slug", "lonestar", "--slack-team-id", "T0TYPO")
    assert (code, output) == (
        2,
        "error: SLACK_BOT_TOKEN belongs to Slack workspace Sandbox Appraisals (T0SANDBOX), "
        "not T0TYPO: commands from T0TYPO could not be answered with it",
    )
    assert _org_id(committed_engine, "lonestar") is None
    code, output = cli("org", "create", "--slug", "lonestar", "--slack-team-id", "T0SANDBOX")
    assert code == 0, output
    assert team_of(committed_engine, "lonestar") == "T0SANDBOX"


def test_link_slack_offers_the_workspace_of_the_bot_token_and_binds_it_when_confirmed(
    cli: Invoke,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    served_slack: ServedSlack,
    slack: SlackStandIn,
) -> None:
    single_workspace(monkeypatch, served_slack)
    assert cli("org", "create", "--slug", "lonestar")[0] == 0

    code, output = cli("org", "link-slack", "--org", "lonestar", input="y\n")

    assert code == 0, output
    assert output == (
        "SLACK_BOT_TOKEN belongs to Slack workspace Sandbox Appraisals (T0SANDBOX). "
        "Bind organization lonestar to it? [y/N]: y "
        "organization lonestar is bound to Slack workspace T0SANDBOX"
    )
    assert team_of(committed_engine, "lonestar") == DEFAULT_TEAM_ID
    assert [c.token for c in slack.calls("auth.test")] == [DEFAULT_BOT_TOKEN]


def test_link_slack_changes_nothing_when_the_offer_is_declined(
    cli: Invoke,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    served_slack: ServedSlack,
    slack: SlackStandIn,
) -> None:
    single_workspace(monkeypatch, served_slack)
    assert cli("org", "create", "--slug", "lonestar")[0] == 0
    code, output = cli("org", "link-slack", "--org", "lonestar", input="n\n")
    assert code == 1
    assert output.endswith("error: nothing was changed")
    assert team_of(committed_engine, "lonestar") is None


def test_link_slack_refuses_a_team_id_the_bot_token_does_not_belong_to(
    cli: Invoke,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    served_slack: ServedSlack,
    slack: SlackStandIn,
) -> None:
    single_workspace(monkeypatch, served_slack)
    assert cli("org", "create", "--slug", "lonestar")[0] == 0
    code, output = cli("org", "link-slack", "--org", "lonestar", "--team-id", "T0OTHER")
    assert (code, output) == (
        2,
        "error: SLACK_BOT_TOKEN belongs to Slack workspace Sandbox Appraisals (T0SANDBOX), "
        "not T0OTHER: commands from T0OTHER could not be answered with it",
    )
    assert team_of(committed_engine, "lonestar") is None


def test_link_slack_says_so_when_slack_refuses_the_bot_token(
    cli: Invoke,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    served_slack: ServedSlack,
    slack: SlackStandIn,
) -> None:
    single_workspace(monkeypatch, served_slack)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-not-a-token-slack-knows")
    assert cli("org", "create", "--slug", "lonestar")[0] == 0
    code, output = cli("org", "link-slack", "--org", "lonestar", "--yes")
    assert (code, output) == (
        2,
        "error: Slack refused SLACK_BOT_TOKEN (invalid_auth): check the token",
    )


def test_link_slack_without_a_bot_token_needs_the_team_id(
    cli: Invoke, committed_engine: Engine
) -> None:
    assert cli("org", "create", "--slug", "lonestar")[0] == 0
    code, output = cli("org", "link-slack", "--org", "lonestar")
    assert code == 2
    assert output.startswith("error: give --team-id T… (there is no SLACK_BOT_TOKEN")
    assert cli("org", "link-slack", "--org", "lonestar", "--team-id", "T0LONE")[0] == 0
    assert team_of(committed_engine, "lonestar") == "T0LONE"


def test_link_slack_refuses_to_move_an_organization_to_another_workspace(
    cli: Invoke, committed_engine: Engine
) -> None:
    assert cli("org", "create", "--slug", "lonestar", "--slack-team-id", "T0LONE")[0] == 0
    code, output = cli("org", "link-slack", "--org", "lonestar", "--team-id", "T0OTHER")
    assert (code, output) == (
        1,
        "error: organization lonestar is already bound to Slack workspace T0LONE",
    )
    assert team_of(committed_engine, "lonestar") == "T0LONE"


# --- install-link ----------------------------------------------------------------------------


def test_install_link_is_a_signed_link_to_the_install_page_for_that_organization(
    cli: Invoke, committed_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_CLIENT_ID", "0000000001.0000000001")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "sandbox-client-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "cli-test-signing-secret")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://salesbot.example.com")
    assert cli("org", "create", "--slug", "lonestar")[0] == 0

    code, output = cli("org", "install-link", "--org", "lonestar", "--expires", "2h")

    assert code == 0, output
    url = output.split()[-1]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "salesbot.example.com",
        "/slack/install",
    )
    assert output.startswith("install link for organization lonestar, valid until ")
    link = parse_qs(parts.query)["link"][0]
    signer = install_link_signer(SECRET_KEY)
    assert org_of_install_link(signer, link) == _org_id(committed_engine, "lonestar")


def test_install_link_needs_oauth_mode(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, served_slack: ServedSlack
) -> None:
    single_workspace(monkeypatch, served_slack)
    code, output = cli("org", "install-link", "--org", "lonestar")
    assert code == 2
    assert output.startswith("error: install links need OAuth mode (SLACK_CLIENT_ID")


@pytest.mark.parametrize("expires", ["forever", "0m", "31d"])
def test_install_link_refuses_a_lifetime_it_cannot_give(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, expires: str
) -> None:
    monkeypatch.setenv("SLACK_CLIENT_ID", "0000000001.0000000001")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "sandbox-client-secret")
    code, output = cli("org", "install-link", "--org", "lonestar", "--expires", expires)
    assert code == 2
    assert output.startswith(f"error: --expires {expires!r}:")


# --- org list / token list / token create ----------------------------------------------------


def test_org_list_shows_each_organization_with_its_workspace_admins_and_counts(
    cli: Invoke, committed_engine: Engine
) -> None:
    assert cli(
        "org", "create", "--slug", "lonestar", "--name", "Lone Star", "--admin-email",
        "maria@lonestar.example.com", "--slack-team-id", "T0LONE",
    )[0] == 0  # fmt: skip
    assert cli("org", "create", "--slug", "rival", "--name", "Rival")[0] == 0
    with Session(committed_engine) as session:
        lonestar = session.scalars(
            select(m.Organization).where(m.Organization.slug == "lonestar")
        ).one()
        make_client(session, lonestar, domain="pinnacle.example.com")
        session.commit()

    code, output = cli("org", "list")

    assert code == 0
    cells = [cell.strip() for cell in output.split("│")]
    rows = [cells[i : i + 9] for i in (cells.index("lonestar"), cells.index("rival"))]
    assert rows == [
        ["lonestar", "Lone Star", "T0LONE", "maria@lonestar.example.com", "1", "1", "0", "0", "0"],
        ["rival", "Rival", "not bound", "none", "0", "0", "0", "0", "0"],
    ]


def test_token_list_shows_names_and_scopes_and_never_the_secret_or_its_hash(
    cli: Invoke, committed_engine: Engine
) -> None:
    with Session(committed_engine) as session:
        org = make_org(session, slug="lonestar")
        _, secret = create_token(session, org.id, name="ops")
        session.commit()
        stored = session.scalars(select(m.ApiToken.token_hash)).one()

    code, output = cli("token", "list", "--org", "lonestar")

    assert code == 0
    assert "│ ops │ write │ - │" in output
    assert "│ never │ - │" in output
    assert secret not in output
    assert secret[:10] not in output
    assert stored not in output


def test_token_create_for_an_unknown_address_needs_create_user(
    cli: Invoke, committed_engine: Engine
) -> None:
    assert cli("org", "create", "--slug", "lonestar")[0] == 0
    code, output = cli("token", "create", "--org", "lonestar", "--user-email", "typo@lonestar.com")
    assert (code, output) == (
        2,
        "error: typo@lonestar.com is not a user of lonestar: check the address, or add "
        "--create-user to add them as a rep",
    )
    assert users_of(committed_engine) == []
    with Session(committed_engine) as session:
        assert session.scalars(select(m.ApiToken)).all() == []

    code, output = cli(
        "token", "create", "--org", "lonestar", "--user-email", "new@lonestar.com", "--create-user"
    )
    assert code == 0
    assert output.split()[-1].startswith("sbt_")
    assert users_of(committed_engine) == [("new@lonestar.com", "rep")]


def test_token_create_acts_as_an_existing_user_without_create_user(
    cli: Invoke, committed_engine: Engine
) -> None:
    assert cli(
        "org", "create", "--slug", "lonestar", "--admin-email", "maria@lonestar.com"
    )[0] == 0  # fmt: skip
    code, _ = cli("token", "create", "--org", "lonestar", "--user-email", "Maria@Lonestar.com")
    assert code == 0
    with Session(committed_engine) as session:
        user_id = session.scalars(select(m.ApiToken.user_id)).one()
        assert session.get(m.User, user_id).email == "maria@lonestar.com"  # type: ignore[union-attr]


# --- one line for bad settings and databases -------------------------------------------------

EVERY_DATABASE_COMMAND = [
    ("db", "upgrade"),
    ("org", "create", "--slug", "lonestar"),
    ("org", "list"),
    ("org", "link-slack", "--org", "lonestar", "--team-id", "T0LONE"),
    ("token", "create", "--org", "lonestar"),
    ("token", "list", "--org", "lonestar"),
    ("token", "revoke", "--org", "lonestar", "1"),
    ("import", "clients", "SAMPLE", "--org", "lonestar"),
]
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _args(command: tuple[str, ...]) -> list[str]:
    return [str(SAMPLES / "clients.csv") if a == "SAMPLE" else a for a in command]


@pytest.mark.parametrize("command", EVERY_DATABASE_COMMAND, ids=" ".join)
def test_a_misspelt_database_url_is_one_line_in_every_command(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgress://salesbot:hunter2secret@127.0.0.1/salesbot")
    code, output = cli(*_args(command))
    assert (code, output) == (
        2,
        "error: setting DATABASE_URL is malformed: must be a sqlite:///path or "
        "postgresql://user:password@host:port/database URL",
    )


CLOCK_EXAMPLE = "an ISO 8601 instant with its offset, e.g. 2026-03-02T15:00:00+00:00"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "there is no file {path}; it must hold " + CLOCK_EXAMPLE),
        ("next Monday", "{path} must hold " + CLOCK_EXAMPLE + ", not 'next Monday'"),
        (
            "2026-03-02T09:00:00",
            "{path} holds '2026-03-02T09:00:00' without an offset; it must hold " + CLOCK_EXAMPLE,
        ),
    ],
    ids=["missing", "not_an_instant", "no_offset"],
)
def test_a_clock_file_that_cannot_be_read_is_one_line_before_anything_starts(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "now.txt"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("SALESBOT_CLOCK_FILE", str(path))
    code, output = cli("org", "list")
    assert (code, output) == (
        2,
        "error: setting SALESBOT_CLOCK_FILE is malformed: " + reason.format(path=path),
    )


def test_a_clock_file_holding_an_instant_with_its_offset_is_accepted(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "now.txt"
    path.write_text("2026-03-02T15:00:00+00:00\n")
    monkeypatch.setenv("SALESBOT_CLOCK_FILE", str(path))
    assert cli("org", "list")[0] == 0


@pytest.mark.parametrize("command", EVERY_DATABASE_COMMAND, ids=" ".join)
def test_an_unreachable_database_is_one_line_without_its_password_in_every_command(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://salesbot:hunter2secret@127.0.0.1:1/salesbot")
    code, output = cli(*_args(command))
    assert code == 2
    assert output.startswith(
        "error: cannot connect to the database at "
        "postgresql://salesbot:***@127.0.0.1:1/salesbot: connection failed:"
    ), output
    assert output.endswith("is it running, and is DATABASE_URL right?")
    assert "hunter2secret" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", EVERY_DATABASE_COMMAND[1:], ids=" ".join)
def test_a_database_without_the_schema_says_to_run_db_upgrade_in_every_command(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    code, output = cli(*_args(command))
    assert (code, output) == (
        2,
        f"error: the database at {url} has no schema: run `salesbot db upgrade`",
    )


def test_a_database_behind_the_code_says_to_run_db_upgrade(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    monkeypatch.setenv("DATABASE_URL", url)
    code, output = cli("org", "list")
    assert code == 2
    assert output.startswith(f"error: the database at {url} is at schema revision 0001, ")
    assert output.endswith(": run `salesbot db upgrade`")


@pytest.mark.parametrize("command", ["web", "worker"])
def test_web_and_worker_check_the_database_before_they_start(
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    served_slack: ServedSlack,
    tmp_path: Path,
    command: str,
) -> None:
    single_workspace(monkeypatch, served_slack)
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert cli(command) == (
        2,
        f"error: the database at {url} has no schema: run `salesbot db upgrade`",
    )


def test_db_upgrade_then_org_create_works_on_an_empty_database(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert cli("db", "upgrade") == (0, "database at head")
    code, output = cli("org", "create", "--slug", "lonestar")
    assert code == 0
    assert output.startswith("organization lonestar created (id 1)")


def _org_id(engine: Engine, slug: str) -> int | None:
    with Session(engine) as session:
        return session.scalar(select(m.Organization.id).where(m.Organization.slug == slug))


def test_inbound_reclassify_retries_parked_messages_and_leaves_fetch_failures_alone(
    cli: Invoke, committed_engine: Engine
) -> None:
    from datetime import UTC, datetime

    from storage.db import make_session_factory

    sessions = make_session_factory(committed_engine)
    received = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    with sessions() as session:
        org = make_org(session, slug="acme")
        other = make_org(session, slug="other")

        def row(org_id: int, gmail_id: str, status: str, attempts: int) -> m.InboundEmail:
            email = m.InboundEmail(
                org_id=org_id,
                gmail_message_id=gmail_id,
                status=status,
                pipeline_attempts=attempts,
                error="RuntimeError: boom" if status == "failed" else None,
                from_email="dana@pinnacle.example",
                subject="Re: turn times",
                body_text="Yes, send me your fee schedule.",
                received_at=received,
            )
            session.add(email)
            return email

        parked = row(org.id, "g-parked", "failed", 5)
        fetch_failed = row(org.id, "g-fetch", "failed", 0)
        elsewhere = row(other.id, "g-other", "failed", 5)
        session.commit()
        ids = (parked.id, fetch_failed.id, elsewhere.id)

    code, output = cli(
        "inbound", "reclassify", "--since", "2026-11-01", "--org", "acme", "--status", "failed"
    )

    assert code == 0, output
    assert "queued 1 messages again (0 processed, 1 parked failures, 0 parsed)" in output
    assert "processed 1, failed 0" in output
    with sessions() as session:
        rows = {r.id: r for r in session.scalars(select(m.InboundEmail))}
    assert (rows[ids[0]].status, rows[ids[0]].error, rows[ids[0]].category) == (
        "processed",
        None,
        "OPPORTUNITY",
    )
    assert rows[ids[1]].status == "failed"  # a fetch failure is the fetch retry's
    assert rows[ids[2]].status == "failed"  # another organization's
    code, output = cli("inbound", "reclassify", "--since", "2026-11-01", "--status", "nope")
    assert code == 2


def test_inbound_reclassify_for_one_organization_runs_none_of_another_s_queue(
    cli: Invoke, committed_engine: Engine
) -> None:
    """It ran the pipeline until the whole queue was empty: another organization's waiting
    messages were processed by a command given `--org acme`."""
    from datetime import UTC, datetime

    from storage.db import make_session_factory

    sessions = make_session_factory(committed_engine)
    received = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    with sessions() as session:
        acme = make_org(session, slug="acme")
        other = make_org(session, slug="other")
        rows = [
            m.InboundEmail(
                org_id=org_id,
                gmail_message_id=gmail_id,
                status=status,
                from_email="dana@pinnacle.example",
                subject="Re: turn times",
                body_text="Yes, send me your fee schedule.",
                received_at=received,
            )
            for org_id, gmail_id, status in (
                (acme.id, "g-acme", "processed"),
                (other.id, "g-other-waiting", "parsed"),
                (other.id, "g-other-done", "processed"),
            )
        ]
        session.add_all(rows)
        session.commit()
        ids = [row.id for row in rows]

    code, output = cli("inbound", "reclassify", "--since", "2026-11-01", "--org", "acme")

    assert code == 0, output
    assert "queued 1 messages again (1 processed, 0 parked failures, 0 parsed)" in output
    assert "processed 1, failed 0" in output
    with sessions() as session:
        after = {r.id: r for r in session.scalars(select(m.InboundEmail))}
    assert after[ids[0]].category == "OPPORTUNITY"
    assert (after[ids[1]].status, after[ids[1]].pipeline_attempts) == ("parsed", 0)
    assert (after[ids[2]].status, after[ids[2]].category) == ("processed", None)


def test_inbound_reclassify_refuses_a_date_in_the_future(cli: Invoke) -> None:
    code, output = cli("inbound", "reclassify", "--since", "2999-01-01")

    assert code == 2
    assert "--since 2999-01-01 00:00 UTC is in the future" in output


def test_inbound_reclassify_help_keeps_each_sentence_on_one_line() -> None:
    """Its docstring's line breaks were printed: "nothing is done" and "twice" on two lines."""
    result = CliRunner().invoke(
        app, ["inbound", "reclassify", "--help"], env={"COLUMNS": "120", "TERMINAL_WIDTH": "120"}
    )

    lines = [line.strip() for line in result.output.splitlines()]
    assert "Idempotent: nothing is done twice, and an opt-out is never undone." in lines
    assert (
        "Parked failures are retried. With --org, only that organization's messages are run."
        in lines
    )


@pytest.mark.parametrize("command", ["web", "worker", "serve"])
def test_a_server_with_some_credentials_but_no_slack_says_slack_is_not_configured(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # Not the sandbox (a credential is set), and no Slack: it would serve no Slack endpoint.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-only-this")
    code, output = cli(command)
    assert code == 2
    assert output.startswith("error: Slack is not configured: set SLACK_BOT_TOKEN")


def test_sandbox_mode_refuses_a_database_that_holds_real_organizations(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'production.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    for name in ("ANTHROPIC_API_KEY", "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert cli("db", "upgrade") == (0, "database at head")
    assert cli("org", "create", "--slug", "lonestar")[0] == 0
    code, output = cli("serve")
    assert code == 2
    assert "holds organizations (lonestar): sandbox mode would seed a demo firm into it" in output
    with Session(create_engine(url)) as session:
        slugs = session.scalars(select(m.Organization.slug)).all()
    assert slugs == ["lonestar"]
