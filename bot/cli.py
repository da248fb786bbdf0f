"""The `salesbot` command line: serve, migrate, bootstrap orgs and tokens, import CSV."""

from __future__ import annotations

import gc
import sys
from typing import Annotated

import typer
from rich.console import Console

from bot.cli_import import import_command
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError, load_settings
from domain.clock import SystemClock
from domain.contacts import TokenScope
from domain.errors import SalesbotError

app = typer.Typer(
    help="Salesbot: re-engagement campaigns from Slack and Gmail.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organizations (tenants).", no_args_is_help=True)
token_app = typer.Typer(help="REST API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(token_app, name="token")
app.command("import")(import_command)

err = Console(stderr=True)
out = Console()


def settings_or_exit() -> Settings:
    """Load settings or exit with the one-line reason."""
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error line and return the exit to raise."""
    err.print(f"[red]error:[/red] {message}")
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
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    sandbox = None
    if settings.sandbox:
        from bot.sandbox import start_sandbox
        from storage.migrate import upgrade

        err.rule("[bold yellow]SANDBOX MODE[/bold yellow]")
        err.print(
            "[yellow]No Slack, Google or Anthropic credentials are set: Salesbot runs on "
            f"{settings.DATABASE_URL} against local stand-ins and reaches no external "
            "service.[/yellow]"
        )
        upgrade(settings.DATABASE_URL)
        sandbox = start_sandbox(settings, console=err)
        settings = sandbox.settings
        err.rule()
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
    return settings


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
    uvicorn.run(
        "bot.asgi:web_app",
        factory=True,
        host=host or settings.HOST,
        port=port or settings.PORT,
        workers=processes,
        log_level="info",
        log_config=None,  # each process configures logging in bot.asgi:web_app
    )


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
) -> None:
    """Run the background work: drafting, card posting, the Gmail outbox, inbound Gmail
    sync and the Slack work each click or command leaves after its ack."""
    import os
    import signal
    import threading

    from bot.app import build_background, build_runtime

    settings = _real_settings_or_exit("worker")
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    if nice:
        os.nice(nice)
    background = build_background(build_runtime(settings))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    background.start()
    err.print("salesbot worker running; stop it with Ctrl-C or SIGTERM")
    try:
        stopping.wait()
    finally:
        background.stop()


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (SQLite or PostgreSQL, from DATABASE_URL)."""
    from storage.migrate import upgrade

    settings = settings_or_exit()
    upgrade(settings.DATABASE_URL, revision)
    out.print(f"database at {revision}")


@org_app.command("create")
def org_create(
    slug: Annotated[str, typer.Option(help="Short unique name, e.g. 'lonestar'.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    admin_email: Annotated[str | None, typer.Option(help="Create this admin user too.")] = None,
) -> None:
    """Create an organization."""
    from domain.contacts import UserRole
    from storage.accounts import create_org, ensure_user

    with _session() as session:
        try:
            org = create_org(session, slug=slug, name=name or slug)
            if admin_email:
                ensure_user(session, org.id, email=admin_email, role=UserRole.ADMIN)
        except SalesbotError as exc:
            raise fail(exc.message) from None
        session.commit()
    out.print(f"organization {org.slug} created (id {org.id})")


@token_app.command("create")
def token_create(
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    scope: Annotated[TokenScope, typer.Option(help="read or write.")] = TokenScope.WRITE,
    user_email: Annotated[str | None, typer.Option(help="Act as this user.")] = None,
) -> None:
    """Create a REST API token; the secret is printed once, on standard output."""
    from storage.accounts import create_token, ensure_user, get_org

    with _session() as session:
        try:
            found = get_org(session, org)
            user_id = ensure_user(session, found.id, email=user_email) if user_email else None
            token_id, secret = create_token(
                session, found.id, name=name, scope=scope, user_id=user_id
            )
        except SalesbotError as exc:
            raise fail(exc.message) from None
        session.commit()
    err.print(f"token {token_id} for {found.slug} ({scope.value}); it is shown only once:")
    typer.echo(secret)


@token_app.command("revoke")
def token_revoke(
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
    token_id: Annotated[int, typer.Argument(help="Token id.")],
) -> None:
    """Revoke an API token."""
    from storage.accounts import get_org, revoke_token

    with _session() as session:
        try:
            found = get_org(session, org)
            revoke_token(session, found.id, token_id, now=SystemClock().now())
        except SalesbotError as exc:
            raise fail(exc.message) from None
        session.commit()
    out.print(f"token {token_id} revoked")


def _session():  # type: ignore[no-untyped-def]
    from storage.db import make_engine, make_session_factory

    settings = settings_or_exit()
    return make_session_factory(make_engine(settings.DATABASE_URL))()


def main() -> None:
    """Entry point of the `salesbot` script."""
    try:
        app()
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
