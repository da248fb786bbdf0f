"""calculate-size on 1,000,000 contacts / 50,000 clients / 2,000,000 orders (PostgreSQL).

Target (issue: foundation): median under 300 ms for a stale-client + tags + role query.
The data is generated once with generate_series and kept in the database
`salesbot_bench_audience`; later runs reuse it.
"""

from __future__ import annotations

import os
import statistics
import time

import psycopg
from sqlalchemy import Engine, func, select, text

from domain.audience import AudienceCriteria
from domain.catalog import Catalog
from domain.clock import SystemClock
from domain.deps import Deps
from storage.audience import AudienceRepo
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.uow import UnitOfWork

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "salesbot_bench_audience"
CONTACTS, CLIENTS, ORDERS = 1_000_000, 50_000, 2_000_000
RUNS = 15

CRITERIA = AudienceCriteria(
    target_role_codes=["LO", "PROC"],
    include_tags=["lender", "credit-union"],
    exclude_tags=["do-not-call"],
    stale_client_days=120,
)

SEED_SQL = f"""
INSERT INTO organizations (slug, name) VALUES ('bench', 'Bench Appraisals'), ('other', 'Other');
INSERT INTO clients (org_id, name, domain, tags)
SELECT 1, 'Lender ' || g, 'lender' || g || '.example.com',
       CASE WHEN g % 3 = 0 THEN '["amc"]'::jsonb ELSE '["lender"]'::jsonb END
FROM generate_series(1, {CLIENTS}) g;
INSERT INTO contacts (org_id, client_id, email, first_name, last_name, role_code, role_category,
                      state, tags, lead_score, opted_out_at, email_status, last_contacted_at)
SELECT 1, 1 + (g % {CLIENTS}), 'contact' || g || '@lender' || (1 + g % {CLIENTS}) || '.example.com',
       'First' || g, 'Last' || g,
       (ARRAY['LO','PROC','UW','VM','BM','AE','CLOSER','OPS'])[1 + g % 8],
       (ARRAY['loan_origination','processing','underwriting','vendor_management',
              'leadership','loan_origination','operations','operations'])[1 + g % 8],
       (ARRAY['TX','CA','FL','NY','GA','IL','WA','CO','AZ','NC'])[1 + g % 10],
       (ARRAY['["lender"]','["amc"]','["credit-union","texas"]','["broker"]',
              '["lender","do-not-call"]','["vip","lender"]','[]'])[1 + (g / 7) % 7]::jsonb,
       g % 101,
       CASE WHEN g % 50 = 0 THEN now() END,
       CASE WHEN g % 97 = 0 THEN 'bounced' ELSE 'valid' END,
       CASE WHEN g % 4 = 0 THEN now() - (g % 365) * interval '1 day' END
FROM generate_series(1, {CONTACTS}) g;
INSERT INTO appraisal_orders (org_id, order_number, client_id, status, ordered_at, fee)
SELECT 1, 'ORD-' || g, 1 + (g::bigint * 7919) % {CLIENTS}, 'completed',
       now() - ((g::bigint * 104729) % 1000) * interval '1 day', 450
FROM generate_series(1, {ORDERS}) g;
UPDATE clients c SET last_ordered_at = o.last_at
FROM (SELECT client_id, max(ordered_at) AS last_at FROM appraisal_orders GROUP BY client_id) o
WHERE o.client_id = c.id;
"""


def _database_url() -> str:
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{DB_NAME}"


def _ensure_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def _seed(engine: Engine) -> None:
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM contacts")).scalar_one()
        orders = conn.execute(text("SELECT count(*) FROM appraisal_orders")).scalar_one()
    if count == CONTACTS and orders == ORDERS:
        print(f"reusing {count:,} contacts and {orders:,} orders in {DB_NAME}")
        return
    print(
        f"generating {CONTACTS:,} contacts, {CLIENTS:,} clients, {ORDERS:,} orders ...", flush=True
    )
    started = time.perf_counter()
    raw_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(raw_url) as conn:
        conn.execute("TRUNCATE organizations RESTART IDENTITY CASCADE")
        conn.execute(SEED_SQL.encode())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"generated in {time.perf_counter() - started:.1f} s")


def main() -> None:
    """Print the median latency of calculate-size and the plan's index use."""
    _ensure_database()
    url = _database_url()
    upgrade(url)
    engine = make_engine(url)
    _seed(engine)
    uow_factory = make_session_factory(engine)
    clock = SystemClock()
    catalog = Catalog(Deps(uow=lambda: UnitOfWork(uow_factory), clock=clock))
    timings: list[float] = []
    size = None
    for _ in range(RUNS):
        started = time.perf_counter()
        size = catalog.calculate_audience_size(1, CRITERIA)
        timings.append((time.perf_counter() - started) * 1000)
    assert size is not None
    print(f"criteria: {CRITERIA.model_dump(exclude_defaults=True)}")
    print(f"audience: {size.count:,} contacts; sample of {len(size.sample)}")
    print(
        f"calculate-size over {RUNS} runs: median {statistics.median(timings):.1f} ms, "
        f"min {min(timings):.1f} ms, max {max(timings):.1f} ms (target: median < 300 ms)"
    )
    with uow_factory() as session:
        repo = AudienceRepo(session)
        where = repo.conditions(1, CRITERIA, now=clock.now())
        from storage import models as m

        joined = m.Contact.__table__.outerjoin(
            m.Client.__table__, m.Client.id == m.Contact.client_id
        )
        stmt = select(func.count()).select_from(joined).where(*where)
        compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
        plan = session.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}")).scalars().all()
    print("EXPLAIN ANALYZE of the count query:")
    for line in plan:
        print(f"  {line}")
    used = sorted({w for line in plan for w in line.split() if w.startswith(("ix_", "pk_", "uq_"))})
    print(f"indexes used: {', '.join(used) if used else 'none (sequential scans)'}")
    engine.dispose()
