"""The cadence tick on PostgreSQL: 10,000 due among 1,000,000 enrollments (issue 13).

`python -m bench cadence_tick` (part of `make bench`), or `.venv/bin/python
bench/cadence_tick.py`. Targets (docs: DESIGN.md, Figures): a tick that runs 10,000 due
steps in < 5 s; a tick with nothing due in < 50 ms; the same tick about as fast on a
table of 100,000 enrollments as on one of 1,000,000.

The data: 4 organizations (their own cadence settings: zones, a state's holidays, a wider
window, another fatigue limit), 5 jobs each with the 4-step email cadence [0, 4, 10, 21]
started 150, 90, 40, 20 and 8 days before the tick (the two oldest finished), contacts
with states, some with their own time zone (a few not a real one), opted out, bounced,
complained, replied, away until a date; clients with three years of orders (one in ten
ordered lately); every step that ran has its email in `email_sends` and its task in
`job_tasks`, so the fatigue counts, the deliverability guard and the batch numbers read
real history. Enrollments are completed, stopped (replied, new order, opted out,
bounced), paused, waiting for a rep's review, or due later; then 10,000 of them, one per
contact, whose contacts nothing stops, are made due in the last two hours, inside their
send window. Sizes scale with BENCH_CADENCE_ENROLLMENTS (the small table is a tenth of
it); BENCH_CADENCE_DUE sets the due count. Quick run: `BENCH_CADENCE_ENROLLMENTS=200000
BENCH_CADENCE_DUE=2000`.

Each size is generated once with generate_series into its own database
(`salesbot_bench_cadence_<rows>`, migrated with Alembic) and reused; a run puts the due
enrollments, the jobs and the tables the tick writes back as generated before measuring.

Measured, with the tick as `salesbot worker` runs it (`Cadences.tick` with the default
settings: CADENCE_TICK_CHUNK, FOR UPDATE SKIP LOCKED) at a fixed instant, Tuesday
2026-12-08 18:00 UTC:
(a) the tick that runs the 10,000 due steps (median of BENCH_CADENCE_REPEATS runs, 3),
    with the SQL time per statement;
(b) the task worker drafting the 10,000 tasks into cards from the templates (Slack off);
(c) ticks with nothing due (median of several, right after the big one);
(d) the tick of (a) on the small table, and the ratio;
and EXPLAIN (ANALYZE, BUFFERS) of the claim query.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from bot.app import Runtime, build_runtime, build_services
from bot.settings import Settings
from domain.audience import AudienceCriteria
from domain.clock import FixedClock
from domain.jobs import Cadence, JobParams, StepTemplate, TargetSelection
from domain.outreach import TickReport
from storage.cadence import CadenceRepo
from storage.migrate import upgrade

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = int(os.environ.get("BENCH_CADENCE_ENROLLMENTS", "1000000"))
DUE = int(os.environ.get("BENCH_CADENCE_DUE", "10000"))
SMALL_ROWS = ROWS // 10
ZERO_DUE_RUNS = 15
# The 10,000-due tick is run this many times on each table (restored in between) and its
# median reported: the machine is shared, one run can land on a busy second.
REPEATS = int(os.environ.get("BENCH_CADENCE_REPEATS", "3"))
SEED_VERSION = 4

NOW = datetime(2026, 12, 8, 18, 0, tzinfo=UTC)  # a Tuesday, inside the window coast to coast
ORGS = 4
JOBS_PER_ORG = 5
JOB_AGES_DAYS = (150, 90, 40, 20, 8)  # the first two finished, the others running
CADENCE_DAYS = (0, 4, 10, 21)
# The states and zones a due contact may have (inside the window at NOW); others exist.
CONTINENTAL = ("TX", "CA", "FL", "NY", "GA", "IL", "WA", "CO", "AZ", "NC", "OH", "PA", "MI")
STATES = (*CONTINENTAL, "HI", "AK")
ZONES = (
    "America/Chicago",
    "America/New_York",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Not/AZone",
)
DUE_ZONES = (*ZONES[:4], "Not/AZone")  # an unknown zone falls back to the state's

# Each organization's cadence settings: defaults; its own zone and a state's holidays; a
# wider window; another fatigue limit.
ORG_SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Lone Star Appraisals", {}),
    ("Empire Valuations", {"timezone": "America/New_York", "holiday_subdivision": "TX"}),
    ("Pacific Appraisal Group", {"window_start": "08:00:00", "window_end": "18:00:00"}),
    ("Rocky Mountain Review", {"max_emails_per_contact_week": 4}),
)
TARGETS = "targets: 10k due < 5 s; 0 due < 50 ms; flat from 100k to 1M"


def _command() -> str:
    sizes = []
    if "BENCH_CADENCE_ENROLLMENTS" in os.environ:
        sizes.append(f"BENCH_CADENCE_ENROLLMENTS={ROWS}")
    if "BENCH_CADENCE_DUE" in os.environ:
        sizes.append(f"BENCH_CADENCE_DUE={DUE}")
    return " ".join([*sizes, ".venv/bin/python bench/cadence_tick.py"])


def _ts(at: datetime) -> str:
    return f"timestamptz '{at.isoformat()}'"


# --- the data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """The sizes of one generated database."""

    rows: int
    due: int

    @property
    def per_job(self) -> int:
        return self.rows // (ORGS * JOBS_PER_ORG)

    @property
    def contacts_per_org(self) -> int:
        return max(self.per_job, self.rows * 2 // (5 * ORGS))

    @property
    def clients_per_org(self) -> int:
        return max(1, self.contacts_per_org // 8)

    @property
    def orders(self) -> int:
        return self.rows

    @property
    def database(self) -> str:
        return f"salesbot_bench_cadence_{self.rows}"


def _job_params() -> dict[str, Any]:
    params = JobParams(
        target=TargetSelection(
            filters=AudienceCriteria(target_role_codes=["LO", "PROC"], stale_client_days=120)
        ),
        templates=[
            StepTemplate(
                subject="Turn times in {{ state }} are down, {{ first_name }}",
                body="Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days since "
                "{{ company_name }} last ordered. Our turn times are down to 5 days.\n\n"
                "{{ rep_name }}\n\nUnsubscribe: {{ unsubscribe_url }}",
            ),
            StepTemplate(
                subject="Re: turn times, {{ first_name }}",
                body="Hi {{ first_name }}, following up: {{ orders_last_year }} orders from "
                "{{ company_name }} last year. A call this week?\n\n{{ rep_name }}",
            ),
            StepTemplate(
                subject="{{ company_name }} and {{ firm_name }}",
                body="{{ first_name }}, our panel in {{ state }} has grown. Step {{ step_number }}"
                ".\n\n{{ rep_name }}",
            ),
            StepTemplate(
                subject="Last note, {{ first_name }}",
                body="Hi {{ first_name }}, I'll stop here. Reply any time.\n\n{{ rep_name }}",
            ),
        ],
        cadence=Cadence(days=list(CADENCE_DAYS)),
    )
    return params.model_dump(mode="json")


def _seed_sql(shape: Shape) -> list[str]:
    """The statements that generate one database (after the jobs are inserted)."""
    now = _ts(NOW)
    co, cl, per_job = shape.contacts_per_org, shape.clients_per_org, shape.per_job
    clients, contacts = ORGS * cl, ORGS * co
    states = "(ARRAY[" + ",".join(f"'{s}'" for s in STATES) + "])"
    zones = "(ARRAY[" + ",".join(f"'{z}'" for z in ZONES) + "])"
    ages = "(ARRAY[" + ",".join(str(a) for a in JOB_AGES_DAYS) + "])"
    days = "(ARRAY[" + ",".join(str(d) for d in CADENCE_DAYS) + "])"
    gaps = "(ARRAY[0,4,6,11])"
    continental = ",".join(f"'{s}'" for s in CONTINENTAL)
    due_zones = ",".join(f"'{z}'" for z in DUE_ZONES)
    # A step's time: its day after enrollment, plus up to 8 hours' jitter.
    return [
        f"""
        INSERT INTO clients (org_id, name, domain, tags)
        SELECT 1 + (g - 1) / {cl}, 'Lender ' || g, 'lender' || g || '.example', '["lender"]'
        FROM generate_series(1, {clients}) g
        """,
        # Three years of orders; clients whose id ends in 0 also ordered lately.
        f"""
        INSERT INTO appraisal_orders
            (org_id, order_number, client_id, status, ordered_at, fee, property_address)
        SELECT 1 + (c - 1) / {cl}, 'ORD-' || g, c, 'completed',
               {now} - CASE WHEN c % 10 = 0 THEN 1 + (g::bigint * 7919) % 1095
                            ELSE 200 + (g::bigint * 7919) % 895 END * interval '1 day',
               450, g || ' Main St'
        FROM generate_series(1, {shape.orders}) g,
             LATERAL (SELECT 1 + (g - 1) % {clients} AS c) x
        """,
        """
        UPDATE clients c SET last_ordered_at = o.last_at
        FROM (SELECT client_id, max(ordered_at) AS last_at FROM appraisal_orders
              GROUP BY client_id) o
        WHERE o.client_id = c.id
        """,
        f"""
        INSERT INTO contacts (org_id, client_id, email, first_name, last_name, role_code,
                              state, timezone, tags, lead_score, opted_out_at, email_status,
                              last_replied_at, paused_until, pause_reason, last_contacted_at)
        SELECT a.org, a.cl, 'lo' || g || '@lender' || a.cl || '.example',
               (ARRAY['Dana','Ray','Priya','Tom','Keisha','Luis','Ann','Wei','Sam'])[1 + g % 9],
               'Whitfield' || g, (ARRAY['LO','PROC','UW','VM'])[1 + g % 4],
               {states}[1 + (g / 3) % {len(STATES)}],
               CASE WHEN g % 5 = 0 THEN {zones}[1 + (g / 5) % {len(ZONES)}] END,
               '["lender"]', g % 101,
               CASE WHEN g % 50 = 3 THEN {now} - (g % 300) * interval '1 day' END,
               CASE WHEN g % 97 = 5 THEN 'bounced' WHEN g % 997 = 11 THEN 'complained'
                    ELSE 'valid' END,
               CASE WHEN g % 20 = 1 THEN {now} - (g % 200) * interval '1 day' END,
               CASE WHEN g % 300 = 7 THEN {now} + (1 + g % 9) * interval '1 day' END,
               CASE WHEN g % 300 = 7 THEN 'out of office' END,
               {now} - (g % 30) * interval '1 day'
        FROM generate_series(1, {contacts}) g,
             LATERAL (SELECT 1 + (g - 1) / {co} AS org,
                             ((g - 1) / {co}) * {cl} + 1 + ((g - 1) % {co}) % {cl} AS cl) a
        """,
        # Enrollment k of job j (of its org) is the org's contact (k + j * co / 4) mod co.
        # r (0..999) spreads the states: finished jobs are completed or stopped; running
        # ones also have paused contacts, steps waiting for a rep's review (no due time)
        # and steps due later (at least an hour after NOW).
        f"""
        INSERT INTO enrollments (org_id, job_id, contact_id, step, status, next_due_at,
                                 paused_until, stop_reason, last_step_at, created_at,
                                 updated_at)
        SELECT b.org, b.job, (b.org - 1) * {co} + 1 + (a.k + b.j * ({co} / 4)) % {co},
               s.step, v.status,
               CASE WHEN v.status = 'active' AND NOT s.waiting THEN
                    GREATEST(t.last_at + {gaps}[s.step + 1] * interval '1 day',
                             {now} + interval '1 hour' + (a.k % 86400) * interval '1 second')
               END,
               CASE WHEN v.status = 'paused' THEN {now} + (1 + a.k % 9) * interval '1 day' END,
               CASE WHEN v.status = 'paused' THEN 'out of office'
                    WHEN v.status = 'stopped' THEN
                      CASE WHEN (a.k * 31) % 1000 < 8 THEN 'opted out'
                           WHEN (a.k * 31) % 1000 < 23 THEN 'bounced'
                           WHEN (a.k * 31) % 1000 < 100 THEN 're-engaged: new order'
                           ELSE 'replied' END
               END,
               t.last_at, c.started, COALESCE(t.last_at, c.started)
        FROM generate_series(0, {ORGS * JOBS_PER_ORG * per_job - 1}) e,
             LATERAL (SELECT e / {per_job} AS ji, e % {per_job} AS k) a,
             LATERAL (SELECT 1 + a.ji / {JOBS_PER_ORG} AS org, a.ji % {JOBS_PER_ORG} AS j,
                             a.ji + 1 AS job,
                             (a.k * 7919 + (a.ji % {JOBS_PER_ORG}) * 104729) % 1000 AS r) b,
             LATERAL (SELECT {now} - {ages}[b.j + 1] * interval '1 day' AS started) c,
             LATERAL (SELECT CASE
                 WHEN b.j < 2 THEN CASE WHEN b.r < 620 THEN 'completed' ELSE 'stopped' END
                 WHEN b.j = 2 THEN CASE WHEN b.r < 550 THEN 'completed'
                                        WHEN b.r < 800 THEN 'stopped'
                                        WHEN b.r < 850 THEN 'paused' ELSE 'active' END
                 WHEN b.j = 3 THEN CASE WHEN b.r < 150 THEN 'stopped'
                                        WHEN b.r < 170 THEN 'paused' ELSE 'active' END
                 ELSE CASE WHEN b.r < 80 THEN 'stopped' WHEN b.r < 90 THEN 'paused'
                           ELSE 'active' END
               END AS status) v,
             LATERAL (SELECT
                 CASE WHEN v.status = 'completed' THEN 4
                      WHEN v.status = 'stopped' THEN 1 + b.r % (CASE WHEN b.j = 4 THEN 2 ELSE 3 END)
                      WHEN b.j = 4 THEN 2 ELSE 3 END AS step,
                 v.status = 'active' AND b.r < (ARRAY[0, 0, 900, 400, 300])[b.j + 1] AS waiting) s,
             LATERAL (SELECT c.started + {days}[s.step] * interval '1 day'
                             + (a.k % 28800) * interval '1 second' AS last_at) t
        """,
        # Statistics for the planner before the joins below (inside this transaction).
        "ANALYZE clients, appraisal_orders, contacts, jobs, enrollments",
        # The due enrollments: one per contact, of running jobs, whose contact nothing
        # stops (not opted out, bounced, replied or away; no order since the job started)
        # and whose zone has the window open at NOW.
        f"""
        CREATE TABLE bench_due AS
        SELECT id, step FROM (
            SELECT DISTINCT ON (e.contact_id) e.id, e.step
            FROM enrollments e
            JOIN jobs jb ON jb.id = e.job_id AND jb.status = 'running'
            JOIN contacts c ON c.id = e.contact_id
            LEFT JOIN clients cl ON cl.id = c.client_id
            WHERE e.status = 'active' AND c.opted_out_at IS NULL AND c.email_status = 'valid'
              AND c.last_replied_at IS NULL AND c.paused_until IS NULL
              AND c.state IN ({continental})
              AND (c.timezone IS NULL OR c.timezone IN ({due_zones}))
              AND (cl.last_ordered_at IS NULL OR cl.last_ordered_at < jb.started_at)
            ORDER BY e.contact_id, md5(e.id::text)
        ) candidates
        ORDER BY md5(id::text || 'due')
        LIMIT {shape.due}
        """,
        # Their previous step ended a gap and a day ago (Monday, mid-window); due in the
        # last two hours.
        f"""
        UPDATE enrollments e
        SET next_due_at = {now} - (60 + e.id % 7200) * interval '1 second',
            last_step_at = {now} - ({gaps}[e.step + 1] + 1) * interval '1 day'
                           - (e.id % 3600) * interval '1 second',
            updated_at = {now} - interval '1 day'
        FROM bench_due d WHERE d.id = e.id
        """,
        # Every step that ran sent its email (the last one at last_step_at) ...
        f"""
        INSERT INTO email_sends (org_id, job_id, campaign_id, enrollment_id, contact_id,
                                 message_id, to_email, to_domain, subject, status, sent_at,
                                 created_at, sender_user_id, from_email, campaign_email,
                                 "references", attempt_count)
        SELECT e.org_id, e.job_id, jb.campaign_id, e.id, e.contact_id,
               '<bench-' || e.id || '-' || i || '@bench.example>', c.email,
               lower(split_part(c.email, '@', 2)), 'Step ' || (i + 1), 'sent', t.at, t.at,
               jb.owner_id, 'rep@bench' || e.org_id || '.example', true, '[]', 1
        FROM enrollments e
        JOIN contacts c ON c.id = e.contact_id
        JOIN jobs jb ON jb.id = e.job_id
        CROSS JOIN LATERAL generate_series(0, e.step - 1) i
        CROSS JOIN LATERAL (SELECT CASE WHEN i = e.step - 1 THEN e.last_step_at
                   ELSE e.created_at + {days}[i + 1] * interval '1 day'
                        + (e.id % 28800) * interval '1 second' END AS at) t
        """,
        # Approved emails of steps in review wait in the outbox for their mailbox's pace
        # (queued, no sent time): the fatigue limits count them too.
        """
        INSERT INTO email_sends (org_id, job_id, campaign_id, enrollment_id, contact_id,
                                 message_id, to_email, to_domain, subject, status, not_before,
                                 created_at, sender_user_id, from_email, campaign_email,
                                 "references", attempt_count)
        SELECT e.org_id, e.job_id, jb.campaign_id, e.id, e.contact_id,
               '<bench-' || e.id || '-' || e.step || '@bench.example>', c.email,
               lower(split_part(c.email, '@', 2)), 'Step ' || (e.step + 1), 'queued',
               e.updated_at, e.updated_at, jb.owner_id, 'rep@bench' || e.org_id || '.example',
               true, '[]', 0
        FROM enrollments e
        JOIN contacts c ON c.id = e.contact_id
        JOIN jobs jb ON jb.id = e.job_id
        WHERE e.status = 'active' AND e.next_due_at IS NULL AND e.id % 10 = 0
        """,
        # ... and made its draft task; a step waiting for review has its task done too.
        f"""
        INSERT INTO job_tasks (org_id, job_id, contact_id, step, batch, kind, status, input,
                               output, created_at, started_at, finished_at, retry_count)
        SELECT e.org_id, e.job_id, e.contact_id, i, i * 1000 + (e.id % {per_job}) / 500,
               'draft_email', 'succeeded',
               jsonb_build_object('enrollment_id', e.id, 'cadence_step', i), '{{}}',
               t.at, t.at, t.at, 0
        FROM enrollments e
        CROSS JOIN LATERAL generate_series(
            0, e.step - (CASE WHEN e.status = 'active' AND e.next_due_at IS NULL
                              THEN 0 ELSE 1 END)) i
        CROSS JOIN LATERAL (SELECT e.created_at + {days}[LEAST(i, 3) + 1] * interval '1 day'
                                   + (e.id % 28800) * interval '1 second' AS at) t
        """,
        """
        UPDATE jobs j SET total_tasks = t.n, completed_tasks = t.n, cards_created = t.n,
                          emails_sent = s.n
        FROM (SELECT job_id, count(*) AS n FROM job_tasks GROUP BY job_id) t,
             (SELECT job_id, count(*) AS n FROM email_sends GROUP BY job_id) s
        WHERE t.job_id = j.id AND s.job_id = j.id
        """,
        # What a run puts back before measuring.
        """
        CREATE TABLE bench_due_state AS
        SELECT e.id, e.step, e.status, e.next_due_at, e.last_step_at, e.updated_at
        FROM enrollments e JOIN bench_due d ON d.id = e.id
        """,
        "CREATE TABLE bench_jobs AS SELECT * FROM jobs",
        """
        CREATE TABLE bench_marks AS
        SELECT (SELECT coalesce(max(id), 0) FROM job_tasks) AS tasks,
               (SELECT coalesce(max(id), 0) FROM cards) AS cards,
               (SELECT coalesce(max(id), 0) FROM email_sends) AS sends,
               (SELECT coalesce(max(id), 0) FROM slack_deferred_calls) AS notices
        """,
    ]


def _raw_url(database: str) -> str:
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}"


def _seeded(shape: Shape) -> bool:
    try:
        with psycopg.connect(_raw_url(shape.database), connect_timeout=5) as conn:
            row = conn.execute("SELECT version, rows, due FROM bench_seed").fetchone()
    except psycopg.Error:
        return False
    return row == (SEED_VERSION, shape.rows, shape.due)


def ensure_database(shape: Shape) -> str:
    """Generate the database of this shape unless it is there; return its URL."""
    url = _raw_url(shape.database)
    if _seeded(shape):
        print(f"reusing {shape.rows:,} enrollments ({shape.due:,} due) in {shape.database}")
        upgrade(url)
        return url
    print(
        f"generating {shape.rows:,} enrollments ({shape.due:,} due), "
        f"{ORGS * shape.contacts_per_org:,} contacts, {ORGS * shape.clients_per_org:,} clients, "
        f"{shape.orders:,} orders and the history of every step in {shape.database} ...",
        flush=True,
    )
    started = time.perf_counter()
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{shape.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{shape.database}"')
    upgrade(url)
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO organizations (slug, name, cadence_settings) VALUES (%s, %s, %s)",
            [
                (f"bench-{n}", name, Jsonb(settings))
                for n, (name, settings) in enumerate(ORG_SETTINGS, 1)
            ],
        )
        conn.execute(
            "INSERT INTO users (org_id, email, name, role) "
            "SELECT o, 'rep@bench' || o || '.example', 'Rep ' || o, 'admin' "
            f"FROM generate_series(1, {ORGS}) o"
        )
        conn.execute(
            "INSERT INTO marketing_campaigns (org_id, name, goal, status, channels, "
            "email_template_ids, cadence_days, created_by) "
            "SELECT o, 'Q4 lender win-back', 'reactivation', 'active', '[\"email\"]', '[]', "
            f"'[0, 4, 10, 21]', o FROM generate_series(1, {ORGS}) o"
        )
        params = Jsonb(_job_params())
        for org in range(1, ORGS + 1):
            for j, age in enumerate(JOB_AGES_DAYS):
                started_at = NOW - timedelta(days=age)
                finished = j < 2
                conn.execute(
                    "INSERT INTO jobs (org_id, owner_id, campaign_id, kind, name, status, "
                    "params, created_at, started_at, planned_at, finished_at) "
                    "VALUES (%s, %s, %s, 'campaign', %s, %s, %s, %s, %s, %s, %s)",
                    (
                        org,
                        org,
                        org if j % 2 == 0 else None,
                        f"Win-back wave {j + 1}",
                        "succeeded" if finished else "running",
                        params,
                        started_at,
                        started_at,
                        started_at,
                        started_at + timedelta(days=30) if finished else None,
                    ),
                )
        for statement in _seed_sql(shape):
            conn.execute(statement.encode())
        due = conn.execute("SELECT count(*) FROM bench_due").fetchone()
        if due is None or due[0] != shape.due:
            raise RuntimeError(
                f"only {due[0] if due else 0:,} enrollments can be made due among "
                f"{shape.rows:,}; raise BENCH_CADENCE_ENROLLMENTS or lower BENCH_CADENCE_DUE"
            )
        conn.execute("CREATE TABLE bench_seed (version int, rows int, due int)")
        conn.execute(
            "INSERT INTO bench_seed VALUES (%s, %s, %s)", (SEED_VERSION, shape.rows, shape.due)
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    return url


def restore(url: str) -> None:
    """Put the due enrollments, the jobs and what the tick and drafting wrote back."""
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM cards WHERE id > (SELECT cards FROM bench_marks)")
        conn.execute("DELETE FROM job_tasks WHERE id > (SELECT tasks FROM bench_marks)")
        conn.execute("DELETE FROM email_sends WHERE id > (SELECT sends FROM bench_marks)")
        conn.execute(
            "DELETE FROM slack_deferred_calls WHERE id > (SELECT notices FROM bench_marks)"
        )
        conn.execute(
            "UPDATE enrollments e SET step = s.step, status = s.status, "
            "next_due_at = s.next_due_at, last_step_at = s.last_step_at, defer_reason = NULL, "
            "stop_reason = NULL, time_zone = NULL, updated_at = s.updated_at "
            "FROM bench_due_state s WHERE s.id = e.id"
        )
        conn.execute(
            "UPDATE jobs j SET status = b.status, total_tasks = b.total_tasks, "
            "completed_tasks = b.completed_tasks, failed_tasks = b.failed_tasks, "
            "cards_created = b.cards_created, cards_approved = b.cards_approved, "
            "errors_count = b.errors_count, last_error = b.last_error, "
            "finished_at = b.finished_at FROM bench_jobs b WHERE b.id = j.id"
        )
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("enrollments", "job_tasks", "cards", "jobs"):
            conn.execute(f"VACUUM ANALYZE {table}")


# --- measuring ---------------------------------------------------------------------------


@dataclass
class SqlProfile:
    """SQL time per statement, taken from the engine's cursor events."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def lines(self, top: int = 10) -> list[str]:
        ordered = sorted(self.seconds.items(), key=lambda item: -item[1])[:top]
        return [
            f"{seconds * 1000:8.0f} ms {self.calls[key]:5d} calls {self.rows[key]:7d} rows  {key}"
            for key, seconds in ordered
        ]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _statement_key(statement: str) -> str:
    text = re.sub(r"\s+", " ", statement).strip()
    text = re.sub(r"\(%\(\w+\)s(?:, %\(\w+\)s)*\)", "(…)", text)
    text = re.sub(r"__\[POSTCOMPILE_\w+\]", "…", text)
    return text[:110]


@contextmanager
def sql_profile(engine: Engine) -> Iterator[SqlProfile]:
    """Time every statement the engine runs inside the block."""
    profile = SqlProfile()

    def before(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        context._bench_started = time.perf_counter()

    def after(
        _conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        key = _statement_key(statement)
        profile.seconds[key] += time.perf_counter() - context._bench_started
        profile.calls[key] += 1
        profile.rows[key] += len(params) if many else max(cursor.rowcount, 0)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield profile
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def runtime_for(url: str) -> Runtime:
    """Salesbot's runtime on this database, Slack and Gmail off, the clock at NOW."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=url,
        SALESBOT_SECRET_KEY="bench-secret-key-for-cadence-ticks-0123456789-abcdef",
        LOG_LEVEL="WARNING",
        SLACK_BOT_TOKEN="",
        SLACK_CLIENT_ID="",
        GOOGLE_CLIENT_ID="",
        ANTHROPIC_API_KEY="",
    )
    services = build_services(settings, clock=FixedClock(NOW))
    return build_runtime(settings, services=services)


def timed_tick(runtime: Runtime, *, now: datetime) -> tuple[float, TickReport, SqlProfile]:
    """Run one tick at `now`; return its wall time, its report and its SQL profile."""
    with sql_profile(runtime.services.engine) as profile:
        started = time.perf_counter()
        report = runtime.outreach.cadences.tick(now=now)
        seconds = time.perf_counter() - started
    return seconds, report, profile


def check_report(report: TickReport, due: int) -> None:
    """Every due step must have run: anything else measured the wrong thing."""
    if report.ran != due or report.tasks_created != due or report.jobs_paused:
        raise RuntimeError(
            f"the tick ran {report.ran:,} of {due:,} due steps ({report.tasks_created:,} tasks, "
            f"jobs paused {report.jobs_paused}); reasons: {dict(report.reasons.most_common(5))}"
        )


def explain_claim(runtime: Runtime) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) the claim of one chunk, as the tick sends it (rolled back)."""
    engine = runtime.services.engine
    captured: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, _many: bool
    ) -> None:
        captured.append((statement, params))

    with engine.connect() as conn:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            with Session(bind=conn) as session:
                CadenceRepo(session).claim_due(now=NOW, limit=runtime.outreach.cadences.chunk)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        conn.rollback()
        statement, params = next((s, p) for s, p in captured if "FOR UPDATE" in s)
        plan = [
            str(row[0])
            for row in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)
        ]
        conn.rollback()
    return [re.sub(r"\s+", " ", statement).strip(), *plan]


def measure_due_tick(
    url: str, shape: Shape, *, label: str
) -> tuple[float, list[float], Runtime, SqlProfile]:
    """Time the tick of the due enrollments REPEATS times, restored before each (after a
    warm-up tick at a time nothing is due, so the pool's connections exist); return the
    median, every time, the runtime of the last run and its SQL profile."""
    times: list[float] = []
    runtime: Runtime | None = None
    profile = SqlProfile()
    report = TickReport(at=NOW)
    for _ in range(REPEATS):
        if runtime is not None:
            runtime.services.engine.dispose()
        restore(url)
        runtime = runtime_for(url)
        runtime.outreach.cadences.tick(now=NOW - timedelta(days=1))
        seconds, report, profile = timed_tick(runtime, now=NOW)
        check_report(report, shape.due)
        times.append(seconds)
    assert runtime is not None
    median = statistics.median(times)
    print(
        f"({label}) tick with {shape.due:,} due among {shape.rows:,} enrollments, chunks of "
        f"{runtime.outreach.cadences.chunk:,}: median {median:.2f} s of {REPEATS} "
        f"({', '.join(f'{t:.2f}' for t in times)}; {shape.due / median:,.0f} steps/s); last "
        f"run: claimed {report.claimed:,}, ran {report.ran:,}, tasks created "
        f"{report.tasks_created:,}, SQL {profile.total:.2f} s in "
        f"{sum(profile.calls.values()):,} statements",
        flush=True,
    )
    return median, times, runtime, profile


def main() -> None:
    """Print the tick's figures on the small and the large table."""
    print(f"command: {_command()}")
    print(
        f"PostgreSQL at {ADMIN_URL.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; tick at {NOW.isoformat()}; {TARGETS}"
    )
    small, large = Shape(SMALL_ROWS, DUE), Shape(ROWS, DUE)
    small_url, large_url = ensure_database(small), ensure_database(large)

    small_s, _, small_runtime, _ = measure_due_tick(small_url, small, label="d, small table")
    small_runtime.services.engine.dispose()
    restore(small_url)

    restore(large_url)
    runtime = runtime_for(large_url)
    plan = explain_claim(runtime)
    runtime.services.engine.dispose()
    large_s, _, runtime, profile = measure_due_tick(large_url, large, label="a")
    print("    SQL time per statement during the last run (top 10):")
    for line in profile.lines():
        print(f"    {line}")

    zero: list[float] = []
    for _ in range(ZERO_DUE_RUNS):
        seconds, report, _ = timed_tick(runtime, now=NOW)
        if report.claimed:
            raise RuntimeError(f"a tick after the big one still claimed {report.claimed}")
        zero.append(seconds * 1000)
    print(
        f"(c) tick with 0 due among {large.rows:,} (right after the big tick), "
        f"{ZERO_DUE_RUNS} runs: median {statistics.median(zero):.1f} ms, first "
        f"{zero[0]:.1f} ms, max {max(zero):.1f} ms (target < 50 ms)"
    )

    engine = runtime.services.engine
    with sql_profile(engine) as drafting:
        started = time.perf_counter()
        ran = runtime.worker.run_until_idle()
        draft_s = time.perf_counter() - started
    with engine.connect() as conn:
        cards = conn.exec_driver_sql(
            "SELECT count(*) FROM cards WHERE id > (SELECT cards FROM bench_marks)"
        ).scalar_one()
    print(
        f"(b) drafting the {ran:,} tasks into cards from templates (task worker, Slack off): "
        f"{draft_s:.2f} s, {cards:,} cards ({cards / draft_s:,.0f} cards/s; SQL "
        f"{drafting.total:.2f} s)"
    )
    runtime.services.engine.dispose()
    restore(large_url)

    print(
        f"(d) the same {DUE:,}-due tick (medians): {small.rows:,} enrollments {small_s:.2f} s, "
        f"{large.rows:,} enrollments {large_s:.2f} s: ratio {large_s / small_s:.2f} "
        "(flat: about 1)"
    )
    print("EXPLAIN (ANALYZE, BUFFERS) of the claim of one chunk, on the large table:")
    for line in plan:
        print(f"  {line}")
    ok = large_s < 5 and statistics.median(zero) < 50 and large_s / small_s < 1.5
    print(f"verdict: {'targets met' if ok else 'TARGETS MISSED'} ({TARGETS})")


if __name__ == "__main__":
    sys.exit(main())
