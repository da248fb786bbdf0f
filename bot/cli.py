"""The `salesbot` command line: serve, migrate, bootstrap orgs and tokens, import CSV."""

from __future__ import annotations

import gc
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from typer.core import TyperGroup

from bot.cli_cards import cards_app
from bot.cli_db import (
    DatabaseNotReady,
    explain_database_error,
    open_database,
    organizations_besides,
    shown_url,
)
from bot.cli_demo import demo_command
from bot.cli_import import import_command
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError, load_settings
from domain.accounts import Accounts
from domain.clock import SystemClock
from domain.contacts import TokenScope
from domain.errors import SalesbotError


class _OneLineErrors(TyperGroup):
    """Turn bad settings and database trouble in any command into one line and exit 2.

    Without it a wrong DATABASE_URL, a server that is down or a database nobody migrated
    printed a traceback (with SQL) instead of what to do.
    """

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click.Context
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise fail(str(exc), 2) from None
        except DatabaseNotReady as exc:
            raise fail(exc.message, 2) from None
        except SQLAlchemyError as exc:
            raise fail(explain_database_error(exc, _database_url()), 2) from None


def _database_url() -> str:
    try:
        return load_settings().DATABASE_URL
    except SettingsError:
        return "DATABASE_URL"


app = typer.Typer(
    cls=_OneLineErrors,
    help="Salesbot: re-engagement campaigns from Slack and Gmail.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organizations (tenants).", no_args_is_help=True)
token_app = typer.Typer(help="REST API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(token_app, name="token")
inbound_app = typer.Typer(help="Inbound email: the pipeline after the fetch.", no_args_is_help=True)
app.add_typer(inbound_app, name="inbound")
app.command("import")(import_command)
app.command("demo")(demo_command)
app.add_typer(cards_app, name="cards")

# Messages are one line each, however narrow the terminal (scripts grep them).
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def settings_or_exit() -> Settings:
    """Load settings or exit with the one-line reason."""
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error line and return the exit to raise."""
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Serve the Slack endpoints, the Gmail push endpoint and the REST API."""
    import uvicorn

    from bot.app import build_app

    settings = settings_or_exit()
    # What can refuse the start is checked before the logging is set up.
    if settings.sandbox:
        _refuse_a_real_database(settings.DATABASE_URL)
    else:
        _require_slack_settings(settings)
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    _single_process_metrics()
    sandbox = None
    if settings.sandbox:
        from bot.sandbox import print_banner, served_at, start_sandbox
        from storage.migrate import upgrade

        err.rule("[bold yellow]SANDBOX MODE[/bold yellow]")
        err.print(
            "[yellow]No Slack, Google or Anthropic credentials are set: Salesbot runs on "
            f"{escape(shown_url(settings.DATABASE_URL))} against local stand-ins and reaches "
            "no external service.[/yellow]"
        )
        upgrade(settings.DATABASE_URL)
        sandbox = start_sandbox(served_at(settings, port or settings.PORT), console=err)
        settings = sandbox.settings
        sandbox.app_url = f"http://127.0.0.1:{port or settings.PORT}"
        print_banner(sandbox, err)
    else:
        open_database(settings.DATABASE_URL).dispose()
    if sandbox is not None:
        from bot.app import build_services
        from bot.sandbox import mount_sandbox_console

        application = build_app(settings, services=build_services(settings, clock=sandbox.clock))
        mount_sandbox_console(application, sandbox)
    else:
        application = build_app(settings)
    gc.freeze()  # see bot/asgi.py: startup objects out of the collector's sight
    try:
        uvicorn.run(
            application,
            host=host or settings.HOST,
            port=port or settings.PORT,
            log_level="info",
            log_config=None,  # uvicorn's loggers print through ours (redacted)
        )
    finally:
        if sandbox is not None:
            sandbox.stop()


def _real_settings_or_exit(command: str) -> Settings:
    settings = settings_or_exit()
    if settings.sandbox:
        raise fail(
            f"`salesbot {command}` serves real credentials; none are set. For the sandbox "
            "(local stand-ins, one process) run `salesbot serve`.",
            2,
        )
    _require_slack_settings(settings)
    open_database(settings.DATABASE_URL).dispose()
    return settings


def _refuse_a_real_database(url: str) -> None:
    """Sandbox mode seeds a demo firm: never into a database that holds real organizations
    (a production .env whose credentials are missing or misspelled would otherwise do it)."""
    try:
        others = organizations_besides(url, "sandbox")
    except SQLAlchemyError as exc:
        raise fail(explain_database_error(exc, url), 2) from None
    if others:
        raise fail(
            f"no Slack, Google or Anthropic credentials are set, so this is sandbox mode, but "
            f"{shown_url(url)} holds organizations ({', '.join(others)}): sandbox mode would "
            "seed a demo firm into it. Set the credentials (are they in .env, spelled as in "
            ".env.example?), or point DATABASE_URL at a fresh database for the sandbox.",
            2,
        )


def _require_slack_settings(settings: Settings) -> None:
    """Refuse a half-set Slack mode: without the signing secret (or the OAuth client's
    secret) the server would start with no Slack endpoint, and Slack's requests meet 404s."""
    if not (settings.SLACK_BOT_TOKEN or settings.SLACK_CLIENT_ID):
        raise fail(
            "Slack is not configured: set SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID "
            "and SLACK_CLIENT_SECRET (OAuth), with SLACK_SIGNING_SECRET (docs/deploy.md, "
            '"Slack app"); or set no credential at all for the sandbox (`salesbot serve`)',
            2,
        )
    if settings.SLACK_CLIENT_ID and not settings.SLACK_CLIENT_SECRET:
        raise fail(
            "setting SLACK_CLIENT_SECRET is missing: OAuth mode (SLACK_CLIENT_ID) needs it "
            "(Slack app: Basic Information > App Credentials)",
            2,
        )
    if (settings.SLACK_BOT_TOKEN or settings.SLACK_CLIENT_ID) and not (
        settings.SLACK_SIGNING_SECRET
    ):
        raise fail(
            "setting SLACK_SIGNING_SECRET is missing: Salesbot verifies every Slack request "
            "with it (Slack app: Basic Information > App Credentials)",
            2,
        )


@app.command()
def web(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="uvicorn worker processes (one per core is a good start).")
    ] = 2,
) -> None:
    """Serve the endpoints only; run `salesbot worker` beside it for the background work."""
    import uvicorn

    settings = _real_settings_or_exit("web")
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    metrics_dir = _multiprocess_metrics() if processes > 1 else None
    if metrics_dir is None:
        _single_process_metrics()
    try:
        uvicorn.run(
            "bot.asgi:web_app",
            factory=True,
            host=host or settings.HOST,
            port=port or settings.PORT,
            workers=processes,
            log_level="info",
            log_config=None,  # each process configures logging in bot.asgi:web_app
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


# prometheus_client reads it when first imported, in each process (integrations/metrics.py).
_METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _multiprocess_metrics() -> str:
    """Give the web processes about to start a fresh directory for their metric files.

    Each uvicorn process writes its counts there and `/metrics`, in whichever process
    answers, adds them all up. The directory is this start's own (a restart begins from
    zero, as a single process does), and it is deleted when `salesbot web` exits.
    """
    path = tempfile.mkdtemp(prefix="salesbot-metrics-")
    os.environ[_METRICS_DIR_ENV] = path
    return path


def _single_process_metrics() -> None:
    """One process keeps its metrics in memory, whatever the environment says."""
    os.environ.pop(_METRICS_DIR_ENV, None)


@app.command()
def worker(
    nice: Annotated[
        int,
        typer.Option(
            min=0,
            max=19,
            help="Lower this process's CPU priority by this much, so that web processes on "
            "the same machine answer Slack first.",
        ),
    ] = 10,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this process's Prometheus metrics at http://HOST:PORT/metrics "
            "(the worker has no other HTTP server; off when not given).",
        ),
    ] = None,
) -> None:
    """Run the background work: drafting, card posting, the Gmail outbox, inbound Gmail
    sync and the Slack work each click or command leaves after its ack.

    On SIGTERM it takes no more work and finishes what it has in hand (an email being sent)
    within SHUTDOWN_GRACE_SECONDS, then exits 0; past the deadline it exits 1 at once, and
    the next worker carries on what it held.
    """
    import signal
    import threading

    _single_process_metrics()
    from bot.app import build_background, build_runtime

    settings = _real_settings_or_exit("worker")
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    if nice:
        os.nice(nice)
    background = build_background(build_runtime(settings))
    metrics_server = None
    if metrics_port is not None:
        from prometheus_client import start_http_server

        metrics_server, _ = start_http_server(metrics_port, addr=settings.HOST)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    background.start()
    say = _status_line(settings)
    say("salesbot worker running; stop it with Ctrl-C or SIGTERM")
    try:
        # A timed wait: Python runs a signal's handler in the main thread only, and a SIGTERM
        # the kernel hands to one of the background threads does not wake a main thread
        # blocked on a lock for good (seen: a worker that never stopped).
        while not stopping.wait(timeout=0.5):
            pass
        say("salesbot worker stopping: finishing the work in hand, taking no more")
    finally:
        finished = background.stop(grace=settings.SHUTDOWN_GRACE_SECONDS)
        if metrics_server is not None:
            metrics_server.shutdown()
    if not finished:
        say(
            f"salesbot worker stopped after {settings.SHUTDOWN_GRACE_SECONDS:g} s "
            "(SHUTDOWN_GRACE_SECONDS) with work still in hand; the next worker carries it on"
        )
        logging.shutdown()
        sys.stderr.flush()
        # The threads still busy (a Gmail call that hangs) would hold the exit up.
        os._exit(1)
    say("salesbot worker stopped")


def _status_line(settings: Settings) -> Callable[[str], None]:
    """How the worker tells its state: a plain line, or a log record when the logs are JSON
    (so that every line on stderr parses)."""
    if settings.LOG_FORMAT == "json":
        return logging.getLogger("bot.worker").info
    return err.print


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (SQLite or PostgreSQL, from DATABASE_URL)."""
    from storage.migrate import upgrade

    settings = settings_or_exit()
    upgrade(settings.DATABASE_URL, revision)
    out.print(f"database at {revision}")


_TEAM_ID = re.compile(r"^T[A-Z0-9]{2,31}$")
_DURATION = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
MAX_INSTALL_LINK_DAYS = 30


def _team_id(value: str | None) -> str | None:
    if value is None:
        return None
    team_id = value.strip()
    if not _TEAM_ID.match(team_id):
        raise fail(
            f"{team_id!r} is not a Slack workspace id: it looks like T0123ABCD (Slack: "
            "workspace settings, or `salesbot org link-slack` finds it from SLACK_BOT_TOKEN)",
            2,
        )
    return team_id


@org_app.command("create")
def org_create(
    slug: Annotated[str, typer.Option(help="Short unique name, e.g. 'lonestar'.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    admin_email: Annotated[str | None, typer.Option(help="Create this admin user too.")] = None,
    slack_team_id: Annotated[
        str | None,
        typer.Option(help="Bind this Slack workspace (its id, T…) to the organization."),
    ] = None,
) -> None:
    """Create an organization, optionally bound to a Slack workspace."""
    team_id = _team_id(slack_team_id)
    settings = settings_or_exit()
    if team_id is not None and settings.SLACK_BOT_TOKEN:
        _require_bot_token_workspace(settings, team_id)
    with _accounts(settings) as accounts:
        try:
            org = accounts.create_org(
                slug=slug, name=name or slug, admin_email=admin_email, slack_team_id=team_id
            )
        except SalesbotError as exc:
            raise fail(exc.message) from None
    if team_id:
        out.print(
            f"organization {org.slug} created (id {org.id}), bound to Slack workspace {team_id}"
        )
    else:
        out.print(f"organization {org.slug} created (id {org.id})")
        err.print(
            f"bind it to Slack with `salesbot org link-slack --org {org.slug}` (one workspace, "
            f"SLACK_BOT_TOKEN) or `salesbot org install-link --org {org.slug}` (OAuth install)"
        )


@org_app.command("link-slack")
def org_link_slack(
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
    team_id: Annotated[
        str | None,
        typer.Option(help="The Slack workspace id (T…); found with SLACK_BOT_TOKEN if omitted."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Bind the workspace found without asking.")
    ] = False,
) -> None:
    """Bind an organization to a Slack workspace, so its users' commands reach it.

    With SLACK_BOT_TOKEN set (single-workspace mode), Slack is asked (auth.test) which
    workspace the token belongs to: that one is offered, and a --team-id of another
    workspace is refused.
    """
    settings = settings_or_exit()
    wanted = _team_id(team_id)
    if settings.SLACK_BOT_TOKEN:
        if wanted is not None:
            _require_bot_token_workspace(settings, wanted)
        else:
            found_id, found_name = _bot_token_workspace(settings)
            err.print(f"SLACK_BOT_TOKEN belongs to Slack workspace {found_name} ({found_id}).")
            if not yes and not typer.confirm(f"Bind organization {org} to it?", err=True):
                raise fail("nothing was changed", 1)
            wanted = found_id
    elif wanted is None:
        raise fail(
            "give --team-id T… (there is no SLACK_BOT_TOKEN to ask Slack with); with "
            f"SLACK_CLIENT_ID, `salesbot org install-link --org {org}` binds the workspace "
            "that installs the app",
            2,
        )
    with _accounts(settings) as accounts:
        try:
            found = accounts.link_slack_team(org, wanted)
        except SalesbotError as exc:
            raise fail(exc.message) from None
    out.print(f"organization {found.slug} is bound to Slack workspace {wanted}")


def _require_bot_token_workspace(settings: Settings, wanted: str) -> None:
    """Refuse a workspace SLACK_BOT_TOKEN does not belong to: its commands could not be
    answered with the token."""
    found_id, found_name = _bot_token_workspace(settings)
    if wanted != found_id:
        raise fail(
            f"SLACK_BOT_TOKEN belongs to Slack workspace {found_name} ({found_id}), not "
            f"{wanted}: commands from {wanted} could not be answered with it",
            2,
        )


def _bot_token_workspace(settings: Settings) -> tuple[str, str]:
    """Ask Slack (auth.test) which workspace SLACK_BOT_TOKEN belongs to."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, timeout=15)
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        raise fail(
            f"Slack refused SLACK_BOT_TOKEN ({exc.response.get('error')}): check the token", 2
        ) from None
    except OSError as exc:
        raise fail(f"cannot reach Slack at {settings.SLACK_API_URL}: {exc}", 2) from None
    return str(answer["team_id"]), str(answer.get("team") or answer["team_id"])


@org_app.command("install-link")
def org_install_link(
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
    expires: Annotated[
        str, typer.Option(help="How long the link works: 30m, 12h, 7d (at most 30d).")
    ] = "7d",
) -> None:
    """Print a signed, expiring link that installs the Slack app into this organization.

    Whoever opens it and approves the install binds their workspace to the organization
    (and becomes its admin if it has none): hand it only to that workspace's admin.
    """
    from bot.slack_oauth import install_link_url

    settings = settings_or_exit()
    if not (settings.SLACK_CLIENT_ID and settings.SLACK_CLIENT_SECRET):
        raise fail(
            "install links need OAuth mode (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET); with "
            f"one workspace and SLACK_BOT_TOKEN run `salesbot org link-slack --org {org}`",
            2,
        )
    lifetime = _duration(expires)
    with _accounts(settings) as accounts:
        try:
            found = accounts.find_org(org)
        except SalesbotError as exc:
            raise fail(exc.message) from None
    until = datetime.now(UTC) + lifetime
    err.print(
        f"install link for organization {found.slug}, valid until "
        f"{until:%Y-%m-%d %H:%M} UTC; whoever approves it binds their workspace:"
    )
    typer.echo(install_link_url(settings, found.id, expires_in=int(lifetime.total_seconds())))


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise fail(f"--expires {text!r}: use minutes, hours or days, e.g. 30m, 12h or 7d", 2)
    lifetime = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if not timedelta(minutes=1) <= lifetime <= timedelta(days=MAX_INSTALL_LINK_DAYS):
        raise fail(f"--expires {text!r}: from 1m to {MAX_INSTALL_LINK_DAYS}d", 2)
    return lifetime


@org_app.command("list")
def org_list() -> None:
    """List the organizations: Slack workspace, admins and what they hold."""
    with _accounts() as accounts:
        orgs = accounts.list_orgs()
    if not orgs:
        out.print("no organizations yet: create one with `salesbot org create`")
        return
    table = Table()
    for column in ("slug", "name", "slack workspace", "admins"):
        table.add_column(column, overflow="fold")
    for column in ("users", "clients", "contacts", "campaigns", "tokens"):
        table.add_column(column, justify="right")
    for org in orgs:
        workspace = org.slack_team_id or "not bound"
        if org.slack_team_name:
            workspace += f" ({org.slack_team_name})"
        table.add_row(
            escape(org.slug),
            escape(org.name),
            escape(workspace),
            escape(", ".join(org.admins) or "none"),
            f"{org.users:,}",
            f"{org.clients:,}",
            f"{org.contacts:,}",
            f"{org.campaigns:,}",
            f"{org.tokens:,}",
        )
    _print_unwrapped(table)


@token_app.command("create")
def token_create(
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    scope: Annotated[TokenScope, typer.Option(help="read or write.")] = TokenScope.WRITE,
    user_email: Annotated[str | None, typer.Option(help="Act as this user.")] = None,
    create_user: Annotated[
        bool,
        typer.Option("--create-user", help="Add --user-email as a rep if it is not a user yet."),
    ] = False,
) -> None:
    """Create a REST API token; the secret is printed once, on standard output."""
    from domain.accounts import UnknownUser

    with _accounts() as accounts:
        try:
            token = accounts.create_token(
                org, name=name, scope=scope, user_email=user_email, create_user=create_user
            )
        except UnknownUser as exc:
            raise fail(
                f"{exc.email} is not a user of {exc.org.slug}: check the address, or "
                "add --create-user to add them as a rep",
                2,
            ) from None
        except SalesbotError as exc:
            raise fail(exc.message) from None
    err.print(
        f"token {token.id} for {token.org.slug} ({token.scope.value}); it is shown only once:"
    )
    typer.echo(token.secret)


@token_app.command("list")
def token_list(
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
) -> None:
    """List an organization's API tokens (never their secrets)."""
    with _accounts() as accounts:
        try:
            found, tokens = accounts.list_tokens(org)
        except SalesbotError as exc:
            raise fail(exc.message) from None
    if not tokens:
        out.print(f"{found.slug} has no API tokens: create one with `salesbot token create`")
        return
    table = Table(title=f"API tokens of {escape(found.slug)}")
    table.add_column("id", justify="right")
    for column in ("name", "scope", "acts as", "created", "last used", "revoked"):
        table.add_column(column, overflow="fold")
    for token in tokens:
        table.add_row(
            str(token.id),
            escape(token.name),
            token.scope.value,
            escape(token.user_email or "-"),
            _when(token.created_at),
            _when(token.last_used_at) if token.last_used_at else "never",
            _when(token.revoked_at) if token.revoked_at else "-",
        )
    _print_unwrapped(table)


def _print_unwrapped(table: Table) -> None:
    """Print a table one row a line, however narrow the terminal (rows stay greppable)."""
    natural = out.measure(table, options=out.options.update_width(10_000)).maximum
    # Console.print clamps a width to the console's: a console as wide as the table.
    Console(width=max(out.width, natural)).print(table)


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@token_app.command("revoke")
def token_revoke(
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
    token_id: Annotated[int, typer.Argument(help="Token id.")],
) -> None:
    """Revoke an API token."""
    with _accounts() as accounts:
        try:
            accounts.revoke_token(org, token_id)
        except SalesbotError as exc:
            raise fail(exc.message) from None
    out.print(f"token {token_id} revoked")


@inbound_app.command("reclassify")
def inbound_reclassify(
    since: Annotated[
        datetime, typer.Option(help="Messages received since this date (YYYY-MM-DD, UTC).")
    ],
    org: Annotated[str | None, typer.Option(help="Only this organization (slug).")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="Only messages in this state: processed, failed (parked by the pipeline) or "
            "parsed; both processed and parked when omitted."
        ),
    ] = None,
    queue_only: Annotated[
        bool, typer.Option("--queue-only", help="Put them back in the queue; a worker runs them.")
    ] = False,
) -> None:
    """Run the inbound pipeline again on matching messages.

    Idempotent: nothing is done twice, and an opt-out is never undone.

    Parked failures are retried. With --org, only that organization's messages are run.
    """
    from sqlalchemy import select

    from bot.app import build_message_classifiers, build_understanding
    from domain.deps import Deps
    from domain.rules import Rules
    from integrations.regex_re2 import Re2Engine
    from storage.db import make_session_factory
    from storage.models import Organization
    from storage.uow import UnitOfWork

    if status not in (None, "processed", "failed", "parsed"):
        raise fail(f"--status {status!r}: processed, failed or parsed", 2)
    when = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    if when > SystemClock().now():
        raise fail(
            f"--since {when:%Y-%m-%d %H:%M} UTC is in the future: no message was received "
            "since then; give a past date",
            2,
        )
    settings = settings_or_exit()
    engine = open_database(settings.DATABASE_URL)
    try:
        sessions = make_session_factory(engine)
        org_id: int | None = None
        if org is not None:
            with sessions() as session:
                org_id = session.scalar(select(Organization.id).where(Organization.slug == org))
            if org_id is None:
                raise fail(f"no organization {org!r}", 2)

        def uow() -> UnitOfWork:
            return UnitOfWork(sessions)

        understanding = build_understanding(
            uow,
            SystemClock(),
            work_lease=timedelta(seconds=settings.WORK_LEASE_SECONDS),
            classifiers=build_message_classifiers(settings),
            rules=Rules(Deps(uow=uow, clock=SystemClock()), regex=Re2Engine()),
        )
        counts = understanding.requeue(since=when, org_id=org_id, status=status)
        out.print(
            f"queued {counts.total} messages again ({counts.processed} processed, "
            f"{counts.failed} parked failures, {counts.parsed} parsed)"
        )
        if queue_only:
            return
        processed = failed = 0
        while True:
            outcome = understanding.run_once(org_id=org_id)
            if not outcome.claimed:
                break
            processed += outcome.processed
            failed += outcome.failed
        out.print(f"processed {processed}, failed {failed}")
    finally:
        engine.dispose()


@inbound_app.command("train")
def inbound_train(
    org: Annotated[
        str | None, typer.Option(help="Only this organization's corrections (slug).")
    ] = None,
) -> None:
    """Re-train the offline classifier on the labelled set plus reps' corrections.

    The corrections (each re-labelled message with its latest labels) are written to
    OFFLINE_CORRECTIONS_FILE, which the offline classifier trains on from then on (running
    workers notice the new file). Prints the examples, the count of each category and a
    5-fold cross-validated accuracy of the category.
    """
    import json
    import os
    from collections import Counter

    from sqlalchemy import select

    from integrations.offline_classifier import (
        BODY_LIMIT,
        LABELLED_SET,
        category_accuracy,
        load_offline_model,
        read_labelled_examples,
    )
    from storage.db import make_session_factory
    from storage.models import Organization
    from storage.uow import UnitOfWork

    settings = settings_or_exit()
    target = Path(settings.OFFLINE_CORRECTIONS_FILE)
    engine = open_database(settings.DATABASE_URL)
    try:
        sessions = make_session_factory(engine)
        org_id: int | None = None
        if org is not None:
            with sessions() as session:
                org_id = session.scalar(select(Organization.id).where(Organization.slug == org))
            if org_id is None:
                raise fail(f"no organization {org!r}", 2)
        with UnitOfWork(sessions) as uow:
            corrections = uow.corrections.training_set(org_id, body_chars=BODY_LIMIT)
    finally:
        engine.dispose()
    lines = [
        json.dumps(
            {
                "subject": example.subject,
                "body": example.body,
                "category": example.category.value,
                "sentiment": example.sentiment.value,
                "sentiment_score": {"positive": 0.5, "negative": -0.5}.get(
                    example.sentiment.value, 0.0
                ),
                "intent": example.intent.value,
                "language": "unknown",
                "source": f"correction of inbound email {email_id} (org {owner})",
            },
            ensure_ascii=False,
        )
        for owner, email_id, example in corrections
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(partial, target)  # a classifier reading the file never sees half of it
    labelled = read_labelled_examples(LABELLED_SET)
    examples = labelled + (read_labelled_examples(target) if lines else [])
    model = load_offline_model(extra=target)
    organizations = len({owner for owner, _, _ in corrections})
    scope = f"organization {org}" if org else f"{organizations} organization(s)"
    out.print(
        f"{len(examples)} examples: {len(labelled)} labelled + {len(corrections)} "
        f"corrections from {scope}"
    )
    counts = Counter(example.category.value for example in examples)
    added = Counter(example.category.value for _, _, example in corrections)
    for category, count in sorted(counts.items()):
        extra = f" (+{added[category]} corrections)" if added[category] else ""
        out.print(f"  {category}: {count}{extra}")
    out.print(f"category accuracy, 5-fold cross-validated: {category_accuracy(examples):.3f}")
    out.print(
        f"offline model {model.version}, trained in {model.training_seconds:.1f} s; "
        f"corrections written to {target}"
    )


@contextmanager
def _accounts(settings: Settings | None = None) -> Iterator[Accounts]:
    """The account use cases on the database of the settings, once it is known to be
    reachable and migrated (else one line says what to run)."""
    from storage.db import make_session_factory
    from storage.uow import UnitOfWork

    engine = open_database((settings or settings_or_exit()).DATABASE_URL)
    try:
        sessions = make_session_factory(engine)
        yield Accounts(uow=lambda: UnitOfWork(sessions), clock=SystemClock())
    finally:
        engine.dispose()


def main() -> None:
    """Entry point of the `salesbot` script."""
    try:
        app()
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
