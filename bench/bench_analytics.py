"""Analytics on PostgreSQL (issue 14): the digest's facts for an organization of 1,000,000
enrollments, and the analytics route for one campaign of 100,000.

`python -m bench analytics` (part of `make bench`), or `.venv/bin/python
bench/bench_analytics.py`. Targets: (a) `digest_facts` of a week with 200,000 sends and
about 20,000 replies in it, in < 2 s; (b) `GET /api/marketing/campaigns/{id}/analytics`
of a campaign of 100,000 enrollments, through the FastAPI app over HTTP, median of
BENCH_ANALYTICS_CALLS calls (25) < 300 ms.

The data, for the measured organization (sizes scale with BENCH_ANALYTICS_ENROLLMENTS,
1,000,000 by default; a quick run: `BENCH_ANALYTICS_ENROLLMENTS=100000`): 5 reps, 5
active campaigns and a paused one, 10 jobs of 100,000 enrollments each (campaign 1 has one
job: the route's campaign), 250,000 contacts of 20,833 clients with 200,000 past orders;
500,000 sends (each with a body of 750 characters, as an email has), drafted by cards of
cadence tasks: 200,000 in the digest's week, 150,000 in the week before, 150,000 in the 46
days before that, 30 % tracked, each with its `sent` event. A reply to every tenth send
20 hours after it (an inbound email with its body and headers; neutral, positive,
negative or a meeting request; a fifth of them linked through the inbound email only), a
hard and a soft bounce per hundred sends, an unsubscribe-link opt-out per two hundred (no
send named: found by the correlated subquery), a complaint per thousand, an order after a
reply per fifty sends (found through the reply's send), opens and clicks of people and
bots, 5,000 cards waiting for review, a ranking of 1,000 stale clients. A second
organization has the same at a tenth of the size.

The database (`salesbot_bench_analytics_<rows>`, migrated with Alembic) is generated once
with generate_series and reused; drop it with `DROP DATABASE` when done.

Measured, at a fixed instant (Tuesday 2026-12-08 18:00 UTC):
(a) `AnalyticsViews.digest_facts` of the last 7 days in America/Chicago (median of
    BENCH_ANALYTICS_REPEATS runs, 5, after one warm-up), with the SQL time per statement
    and EXPLAIN (ANALYZE, BUFFERS) of the heaviest statement;
(b) the route for campaign 1 over its whole life, and over the last 7 days.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from bench.cadence_tick import SqlProfile, sql_profile
from bot.app import build_app
from bot.settings import Settings
from domain.analytics import AnalyticsWindow, DigestFacts
from domain.clock import FixedClock
from handlers.api.deps import Services
from storage.analytics import AnalyticsViews
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = int(os.environ.get("BENCH_ANALYTICS_ENROLLMENTS", "1000000"))
REPEATS = int(os.environ.get("BENCH_ANALYTICS_REPEATS", "5"))
CALLS = max(20, int(os.environ.get("BENCH_ANALYTICS_CALLS", "25")))
SEED_VERSION = 3

NOW = datetime(2026, 12, 8, 18, 0, tzinfo=UTC)
WEEK = AnalyticsWindow(since=NOW - timedelta(days=7), until=NOW)
ZONE = "America/Chicago"
TARGETS = "targets: (a) digest facts < 2 s; (b) route median < 300 ms"

REPS = 5
JOBS = 10
# The campaign of each job (campaign 1: one job, the route's); campaign 6 is paused.
CAMPAIGN_OF = (1, 2, 2, 2, 3, 3, 4, 4, 5, 5)
JOB_AGES_DAYS = (80, 70, 60, 50, 40, 30, 20, 12, 6, 3)
RANKED = 1000
# The second organization's ids start here, in every table.
OTHER_BASE = 100_000_000


@dataclass(frozen=True)
class Shape:
    """The sizes of one organization's data."""

    rows: int  # enrollments

    @property
    def per_job(self) -> int:
        return self.rows // JOBS

    @property
    def contacts(self) -> int:
        return self.rows // 4

    @property
    def clients(self) -> int:
        return max(RANKED + 1, self.contacts // 12)

    @property
    def sends_old(self) -> int:
        return self.rows * 3 // 20

    @property
    def sends_previous(self) -> int:
        return self.rows * 3 // 20

    @property
    def sends_window(self) -> int:
        return self.rows // 5

    @property
    def sends(self) -> int:
        return self.sends_old + self.sends_previous + self.sends_window

    @property
    def orders(self) -> int:
        return self.rows // 5

    @property
    def waiting(self) -> int:
        return max(10, self.rows // 200)


def _database(rows: int) -> str:
    return f"salesbot_bench_analytics_{rows}"


def _raw_url(database: str) -> str:
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}"


def _ts(at: datetime) -> str:
    return f"timestamptz '{at.isoformat()}'"


def _array(values: tuple[int, ...]) -> str:
    return "(ARRAY[" + ",".join(str(v) for v in values) + "])"


def _seed_sql(org: int, shape: Shape, base: int) -> list[str]:
    """The statements that generate one organization's rows (ids from `base` + 1)."""
    now = _ts(NOW)
    per_job, contacts, clients = shape.per_job, shape.contacts, shape.clients
    n_old, n_prev, n_win = shape.sends_old, shape.sends_previous, shape.sends_window
    campaign_of, ages = _array(CAMPAIGN_OF), _array(JOB_AGES_DAYS)
    # Send g: its time (old, previous week, this week, in order), its enrollment, job,
    # contact and step; the same expressions everywhere the send is derived.
    send = f"""
        generate_series(0, {shape.sends - 1}) g,
        LATERAL (SELECT CASE
            WHEN g < {n_old} THEN {now} - interval '60 days'
                 + g * (interval '46 days' / {n_old})
            WHEN g < {n_old + n_prev} THEN {now} - interval '14 days'
                 + (g - {n_old}) * (interval '7 days' / {n_prev})
            ELSE {now} - interval '7 days' + (g - {n_old + n_prev}) * (interval '7 days' / {n_win})
          END AS sent_at,
          (g::bigint * 7919) % {shape.rows} AS en) t,
        LATERAL (SELECT t.en / {per_job} AS j, t.en % {per_job} AS k) e,
        LATERAL (SELECT {base} + 1 + (e.k + e.j * 25013) % {contacts} AS contact,
                        {base} + 1 + e.j AS job,
                        {base} + {campaign_of}[e.j + 1] AS campaign,
                        {base} + 1 + e.j % {REPS} AS rep,
                        {base} + g + 1 AS id, g % 4 AS step) s
    """
    reply_kind = """CASE WHEN (g / 10) % 20 < 8 THEN 'replied'
                         WHEN (g / 10) % 20 < 13 THEN 'positive_reply'
                         WHEN (g / 10) % 20 < 17 THEN 'negative_reply'
                         ELSE 'meeting_request' END"""
    reply_sentiment = """CASE WHEN (g / 10) % 20 < 8 THEN 'neutral'
                              WHEN (g / 10) % 20 < 17 AND (g / 10) % 20 >= 13 THEN 'negative'
                              ELSE 'positive' END"""
    replied = f"g % 10 = 3 AND t.sent_at + interval '20 hours' < {now}"
    ordered = f"g % 50 = 3 AND t.sent_at + interval '20 hours' + interval '5 days' < {now}"
    return [
        f"""
        INSERT INTO users (id, org_id, email, name, slack_user_id, role)
        SELECT {base} + r, {org}, 'rep' || r || '@bench{org}.example', 'Rep ' || r,
               'U{org}R' || r, 'rep'
        FROM generate_series(1, {REPS}) r
        """,
        f"""
        INSERT INTO marketing_campaigns (id, org_id, name, goal, status, channels,
                                         email_template_ids, cadence_days, created_by,
                                         created_at, updated_at)
        SELECT {base} + c, {org}, 'Campaign ' || c, 'reactivation',
               CASE WHEN c = 6 THEN 'paused' ELSE 'active' END, '["email"]', '[]',
               '[0, 4, 10, 21]', {base} + 1, {now} - interval '90 days',
               {now} - interval '90 days'
        FROM generate_series(1, 6) c
        """,
        f"""
        INSERT INTO jobs (id, org_id, owner_id, campaign_id, kind, name, status, created_at,
                          started_at, planned_at)
        SELECT {base} + 1 + j, {org}, {base} + 1 + j % {REPS}, {base} + {campaign_of}[j + 1],
               'campaign', 'Wave ' || (j + 1), 'running',
               {now} - {ages}[j + 1] * interval '1 day', {now} - {ages}[j + 1] * interval '1 day',
               {now} - {ages}[j + 1] * interval '1 day'
        FROM generate_series(0, {JOBS - 1}) j
        """,
        f"""
        INSERT INTO clients (id, org_id, name, domain, tags)
        SELECT {base} + g, {org}, 'Lender ' || g, 'lender{org}-' || g || '.example', '[]'
        FROM generate_series(1, {clients}) g
        """,
        # Three years of orders; a client whose number ends in 0 ordered lately.
        f"""
        INSERT INTO appraisal_orders (id, org_id, order_number, client_id, status, ordered_at,
                                      fee)
        SELECT {base} + g + 1, {org}, 'ORD-{org}-' || g, {base} + 1 + g % {clients},
               'completed',
               {now} - CASE WHEN (1 + g % {clients}) % 10 = 0 THEN 1 + (g::bigint * 7919) % 80
                            ELSE 120 + (g::bigint * 7919) % 975 END * interval '1 day',
               450
        FROM generate_series(0, {shape.orders - 1}) g
        """,
        f"""
        INSERT INTO contacts (id, org_id, client_id, email, first_name, last_name, role_code,
                              state, tags, lead_score, engagement_score)
        SELECT {base} + g + 1, {org}, {base} + 1 + g % {clients},
               'c' || g || '@lender{org}-' || (1 + g % {clients}) || '.example',
               (ARRAY['Dana','Ray','Priya','Tom','Keisha','Luis','Ann','Wei','Sam'])[1 + g % 9],
               'Whitfield' || g, (ARRAY['LO','PROC','UW','VM'])[1 + g % 4], 'TX', '[]',
               g % 101, (g::bigint * 37) % 100
        FROM generate_series(0, {contacts - 1}) g
        """,
        f"""
        INSERT INTO enrollments (id, org_id, job_id, contact_id, step, status, created_at,
                                 updated_at)
        SELECT {base} + g + 1, {org}, {base} + 1 + e.j,
               {base} + 1 + (e.k + e.j * 25013) % {contacts}, e.k % 4,
               CASE WHEN e.k % 4 = 3 THEN 'completed' ELSE 'active' END, e.at, e.at
        FROM generate_series(0, {shape.rows - 1}) g,
             LATERAL (SELECT g / {per_job} AS j, g % {per_job} AS k) a,
             LATERAL (SELECT a.j, a.k, {now} - {ages}[a.j + 1] * interval '1 day'
                             + a.k * (interval '7 days' / {per_job}) AS at) e
        """,
        f"""
        INSERT INTO job_tasks (id, org_id, job_id, contact_id, step, batch, kind, status,
                               created_at)
        SELECT s.id, {org}, s.job, s.contact, s.step, s.step, 'draft_email', 'succeeded',
               t.sent_at - interval '1 hour'
        FROM {send}
        """,
        f"""
        INSERT INTO cards (id, org_id, job_id, task_id, enrollment_id, contact_id, type, state,
                           priority, title, created_at, updated_at)
        SELECT s.id, {org}, s.job, s.id, {base} + t.en + 1, s.contact, 'send_email', 'done',
               'medium',
               'Step ' || (s.step + 1), t.sent_at - interval '1 hour', t.sent_at
        FROM {send}
        """,
        f"""
        INSERT INTO email_sends (id, org_id, card_id, job_id, campaign_id, enrollment_id,
                                 contact_id, message_id, to_email, to_domain, subject,
                                 body_text, sender_user_id, status, tracked, sent_at,
                                 created_at, "references", attempt_count, campaign_email)
        SELECT s.id, {org}, s.id, s.job, s.campaign, {base} + t.en + 1, s.contact,
               '<bench-{org}-' || g || '@salesbot.test>', 'c' || g || '@bench.example',
               'bench.example', 'Step ' || (s.step + 1),
               'Hi, it has been ' || (g % 400) || ' days since your last order. '
               || repeat('Our turn times are down to five days across the state. ', 12),
               s.rep, 'sent', g % 10 < 3,
               t.sent_at, t.sent_at, '[]', 1, true
        FROM {send}
        """,
        f"""
        INSERT INTO contact_engagement_history (org_id, contact_id, event, occurred_at,
                                                email_send_id, score_delta, score_after,
                                                detail)
        SELECT {org}, s.contact, 'sent', t.sent_at, s.id, 0, 0, '{{}}'::jsonb
        FROM {send}
        """,
        f"""
        INSERT INTO inbound_emails (id, org_id, gmail_message_id, subject, from_email,
                                    contact_id, email_send_id, status, received_at, sentiment,
                                    category, body_text, reply_text, headers)
        SELECT {base} + g / 10 + 1, {org}, 'bench-{org}-r' || g, 'Re: Step ' || (s.step + 1),
               'c' || g || '@bench.example', s.contact, s.id, 'processed',
               t.sent_at + interval '20 hours', {reply_sentiment}, 'OPPORTUNITY',
               'Thanks, let us talk next week.' || chr(10) || '> '
               || repeat('Our turn times are down to five days across the state. ', 20),
               'Thanks, let us talk next week.',
               jsonb_build_object('From', 'c' || g || '@bench.example',
                                  'Subject', 'Re: Step ' || (s.step + 1),
                                  'Received', repeat('by mx.bench.example; ', 12))
        FROM {send}
        WHERE {replied}
        """,
        # Replies (a fifth found through their inbound email only), bounces, complaints.
        f"""
        INSERT INTO contact_engagement_history (org_id, contact_id, event, occurred_at,
                                                sentiment, email_send_id, inbound_email_id,
                                                score_delta, score_after, detail)
        SELECT {org}, s.contact, {reply_kind}, t.sent_at + interval '20 hours',
               {reply_sentiment}, CASE WHEN (g / 10) % 5 = 0 THEN NULL ELSE s.id END,
               {base} + g / 10 + 1, 10, 10, '{{}}'::jsonb
        FROM {send}
        WHERE {replied}
        UNION ALL
        SELECT {org}, s.contact,
               CASE g % 1000 WHEN 11 THEN 'complaint'
                    ELSE CASE g % 100 WHEN 7 THEN 'bounced' ELSE 'soft_bounce' END END,
               t.sent_at + interval '10 minutes', NULL, s.id, NULL, -2, 0, '{{}}'::jsonb
        FROM {send}
        WHERE g % 100 IN (7, 8) OR g % 1000 = 11
        """,
        # Opt-outs from the unsubscribe link: no send named.
        f"""
        INSERT INTO contact_engagement_history (org_id, contact_id, event, occurred_at,
                                                score_delta, score_after, detail)
        SELECT {org}, s.contact, 'opted_out', t.sent_at + interval '2 days', -100, 0,
               '{{"source": "one_click"}}'::jsonb
        FROM {send}
        WHERE g % 200 = 9 AND t.sent_at + interval '2 days' < {now}
        """,
        # Orders after a reply: the order, and its event for the contact who replied.
        f"""
        INSERT INTO appraisal_orders (id, org_id, order_number, client_id, status, ordered_at,
                                      fee)
        SELECT {base} + {shape.orders} + g / 50 + 1, {org}, 'ORD-{org}-after-' || g,
               c.client_id, 'ordered', t.sent_at + interval '20 hours' + interval '5 days', 525
        FROM {send} JOIN contacts c ON c.id = s.contact
        WHERE {ordered}
        """,
        f"""
        INSERT INTO contact_engagement_history (org_id, contact_id, event, occurred_at,
                                                score_delta, score_after, detail)
        SELECT {org}, s.contact, 'order_after_reply',
               t.sent_at + interval '20 hours' + interval '5 days', 40, 50,
               jsonb_build_object('order_id', {base} + {shape.orders} + g / 50 + 1)
        FROM {send}
        WHERE {ordered}
        """,
        f"""
        UPDATE clients c SET last_ordered_at = o.last_at
        FROM (SELECT client_id, max(ordered_at) AS last_at FROM appraisal_orders
              WHERE org_id = {org} GROUP BY client_id) o
        WHERE o.client_id = c.id
        """,
        # Opens and clicks of tracked sends (g % 10 < 3): people, proxies, scanners.
        f"""
        INSERT INTO email_tracking_events (org_id, email_send_id, contact_id, kind, link_index,
                                           by_bot, hits, first_at, last_at)
        SELECT {org}, s.id, s.contact, h.kind, h.link, h.bot, 1, t.sent_at + h.delay,
               t.sent_at + h.delay
        FROM {send},
             LATERAL (VALUES ('open', -1, false, interval '3 hours', g % 10 = 0),
                             ('open', -1, true, interval '1 minute', g % 10 IN (0, 1)),
                             ('click', 0, false, interval '4 hours', g % 20 = 0),
                             ('click', 0, true, interval '2 minutes', g % 30 = 1))
                     h(kind, link, bot, delay, happened)
        WHERE h.happened AND t.sent_at + h.delay < {now}
        """,
        f"""
        INSERT INTO cards (id, org_id, job_id, contact_id, type, priority, state, title,
                           created_at, updated_at, slack_channel_id, slack_message_ts)
        SELECT {base} + {shape.sends} + w, {org}, {base} + 1 + w % {JOBS},
               {base} + 1 + w % {contacts}, 'send_email', 'medium',
               CASE WHEN w % 3 = 0 THEN 'in_review' ELSE 'suggested' END, 'Review ' || w,
               {now} - w * interval '1 minute', {now} - w * interval '1 minute', 'CREVIEW',
               '1700000000.' || w
        FROM generate_series(1, {shape.waiting}) w
        """,
        f"""
        INSERT INTO client_rankings (org_id, client_id, rank, score, days_since_order,
                                     past_order_rate, engagement_decay, best_contact_id,
                                     reasons, computed_at)
        SELECT {org}, {base} + r, r, 1000 - r, 200 + r % 300, 0.5, 0.1, {base} + r, '{{}}'::jsonb,
               {now}
        FROM generate_series(1, {RANKED}) r
        """,
    ]


_SEQUENCED = (
    "users",
    "marketing_campaigns",
    "jobs",
    "clients",
    "appraisal_orders",
    "contacts",
    "enrollments",
    "job_tasks",
    "cards",
    "email_sends",
    "inbound_emails",
)


def _seeded(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT version, rows FROM bench_seed").fetchone()
    except psycopg.Error:
        return False
    return row == (SEED_VERSION, ROWS)


def ensure_database() -> str:
    """Generate the database of ROWS enrollments unless it is there; return its URL."""
    database = _database(ROWS)
    url = _raw_url(database)
    if _seeded(url):
        print(f"reusing {ROWS:,} enrollments in {database}")
        upgrade(url)
        return url
    main, other = Shape(ROWS), Shape(ROWS // 10)
    print(
        f"generating {main.rows:,} enrollments, {main.sends:,} sends ({main.sends_window:,} in "
        f"the week), {main.contacts:,} contacts and their history in {database} (and a second "
        "organization a tenth of the size) ...",
        flush=True,
    )
    started = time.perf_counter()
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    upgrade(url)
    with psycopg.connect(url) as conn:
        for org, slug in ((1, "bench-analytics"), (2, "bench-analytics-other")):
            conn.execute(
                "INSERT INTO organizations (id, slug, name) VALUES (%s, %s, %s)",
                (org, slug, f"Analytics bench {org}"),
            )
        for org, shape, base in ((1, main, 0), (2, other, OTHER_BASE)):
            for statement in _seed_sql(org, shape, base):
                conn.execute(statement.encode())
        for table in ("organizations", *_SEQUENCED):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.execute("CREATE TABLE bench_seed (version int, rows int)")
        conn.execute("INSERT INTO bench_seed VALUES (%s, %s)", (SEED_VERSION, ROWS))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    return url


# --- measuring ---------------------------------------------------------------------------


def _settings(url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=url,
        SALESBOT_SECRET_KEY="bench-secret-key-for-analytics-0123456789-abcdef",
        LOG_LEVEL="WARNING",
        SLACK_BOT_TOKEN="",
        SLACK_CLIENT_ID="",
        GOOGLE_CLIENT_ID="",
        ANTHROPIC_API_KEY="",
    )


def digest_once(engine: Engine) -> tuple[float, DigestFacts, SqlProfile]:
    """Compute the week's digest facts once; return the wall time, the facts, the SQL."""
    sessions = make_session_factory(engine)
    with sql_profile(engine) as profile, sessions() as session:
        started = time.perf_counter()
        facts = AnalyticsViews(session).digest_facts(1, WEEK, time_zone=ZONE, now=NOW)
        seconds = time.perf_counter() - started
        session.rollback()
    return seconds, facts, profile


def explain_heaviest(engine: Engine) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) the digest's slowest statement, as it was sent."""
    timed: list[tuple[float, str, Any]] = []

    def before(_c: Any, _cur: Any, _s: str, _p: Any, context: Any, _m: bool) -> None:
        context._bench_started = time.perf_counter()

    def after(_c: Any, _cur: Any, statement: str, params: Any, context: Any, _m: bool) -> None:
        timed.append((time.perf_counter() - context._bench_started, statement, params))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        with make_session_factory(engine)() as session:
            AnalyticsViews(session).digest_facts(1, WEEK, time_zone=ZONE, now=NOW)
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    seconds, statement, params = max(timed, key=lambda item: item[0])
    with make_session_factory(engine)() as session:
        AnalyticsViews(session)._for_counting()  # the session's settings, as measured
        plan = [
            str(row[0])
            for row in session.connection().exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params
            )
        ]
        session.rollback()
    return [f"({seconds * 1000:.0f} ms) " + re.sub(r"\s+", " ", statement).strip(), *plan]


def measure_digest(engine: Engine) -> float:
    """(a): the median of REPEATS digests after a warm-up, with what they found."""
    digest_once(engine)
    runs = [digest_once(engine) for _ in range(REPEATS)]
    times = [seconds for seconds, _, _ in runs]
    median = statistics.median(times)
    _, facts, profile = runs[-1]
    print(
        f"(a) digest facts of {WEEK.since:%Y-%m-%d %H:%M} – {WEEK.until:%Y-%m-%d %H:%M} UTC "
        f"({ZONE}): median {median * 1000:.0f} ms of {REPEATS} "
        f"({', '.join(f'{t * 1000:.0f}' for t in times)} ms); last run: SQL "
        f"{profile.total * 1000:.0f} ms in {sum(profile.calls.values())} statements",
        flush=True,
    )
    replies = facts.replies
    print(
        f"    found: sent {facts.sent.current:,} (week before {facts.sent.previous:,}); "
        f"replies {replies.total.current:,} (+{replies.positive.current:,} "
        f"={replies.neutral.current:,} -{replies.negative.current:,}); meetings "
        f"{facts.meetings.current:,}; opt-outs {facts.opt_outs.current:,}; hard bounces "
        f"{facts.bounces.current:,}; orders after a reply {facts.orders_after_reply.current:,}; "
        f"waiting {facts.waiting_count:,}; funnels {len(facts.funnels)} (lifetime sent "
        f"{sum(f.lifetime.sent for f in facts.funnels):,}, enrolled "
        f"{sum(f.lifetime.enrolled for f in facts.funnels):,}); trend "
        f"{sum(p.sent for p in facts.trend):,} sends in {len(facts.trend)} days; hottest "
        f"{len(facts.hottest)}; revenue {len(facts.revenue)} clients; stale "
        f"{len(facts.stale_clients)}; tracked {facts.tracking.tracked_sends if facts.tracking else 0:,}"
    )
    if facts.sent.current != Shape(ROWS).sends_window:
        raise RuntimeError(f"the week has {facts.sent.current:,} sends, not {ROWS // 5:,}")
    print("    SQL time per statement (last run, top 12):")
    for line in profile.lines(12):
        print(f"    {line}")
    return median


def measure_route(url: str) -> tuple[float, float]:
    """(b): the analytics route of campaign 1 over HTTP, its life and its last week."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    services = Services(engine=engine, session_factory=sessions, clock=FixedClock(NOW))
    app = build_app(_settings(url), services=services, start_background=False)
    token = services.accounts.create_token("bench-analytics", name=f"bench {time.time():.0f}")
    headers = {"Authorization": f"Bearer {token.secret}"}
    path = "/api/marketing/campaigns/1/analytics"
    medians = []
    with TestClient(app) as client:
        for label, params in (
            ("its whole life", {}),
            ("the last 7 days", {"since": WEEK.since.isoformat()}),
        ):
            times = []
            body: dict[str, Any] = {}
            for n in range(CALLS + 3):
                started = time.perf_counter()
                answer = client.get(path, params=params, headers=headers)
                seconds = time.perf_counter() - started
                if answer.status_code != 200:
                    raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
                body = answer.json()
                if n >= 3:  # after a warm-up
                    times.append(seconds * 1000)
            with sql_profile(engine) as profile:
                client.get(path, params=params, headers=headers)
            totals = body["totals"]
            median = statistics.median(times)
            medians.append(median)
            print(
                f"(b) GET {path} over {label}: median {median:.0f} ms, p90 "
                f"{statistics.quantiles(times, n=10)[-1]:.0f} ms, max {max(times):.0f} ms "
                f"({CALLS} calls); enrolled {totals['enrolled']:,}, sent {totals['sent']:,}, "
                f"replies {totals['replies']:,}, {len(body['steps'])} steps, "
                f"{len(body['reps'])} reps; SQL of one more call: {profile.total * 1000:.0f} ms",
                flush=True,
            )
            for line in profile.lines(6):
                print(f"    {line}")
    engine.dispose()
    return medians[0], medians[1]


def main() -> None:
    """Print the analytics figures."""
    sizes = (
        f"BENCH_ANALYTICS_ENROLLMENTS={ROWS} "
        if "BENCH_ANALYTICS_ENROLLMENTS" in os.environ
        else ""
    )
    print(f"command: {sizes}.venv/bin/python bench/bench_analytics.py")
    print(
        f"PostgreSQL at {ADMIN_URL.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; at {NOW.isoformat()}; {TARGETS}"
    )
    url = ensure_database()
    engine = make_engine(url)
    digest_s = measure_digest(engine)
    plan = explain_heaviest(engine)
    engine.dispose()
    life_ms, week_ms = measure_route(url)
    print("EXPLAIN (ANALYZE, BUFFERS) of the digest's heaviest statement:")
    for line in plan:
        print(f"  {line}")
    ok = digest_s < 2 and life_ms < 300 and week_ms < 300
    print(f"verdict: {'targets met' if ok else 'TARGETS MISSED'} ({TARGETS})")


if __name__ == "__main__":
    sys.exit(main())
