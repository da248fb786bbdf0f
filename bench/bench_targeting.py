"""Lead scores and the stale-client ranking of one organization on PostgreSQL: 200,000
contacts, 50,000 clients, 1,000,000 orders (and 150,000 engagement events).

The data is generated with generate_series in a database made for the run
(`salesbot_bench_targeting`) and dropped at the end. Printed: the daily run
(`Targeting.recompute`: every contact scored, then the ranking) cold and warm, its two
phases apart, the rescoring an engagement event adds to its transaction, the end-of-import
rescoring of 1,000 clients' contacts, and a `stale_top` audience of the top 1,000 clients.

`BENCH_TARGETING_SCALE=0.05 python -m bench targeting` runs a twentieth of the size.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
from sqlalchemy import Engine, text

from domain.clock import SystemClock
from domain.deps import Deps
from domain.engagement import EngagementEvent, record_engagement
from domain.jobs import TargetSelection
from domain.lead_scoring import changed_scores, rescore_contacts
from domain.targeting import Targeting, rank_stale_clients
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.uow import UnitOfWork

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "salesbot_bench_targeting"
SCALE = float(os.environ.get("BENCH_TARGETING_SCALE", "1"))
CONTACTS = int(200_000 * SCALE)
CLIENTS = int(50_000 * SCALE)
ORDERS = int(1_000_000 * SCALE)
EVENT_RUNS = 50


def seed_sql() -> str:
    """The organization's data: client sizes skewed (a few busy lenders, many small ones),
    orders over four years, every fourth contact engaged (three scored events)."""
    return f"""
INSERT INTO organizations (slug, name) VALUES ('bench', 'Bench Appraisals'), ('other', 'Other');
INSERT INTO clients (org_id, name, domain, tags)
SELECT 1, 'Lender ' || g, 'lender' || g || '.example.com', '[]'::jsonb
FROM generate_series(1, {CLIENTS}) g;
INSERT INTO contacts (org_id, client_id, email, first_name, last_name, role_code, role_category,
                      state, tags, opted_out_at, email_status, paused_until, engagement_score,
                      engagement_trend, last_replied_at, last_positive_interaction_at)
SELECT 1, 1 + (g % {CLIENTS}), 'contact' || g || '@lender' || (1 + g % {CLIENTS}) || '.example.com',
       'First' || g, 'Last' || g,
       (ARRAY['LO','PROC','UW','VM','BM','AE','CLOSER','OPS'])[1 + g % 8],
       (ARRAY['loan_origination','processing','underwriting','vendor_management',
              'leadership','loan_origination','operations','operations'])[1 + g % 8],
       (ARRAY['TX','CA','FL','NY','GA','IL','WA','CO','AZ','NC'])[1 + g % 10],
       '[]'::jsonb,
       CASE WHEN g % 50 = 0 THEN now() END,
       CASE WHEN g % 97 = 0 THEN 'bounced' ELSE 'valid' END,
       CASE WHEN g % 113 = 0 THEN now() + interval '30 days' END,
       CASE WHEN g % 4 = 0 THEN 5 + g % 60 ELSE 0 END,
       CASE WHEN g % 4 = 0 THEN 'falling' ELSE 'unknown' END,
       CASE WHEN g % 4 = 0 THEN now() - (30 + g % 60) * interval '1 day' END,
       CASE WHEN g % 8 = 0 THEN now() - (30 + g % 60) * interval '1 day' END
FROM generate_series(1, {CONTACTS}) g;
INSERT INTO appraisal_orders (org_id, order_number, client_id, status, ordered_at, fee)
SELECT 1, 'ORD-' || g,
       1 + floor({CLIENTS} * power(((g::bigint * 104729) % 1000003) / 1000003.0, 2))::bigint,
       'completed', now() - ((g::bigint * 7907) % 1460) * interval '1 day', 450
FROM generate_series(1, {ORDERS}) g;
UPDATE clients c SET last_ordered_at = o.last_at
FROM (SELECT client_id, max(ordered_at) AS last_at FROM appraisal_orders GROUP BY client_id) o
WHERE o.client_id = c.id;
INSERT INTO contact_engagement_history (org_id, contact_id, event, occurred_at, score_delta,
                                        score_after, detail)
SELECT 1, c, (ARRAY['sent', 'positive_reply', 'replied'])[k],
       now() - ((4 - k) * 45 + c % 60) * interval '1 day',
       (ARRAY[0, 25, 10])[k], (ARRAY[5, 30 + c % 40, 5 + c % 60])[k], '{{}}'::jsonb
FROM generate_series(4, {CONTACTS}, 4) c, generate_series(1, 3) k;
"""


def _database_url() -> str:
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{DB_NAME}"


def _admin(statement: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def _seed(engine: Engine) -> None:
    print(
        f"generating {CONTACTS:,} contacts, {CLIENTS:,} clients, {ORDERS:,} orders, "
        f"{3 * (CONTACTS // 4):,} engagement events ...",
        flush=True,
    )
    started = time.perf_counter()
    raw_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(raw_url) as conn:
        conn.execute(seed_sql().encode())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)


def _timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return (time.perf_counter() - started) * 1000, result


def _median(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.1f} ms (min {min(samples):.1f}, max {max(samples):.1f})"


def main() -> None:
    """Print how long the daily run and the event-time rescoring take."""
    _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{DB_NAME}"')
    engine = make_engine(_database_url())
    try:
        upgrade(_database_url())
        _seed(engine)
        _run(engine)
    finally:
        engine.dispose()
        _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        print(f"dropped {DB_NAME}")


def _run(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    clock = SystemClock()
    service = Targeting(Deps(uow=lambda: UnitOfWork(sessions), clock=clock))

    cold_ms, run = _timed(lambda: service.recompute(1))
    warm_ms, _ = _timed(lambda: service.recompute(1))
    print(
        f"daily run (every contact scored, then the ranking): first {cold_ms / 1000:.2f} s "
        f"(every score written), again {warm_ms / 1000:.2f} s (only the scores that changed)"
    )
    print(
        f"  {run.contacts_scored:,} contacts scored; {run.clients_considered:,} stale clients "  # type: ignore[attr-defined]
        f"considered, {run.clients_ranked:,} ranked; busiest client "  # type: ignore[attr-defined]
        f"{run.busiest_client_orders:,} orders in the year"  # type: ignore[attr-defined]
    )

    # The two phases apart, every score written again (as on the first run): the run's
    # loop and its ranking, step by step.
    with engine.begin() as conn:
        conn.execute(text("UPDATE contacts SET lead_score_at = NULL WHERE org_id = 1"))
    now = clock.now()
    written_rows = 0
    with UnitOfWork(sessions) as uow:
        repo = uow.targeting
        context = repo.lead_context(1)
        since = now - timedelta(days=context.settings.volume_window_days)
        started = time.perf_counter()
        counts = repo.client_order_counts(1, since=since, until=now)
        busiest = max(counts.values(), default=0)
        counted = time.perf_counter()
        after, read_s, write_s = 0, 0.0, 0.0
        while True:
            page_started = time.perf_counter()
            facts = repo.lead_facts_page(
                1, after_id=after, limit=5000, counts=counts, busiest=busiest
            )
            read_s += time.perf_counter() - page_started
            if not facts:
                break
            write_started = time.perf_counter()
            changed = changed_scores(facts, context.settings, now)
            repo.save_lead_scores(1, changed, at=now)
            uow.commit()
            written_rows += len(changed)
            write_s += time.perf_counter() - write_started
            after = facts[-1].contact_id
        scored = time.perf_counter()
        settings = repo.targeting_settings(1)
        clients = repo.stale_clients(
            1,
            stale_before=now - settings.stale_after,
            now=now,
            peak_since=now - timedelta(days=settings.decay_window_days),
        )
        read = time.perf_counter()
        ranking = rank_stale_clients(clients, settings, now)
        ranked = time.perf_counter()
        repo.replace_ranking(1, ranking.ranked, run=run)  # type: ignore[arg-type]
        uow.commit()
        written = time.perf_counter()
    print(
        f"  lead scores: {scored - started:.2f} s (order counts {counted - started:.2f} s, "
        f"facts read {read_s:.2f} s, scoring and writing {written_rows:,} rows {write_s:.2f} s)"
    )
    print(
        f"  ranking: {written - scored:.2f} s (stale clients' facts {read - scored:.2f} s, "
        f"ranking {ranked - read:.2f} s, replaced {written - ranked:.2f} s)"
    )

    # What an engagement event adds to its transaction: its contact scored again.
    rng = random.Random(14)
    contacts = rng.sample(range(1, CONTACTS + 1), EVENT_RUNS * 2)
    rescore: list[float] = []
    for contact_id in contacts[:EVENT_RUNS]:
        with UnitOfWork(sessions) as uow:
            ms, _ = _timed(
                lambda c=contact_id, u=uow: rescore_contacts(
                    u.targeting, 1, at=clock.now(), contact_ids=[c]
                )
            )
            uow.commit()
        rescore.append(ms)
    recorded: list[float] = []
    for contact_id in contacts[EVENT_RUNS:]:
        with UnitOfWork(sessions) as uow:
            ms, _ = _timed(
                lambda c=contact_id, u=uow: record_engagement(
                    u.engagement,
                    org_id=1,
                    contact_id=c,
                    event=EngagementEvent.POSITIVE_REPLY,
                    occurred_at=clock.now(),
                )
            )
            uow.commit()
        recorded.append(ms)
    print(f"an event's rescoring of its contact ({EVENT_RUNS} runs): {_median(rescore)}")
    print(
        f"recording a positive reply, rescoring included ({EVENT_RUNS} runs): {_median(recorded)}"
    )

    # The end of an order import: the contacts of 1,000 touched clients.
    clients_touched = rng.sample(range(1, CLIENTS + 1), min(1000, CLIENTS))
    with UnitOfWork(sessions) as uow:
        ms, count = _timed(
            lambda: rescore_contacts(uow.targeting, 1, at=clock.now(), client_ids=clients_touched)
        )
        uow.commit()
    print(
        f"end-of-import rescoring of {len(clients_touched):,} clients' {count:,} contacts: {ms:.0f} ms"
    )

    # A launch's audience: the reachable contacts of the top 1,000 stale clients.
    top = TargetSelection(stale_top=1000)
    with UnitOfWork(sessions) as uow:
        ms, count = _timed(lambda: uow.audience.target_count(1, top, now=clock.now()))
    print(f"`--stale-top 1000` audience: {count:,} contacts in {ms:.0f} ms")
