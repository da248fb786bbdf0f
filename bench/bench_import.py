"""CSV import of 100,000 contacts on PostgreSQL, through the `salesbot import` command.

Target (docs/design.md): under 30 s. The database `salesbot_bench_import` is created on
first use and reused; the benchmark's organization is emptied at the start, so the
first contact import inserts every row and the second one updates every row.

Then 100,000 orders are imported, after 1 % of the contacts were given a reply in their
engagement history: the import records an `order_after_reply` for each order that follows
one of them within 30 days (storage/engagement.py), and the figure includes that work.
Each import runs as `salesbot import ...` in a subprocess, exactly as a user runs
it, so the figures include starting the interpreter.
"""

from __future__ import annotations

import csv
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import delete, func, insert, select, update

from storage import models as m
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DATABASE = "salesbot_bench_import"
ORG_SLUG = "bench-import"
CONTACTS = 100_000
CLIENTS = 5_000
ORDERS = 100_000
# Every REPLIER-th contact replied on REPLIED_ON; orders run over ORDER_DAYS from ORDERS_FROM.
REPLIER = 100
REPLIED_ON = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ORDERS_FROM = datetime(2026, 1, 1, tzinfo=UTC)
ORDER_DAYS = 300
TARGET_SECONDS = 30.0

_FIRST = "Dana Marcus Kelly Tom Renee Javier Priya Alan Megan Luis Sarah Bill Angela Cody".split()
_LAST = "Whitfield Reyes Brennan Okafor Lindqvist Castillo Shah Pierce Ford Navarro".split()
_ROLES = [
    ("LO", "loan_origination", "Loan Officer"),
    ("LP", "processing", "Loan Processor"),
    ("UW", "underwriting", "Underwriter"),
    ("VM", "vendor_management", "Vendor Manager"),
    ("BM", "leadership", "Branch Manager"),
]
_STATES = "TX OK NM LA AR CO AZ FL GA NC".split()
_TAGS = ["purchase", "refinance", "va", "fha", "decision-maker", "top-producer", ""]


def database_url() -> str:
    """Create the benchmark database if needed; return its URL, migrated to head."""
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if found is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE}"
    upgrade(url)
    return url


def reset_org(url: str) -> None:
    """Empty the benchmark organization (or create it)."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            session.execute(delete(m.Organization).where(m.Organization.slug == ORG_SLUG))
            session.add(m.Organization(slug=ORG_SLUG, name="Import benchmark"))
            session.commit()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE clients")
            conn.exec_driver_sql("VACUUM ANALYZE contacts")
    finally:
        engine.dispose()


def write_files(folder: Path) -> tuple[Path, Path]:
    """Write a clients file and a contacts file that references its clients."""
    rng = random.Random(20261125)
    clients = folder / "clients.csv"
    domains = [f"lender{n:05d}.example.com" for n in range(CLIENTS)]
    with clients.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Company Name", "Company Domain", "Type", "Tags"])
        for n, domain in enumerate(domains):
            kind = "amc" if n % 7 == 0 else "lender"
            writer.writerow([f"Lender {n:05d} Mortgage", domain, kind, "texas;bench"])
    contacts = folder / "contacts.csv"
    with contacts.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "Email Address",
                "First Name",
                "Last Name",
                "Job Title",
                "Phone Number",
                "Role Code",
                "Role Category",
                "State",
                "Tags",
                "Lead Score",
                "Time Zone",
                "Company Domain",
                "Opted Out",
            ]
        )
        for n in range(CONTACTS):
            domain = domains[n % CLIENTS]
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            code, category, title = rng.choice(_ROLES)
            writer.writerow(
                [
                    f"{first}.{last}.{n}@{domain}".lower(),
                    first,
                    last,
                    title,
                    f"512-555-{n % 10000:04d}",
                    code,
                    category,
                    rng.choice(_STATES),
                    ";".join(sorted({rng.choice(_TAGS), rng.choice(_TAGS)} - {""})),
                    rng.randint(0, 100),
                    "America/Chicago",
                    domain,
                    "2026-06-01" if n % 97 == 0 else "",
                ]
            )
    return clients, contacts


def write_orders(folder: Path) -> Path:
    """Write an orders file over the clients and contacts of `write_files`."""
    rng = random.Random(20261203)
    orders = folder / "orders.csv"
    with orders.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_number", "client_domain", "status", "ordered_date", "fee"])
        for n in range(ORDERS):
            day = ORDERS_FROM + timedelta(days=rng.randrange(ORDER_DAYS))
            writer.writerow(
                [
                    f"B-{n:06d}",
                    f"lender{rng.randrange(CLIENTS):05d}.example.com",
                    "completed",
                    day.date().isoformat(),
                    f"${rng.randint(450, 900)}.00",
                ]
            )
    return orders


def seed_replies(url: str) -> int:
    """Give every REPLIER-th contact of the benchmark a reply; return how many."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            org_id = session.scalar(
                select(m.Organization.id).where(m.Organization.slug == ORG_SLUG)
            )
            ids = session.scalars(
                select(m.Contact.id).where(m.Contact.org_id == org_id).order_by(m.Contact.id)
            ).all()[::REPLIER]
            session.execute(
                insert(m.ContactEngagementEvent),
                [
                    {
                        "org_id": org_id,
                        "contact_id": contact_id,
                        "event": "positive_reply",
                        "occurred_at": REPLIED_ON,
                        "sentiment": "positive",
                        "score_delta": 25.0,
                        "score_after": 25.0,
                        "detail": {},
                    }
                    for contact_id in ids
                ],
            )
            session.execute(
                update(m.Contact)
                .where(m.Contact.id.in_(ids))
                .values(last_replied_at=REPLIED_ON, engagement_score=25.0),
                execution_options={"synchronize_session": False},
            )
            session.commit()
            return len(ids)
    finally:
        engine.dispose()


def count_orders_after_replies(url: str) -> int:
    """Return how many order_after_reply events the benchmark organization has."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return (
                session.scalar(
                    select(func.count(m.ContactEngagementEvent.id))
                    .join(m.Organization, m.Organization.id == m.ContactEngagementEvent.org_id)
                    .where(
                        m.Organization.slug == ORG_SLUG,
                        m.ContactEngagementEvent.event == "order_after_reply",
                    )
                )
                or 0
            )
    finally:
        engine.dispose()


def run_cli(url: str, kind: str, path: Path) -> tuple[float, float]:
    """Run `salesbot import KIND PATH`; return its wall-clock and CPU seconds."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SALESBOT_SECRET_KEY": os.environ.get("SALESBOT_SECRET_KEY") or secrets.token_urlsafe(48),
    }
    script = Path(sys.executable).with_name("salesbot")
    fallback = [sys.executable, "-c", "from bot.cli import main; main()"]
    command = [str(script)] if script.exists() else fallback
    command += ["import", kind, str(path), "--org", ORG_SLUG]
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"salesbot import {kind} exited {done.returncode}:\n{done.stdout}")
    return seconds, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_contacts(url: str) -> int:
    """Return how many contacts the benchmark organization has."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return (
                session.scalar(
                    select(func.count(m.Contact.id))
                    .join(m.Organization, m.Organization.id == m.Contact.org_id)
                    .where(m.Organization.slug == ORG_SLUG)
                )
                or 0
            )
    finally:
        engine.dispose()


def main() -> None:
    """Import 5,000 clients and 100,000 contacts, the contacts again, then 100,000 orders;
    print the figures."""
    url = database_url()
    reset_org(url)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        clients, contacts = write_files(Path(tmp))
        size_mb = contacts.stat().st_size / 1e6
        print(f"files: {CLIENTS:,} clients, {CONTACTS:,} contacts ({size_mb:.1f} MB)")
        seconds, _ = run_cli(url, "clients", clients)
        print(f"import {CLIENTS:,} clients: {seconds:.1f} s")
        load = os.getloadavg()[0]
        first, first_cpu = run_cli(url, "contacts", contacts)
        stored = count_contacts(url)
        if stored != CONTACTS:
            raise RuntimeError(f"expected {CONTACTS:,} contacts stored, found {stored:,}")
        again, again_cpu = run_cli(url, "contacts", contacts)
        if count_contacts(url) != CONTACTS:
            raise RuntimeError("the re-import changed the number of contacts")
        repliers = seed_replies(url)
        orders = write_orders(Path(tmp))
        ordered, ordered_cpu = run_cli(url, "orders", orders)
        followed = count_orders_after_replies(url)
    verdict = "PASS" if first < TARGET_SECONDS else "FAIL"
    print(
        f"CSV import of {CONTACTS:,} contacts on PostgreSQL (all inserts): {first:.1f} s, "
        f"{CONTACTS / first:,.0f} rows/s (target < {TARGET_SECONDS:.0f} s: {verdict}); "
        f"the import process used {first_cpu:.1f} s of CPU"
    )
    print(
        f"re-import of the same file (all matched, none changed): {again:.1f} s, "
        f"{CONTACTS / again:,.0f} rows/s; {again_cpu:.1f} s of CPU"
    )
    print(
        f"import of {ORDERS:,} orders ({repliers:,} contacts with a reply): {ordered:.1f} s, "
        f"{ORDERS / ordered:,.0f} rows/s; {ordered_cpu:.1f} s of CPU; "
        f"{followed:,} orders after a reply recorded"
    )
    print(
        "(each run is `salesbot import KIND FILE --org bench-import`, interpreter start "
        f"included; load average when the first run began: {load:.1f} on {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
