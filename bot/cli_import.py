"""`salesbot import KIND FILE --org ORG`: load a CRM export (clients, contacts, orders) from CSV.

The format of each kind is in docs/csv-import.md. Exit codes: 0 every row imported,
1 some rows rejected (the good ones landed), 2 nothing could be imported (the file
is unreadable or not UTF-8, a required column is missing, the org is unknown) or
the database stopped the import part-way.
"""

from __future__ import annotations

import csv
import time
from contextlib import ExitStack
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from bot.cli_db import DatabaseNotReady, open_database
from bot.settings import SettingsError, load_settings
from domain.clock import SystemClock
from domain.errors import NotFound
from domain.imports import (
    CsvRows,
    ImportFileError,
    ImportKind,
    ImportReport,
    find_invalid_utf8,
    map_header,
    neutralise_formula,
)

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage.db import SessionFactory

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_FATAL = 2
SHOWN_ERRORS = 50
_CHUNK = 1 << 20

err = Console(stderr=True)
out = Console()


class ImportTarget(StrEnum):
    """What `salesbot import` loads: a CRM kind, or reviews (docs/reputation.md)."""

    CLIENTS = "clients"
    CONTACTS = "contacts"
    ORDERS = "orders"
    REVIEWS = "reviews"


def import_command(
    target: Annotated[
        ImportTarget,
        typer.Argument(
            help="What the file holds: clients, contacts, orders or reviews.",
            metavar="KIND",
        ),
    ],
    file: Annotated[Path, typer.Argument(help="The CSV file: UTF-8, a header row first.")],
    org: Annotated[str, typer.Option(help="Organization slug or id.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and report, but write nothing.")
    ] = False,
    errors_csv: Annotated[
        Path | None,
        typer.Option(help="Write every rejected row, with its row number and reason, here."),
    ] = None,
) -> None:
    """Import clients, contacts or appraisal orders from a CSV export; safe to repeat.

    Rows are matched by client domain, contact email or order number (docs/csv-import.md).

    Exit code 0: every row imported; 1: some rows rejected, the others landed; 2: none.
    """
    from domain.accounts import Accounts
    from storage.db import make_session_factory
    from storage.uow import UnitOfWork

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fatal(str(exc)) from None
    try:
        engine = open_database(settings.DATABASE_URL, pool_size=10)
    except DatabaseNotReady as exc:
        raise _fatal(exc.message) from None
    try:
        session_factory = make_session_factory(engine)
        try:
            accounts = Accounts(uow=lambda: UnitOfWork(session_factory), clock=SystemClock())
            found = accounts.find_org(org)
        except NotFound as exc:
            raise _fatal(f"{exc.message}; create it with `salesbot org create`") from None
        if target == ImportTarget.REVIEWS:
            _import_reviews(session_factory, settings, org_id=found.id, file=file, dry_run=dry_run)
            raise typer.Exit(EXIT_OK)
        kind = ImportKind(target.value)
        with ExitStack() as stack:
            # Opened before the import so that a bad path fails first, not after it.
            errors_file = stack.enter_context(_open_errors_csv(errors_csv)) if errors_csv else None
            started = time.perf_counter()
            try:
                report = import_file(
                    session_factory,
                    org_id=found.id,
                    kind=kind,
                    path=file,
                    now=SystemClock().now(),
                    dry_run=dry_run,
                    console=err,
                )
            except ImportFileError as exc:
                if errors_csv is not None:
                    errors_csv.unlink(missing_ok=True)
                raise _fatal(f"{file}: {exc.message}") from None
            elapsed = time.perf_counter() - started
            print_report(report, org=found.slug, file=file, seconds=elapsed)
            if errors_file is not None:
                write_errors_csv(report, errors_file)
                out.print(f"rejected rows written to {escape(str(errors_csv))}")
    finally:
        engine.dispose()
    raise typer.Exit(exit_code(report))


def import_file(
    session_factory: SessionFactory,
    *,
    org_id: int,
    kind: ImportKind,
    path: Path,
    now: datetime,
    dry_run: bool = False,
    console: Console | None = None,
) -> ImportReport:
    """Check that the file is readable UTF-8, then import it with a progress bar by bytes.

    Raises ImportFileError, having written nothing, if the file cannot be read, is not
    UTF-8 or lacks a required column. Without a console no progress bar is drawn.
    """
    from storage.importer import import_csv

    size = check_utf8_file(path)
    check_header(path, kind)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    )
    try:
        lines = progress.open(
            path,
            "r",
            encoding="utf-8-sig",
            newline="",
            total=size,
            description=f"importing {kind.value}",
        )
    except OSError as exc:
        raise ImportFileError(f"cannot read the file: {exc.strerror or exc}") from None
    with progress, lines as stream:
        return import_csv(
            session_factory,
            org_id=org_id,
            kind=kind,
            lines=stream,
            now=now,
            dry_run=dry_run,
        )


def check_header(path: Path, kind: ImportKind) -> None:
    """Raise ImportFileError if the header lacks a column of `kind` or names another kind.

    Done before the progress bar starts, so that a refused file prints one line.
    """
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as stream:
            map_header(kind, CsvRows(stream).header)
    except OSError as exc:
        raise ImportFileError(f"cannot read the file: {exc.strerror or exc}") from None


def check_utf8_file(path: Path) -> int:
    """Return the size of a readable UTF-8 file; raise ImportFileError saying where it is not."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            handle.seek(0)
            invalid = find_invalid_utf8(iter(lambda: handle.read(_CHUNK), b""))
            size = handle.tell()
    except OSError as exc:
        raise ImportFileError(f"cannot read the file: {exc.strerror or exc}") from None
    if invalid is None:
        return size
    offset, line = invalid
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        found = "UTF-16 (Excel's 'Unicode Text')"
    else:
        found = f"not UTF-8: the byte at offset {offset} (line {line}) is not valid UTF-8"
    raise ImportFileError(
        f"the file is {found}. Nothing was imported. Save it as 'CSV UTF-8' "
        "(Excel: File > Save As > CSV UTF-8) and import it again."
    )


def _import_reviews(
    session_factory: SessionFactory,
    settings: Settings,
    *,
    org_id: int,
    file: Path,
    dry_run: bool,
) -> None:
    """Import a review CSV all or nothing; print the row errors and exit 2 when one is bad."""
    from bot.app import build_message_classifiers
    from bot.cli_reviews import SHOWN_ROW_ERRORS, ReviewFileRefused, describe, run_import
    from domain.reputation import parse_review_csv

    try:
        if dry_run:
            with file.open(encoding="utf-8-sig", newline="") as stream:
                reviews, errors = parse_review_csv(stream)
            if errors:
                raise ReviewFileRefused(f"{file}: {len(errors)} error(s)", errors)
            out.print(f"{len(reviews):,} reviews checked (dry run: nothing was written)")
            return
        result, seconds = run_import(
            session_factory,
            SystemClock(),
            org_id=org_id,
            path=file,
            secret_key=settings.SALESBOT_SECRET_KEY,
            classifiers=build_message_classifiers(settings),
        )
    except (ReviewFileRefused, OSError, UnicodeDecodeError) as exc:
        errors = exc.errors if isinstance(exc, ReviewFileRefused) else []
        for error in errors[:SHOWN_ROW_ERRORS]:
            err.print(escape(str(error)), soft_wrap=True)
        if len(errors) > SHOWN_ROW_ERRORS:
            err.print(f"... and {len(errors) - SHOWN_ROW_ERRORS:,} more")
        message = exc.message if isinstance(exc, ReviewFileRefused) else f"{file}: {exc}"
        raise _fatal(message) from None
    out.print(describe(result, seconds=seconds))


def exit_code(report: ImportReport) -> int:
    """Return the exit code an import ends with."""
    if report.fatal is not None:
        return EXIT_FATAL
    return EXIT_REJECTED if report.errors else EXIT_OK


def print_report(report: ImportReport, *, org: str, file: Path, seconds: float) -> None:
    """Print the summary table and the first rejected rows."""
    rate = report.rows / seconds if seconds > 0 else 0.0
    title = f"{report.kind.value} from {file.name} into {org}"
    if report.dry_run:
        title += " (dry run: nothing was written)"
    out.print(escape(title), style="bold")
    summary = Table(show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("rows read", f"{report.rows:,}")
    summary.add_row("inserted", f"{report.inserted:,}")
    summary.add_row("updated", f"{report.updated:,}")
    summary.add_row("rejected", f"{report.rejected:,}", style="red" if report.errors else None)
    summary.add_row("time", f"{seconds:.1f} s ({rate:,.0f} rows/s)")
    out.print(summary)
    if report.ignored_columns:
        out.print("ignored columns: " + escape(", ".join(report.ignored_columns)))
    if report.errors:
        errors = report.sorted_errors()
        out.print(f"rejected rows (first {min(len(errors), SHOWN_ERRORS)}):", style="bold")
        table = Table()
        table.add_column("row", justify="right")
        table.add_column("reason", overflow="fold")
        for error in errors[:SHOWN_ERRORS]:
            where = (
                str(error.row) if error.row == error.line else f"{error.row} (line {error.line})"
            )
            table.add_row(where, escape(error.reason))
        out.print(table)
        if len(errors) > SHOWN_ERRORS:
            more = len(errors) - SHOWN_ERRORS
            out.print(f"... and {more:,} more: use --errors-csv PATH to get them all")
    if report.fatal is not None:
        err.print(f"[red]error:[/red] {escape(report.fatal)}")


def write_errors_csv(report: ImportReport, handle: IO[str]) -> None:
    """Write every rejected row: its row, line and reason, then its cells as in the file.

    A cell a spreadsheet would run as a formula (`=HYPERLINK(...)`) is written with a
    single quote in front, so opening the file runs nothing; importing it takes the
    quote off again.
    """
    writer = csv.writer(handle)
    writer.writerow(["row", "line", "reason", *map(neutralise_formula, report.header)])
    for error in report.sorted_errors():
        writer.writerow(
            [
                error.row,
                error.line,
                neutralise_formula(error.reason),
                *map(neutralise_formula, error.cells),
            ]
        )


def _open_errors_csv(path: Path) -> IO[str]:
    # With a BOM, because Excel reads UTF-8 files without one as ANSI.
    try:
        return path.open("w", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise _fatal(f"cannot write {path}: {exc.strerror or exc}") from None


def _fatal(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(EXIT_FATAL)
