"""Slack figures (issue: Slack cards), on PostgreSQL, with the Slack stand-in over HTTP.

(The ack latency of clicks is `python -m bench ack`, bench/bench_ack.py.)

1. 1,000 concurrent signed approve clicks on one card: exactly one email.
2. Launch of a 10,000-contact campaign with template drafting: job, enrollments,
   tasks and cards created (target < 20 s); then card messages posted while the
   stand-in enforces Slack's ~1 message/second/channel, and none lost.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from sqlalchemy import func, select

from bot.app import build_app, build_runtime
from bot.settings import Settings
from sandbox.google import GoogleUrls
from sandbox.server import serve_in_thread
from sandbox.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_CHANNEL_ID,
    DEFAULT_TEAM_ID,
    api_base_url,
    start_slack_stand_in,
)
from storage import models as m
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.models import SlackDeferredCall
from storage.uow import UnitOfWork
from tests.support.accounts import create_org, link_slack_team
from tests.support.slack import approve_click_body, signed_headers

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "salesbot_bench_slack"
SECRET = "bench-signing-secret"
REP = "U0BENCHREP"
CONCURRENCY = 50
ROUNDS = 8
LAUNCH_CONTACTS = 10_000
PACED_SECONDS = 12


def _fresh_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{DB_NAME}"
    upgrade(url)
    return url


def _seed(url: str, contacts: int, *, campaign: str) -> tuple[int, int]:
    """Add an org bound to the stand-in's workspace, contacts, a template and a campaign."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = session.scalar(select(m.Organization.id).where(m.Organization.slug == "bench"))
        if org is None:
            org = create_org(session, slug="bench", name="Bench Appraisals").id
            link_slack_team(session, org, DEFAULT_TEAM_ID)
            session.add(
                m.User(
                    org_id=org,
                    email="rep@bench.example.com",
                    name="Rep",
                    slack_user_id=REP,
                    role="admin",
                )
            )
        session.flush()
        template = m.EmailTemplate(
            org_id=org,
            name=f"{campaign} step 1",
            category="campaign",
            subject="Turn times in {{ state }} are down, {{ first_name }}",
            body="Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days since "
            "{{ company_name }} last ordered.\n\n{{ rep_name }}",
            variables=[],
        )
        session.add(template)
        session.flush()
        tag = campaign.lower().replace(" ", "-")
        row = m.MarketingCampaign(
            org_id=org,
            name=campaign,
            goal="reactivation",
            include_tags=[tag],
            channels=["email"],
            email_template_ids=[template.id],
            cadence_days=[0, 4, 10, 21],
            review_channel_id=DEFAULT_CHANNEL_ID,
        )
        session.add(row)
        session.commit()
        campaign_id = row.id
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw) as conn:
        conn.execute(
            """
            INSERT INTO clients (org_id, name, domain, tags, last_ordered_at)
            SELECT %(org)s, 'Lender ' || g || ' ' || %(tag)s, %(tag)s || '-lender' || g || '.example.com',
                   '[]'::jsonb, now() - (100 + g %% 200) * interval '1 day'
            FROM generate_series(1, greatest(%(n)s / 20, 1)) g
            """,
            {"org": org, "tag": tag, "n": contacts},
        )
        conn.execute(
            """
            INSERT INTO contacts (org_id, client_id, email, first_name, last_name, role_code,
                                  state, tags, lead_score)
            SELECT %(org)s, c.id, 'lo' || g || '@' || %(tag)s || '.example.com', 'Dana' || g,
                   'Whitfield', 'LO', 'TX', jsonb_build_array(%(tag)s::text), 60
            FROM generate_series(1, %(n)s) g
            JOIN LATERAL (SELECT id FROM clients WHERE org_id = %(org)s
                          AND domain = %(tag)s || '-lender' || (1 + g %% greatest(%(n)s / 20, 1)) || '.example.com') c ON true
            """,
            {"org": org, "tag": tag, "n": contacts},
        )
    engine.dispose()
    return org, campaign_id


def _settings(url: str, slack_api: str, *, post_interval: float = 1.1) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        SLACK_POST_INTERVAL_SECONDS=post_interval,
        DATABASE_URL=url,
        SALESBOT_SECRET_KEY="bench-secret-key-0123456789-abcdefghijkl",
        SLACK_API_URL=slack_api,
        SLACK_BOT_TOKEN=DEFAULT_BOT_TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
    )


def _click_body(card_id: int, fingerprint: str | None) -> str:
    return approve_click_body(card_id, fingerprint, user=REP)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def _spawn(args: list[str], env: dict[str, str], ready_url: str | None) -> subprocess.Popen[bytes]:
    """Start a server process and wait until `ready_url` answers (when one is given)."""
    process = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    if ready_url is None:
        return process
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(ready_url, timeout=1).status_code < 500:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{args[0]} did not start")


def bench_launch(url: str, slack_api: str, stand_in: Any) -> None:
    """Print how long a 10k-contact launch takes and how cards are posted at Slack's pace."""
    org, _ = _seed(url, LAUNCH_CONTACTS, campaign="Launch bench")
    runtime = build_runtime(_settings(url, slack_api))
    stand_in.reset()
    stand_in.add_user(REP, "rep", "rep@bench.example.com")
    started = time.perf_counter()
    launched = runtime.outreach.jobs.launch_campaign(org, "Launch bench", owner_id=None)
    launch_s = time.perf_counter() - started
    enrolled = runtime.outreach.jobs.plan_job(org, launched.job.id)
    plan_s = time.perf_counter() - started
    drafted = runtime.worker.run_until_idle()
    created_s = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with runtime.services.session_factory() as session:
        cards = session.scalar(select(func.count()).where(m.Card.job_id == launched.job.id))
    print(f"launch of {LAUNCH_CONTACTS:,} contacts (template drafting):")
    print(
        f"  audience counted and job created: {launch_s:.2f} s ({launched.audience_count:,} contacts)"
    )
    print(f"  {enrolled:,} enrollments and tasks planned: {plan_s:.2f} s after the command")
    print(
        f"  {cards:,} cards drafted ({drafted:,} tasks): {created_s:.2f} s after the command (target < 20 s)"
    )
    print(f"  peak RSS of this process so far: {rss_mb:.0f} MB")

    stand_in.rate_limit_per_channel(1.0)
    runtime.poster.start()
    runtime.poster.wake()
    time.sleep(PACED_SECONDS)
    runtime.poster.stop()
    paced = len(stand_in.messages(DEFAULT_CHANNEL_ID))
    limited = len([c for c in stand_in.calls("chat.postMessage") if c.status == 429])
    print(
        f"  paced posting: {paced} card messages in {PACED_SECONDS} s at the stand-in's 1 msg/s/channel "
        f"({paced / PACED_SECONDS:.2f}/s), {limited} answers of 429 ratelimited retried after Retry-After"
    )
    stand_in.rate_limit_per_channel(None)
    drain_started = time.perf_counter()
    unpaced = build_runtime(_settings(url, slack_api, post_interval=0))
    unpaced.poster.run_until_idle()
    drain_s = time.perf_counter() - drain_started
    with runtime.services.session_factory() as session:
        unposted = session.scalar(
            select(func.count()).where(
                m.Card.job_id == launched.job.id, m.Card.slack_message_ts.is_(None)
            )
        )
        failed_posts = session.scalar(
            select(func.count()).where(
                m.JobTask.job_id == launched.job.id,
                m.JobTask.kind == "post_card",
                m.JobTask.status == "failed",
            )
        )
        job = session.get(m.Job, launched.job.id)
    posted = len(stand_in.messages(DEFAULT_CHANNEL_ID))
    print(
        f"  rest posted without the limit in {drain_s:.1f} s: {posted:,} messages for {cards:,} cards; "
        f"unposted cards {unposted}, failed posts {failed_posts} (lost: {cards - posted})"
    )
    with UnitOfWork(runtime.services.session_factory) as uow:
        recount = uow.jobs.recount(launched.job.id)
    assert job is not None
    stored = {k: getattr(job, k) for k in recount}
    print(f"  job metrics equal a recount: {stored == recount} ({stored})")


def bench_concurrent_approvals(url: str) -> None:
    """1,000 concurrent signed approve clicks on one card; count the emails Gmail received."""
    from sandbox.google import start_google_stand_in
    from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
    from tests.support.accounts import create_token, ensure_user
    from tests.support.google import follow_consent

    clicks = 1000
    slack, slack_server = start_slack_stand_in()
    google, google_server = start_google_stand_in()
    rep_email = "rep@bench.example.com"
    slack.add_user(REP, "rep", rep_email)
    org, _ = _seed(url, 1, campaign="Once bench")
    settings = _settings(url, api_base_url(slack_server), post_interval=0).model_copy(
        update={
            "GOOGLE_CLIENT_ID": SANDBOX_CLIENT_ID,
            "GOOGLE_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            **GoogleUrls(google_server.url).as_env(),
        }
    )
    runtime = build_runtime(settings)
    server = serve_in_thread(build_app(settings, runtime=runtime))
    # The app is served without its lifespan: run the worker of the clicks' deferred work.
    assert runtime.slack_worker is not None
    runtime.slack_worker.start()
    try:
        with runtime.services.session_factory() as session:
            rep_id = ensure_user(session, org, email=rep_email)
            _, token = create_token(session, org, name="bench", user_id=rep_id)
            session.commit()
        google.add_mailbox(rep_email)
        google.oauth.set_consenting_user(rep_email)
        link = httpx.get(
            f"{server.url}/api/integrations/gmail/connect",
            headers={"Authorization": f"Bearer {token}"},
        ).json()["authorization_url"]
        with httpx.Client() as browser:  # keeps the consent cookie, as the rep's browser does
            start = urlsplit(link)
            consent = browser.get(f"{server.url}{start.path}?{start.query}").headers["location"]
            callback = urlsplit(follow_consent(consent))
            connected = browser.get(f"{server.url}{callback.path}?{callback.query}")
        assert connected.status_code == 200, connected.text
        launched = runtime.outreach.jobs.launch_campaign(org, "Once bench", owner_id=rep_id)
        runtime.outreach.jobs.plan_job(org, launched.job.id)
        runtime.run_tasks_until_idle()
        with runtime.services.session_factory() as session:
            card_id, fingerprint = session.execute(
                select(m.Card.id, m.Card.draft_fingerprint).where(m.Card.job_id == launched.job.id)
            ).one()
        body = _click_body(card_id, fingerprint)

        async def storm() -> list[int]:
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:

                async def one() -> int:
                    for _ in range(3):
                        try:
                            response = await client.post(
                                f"{server.url}/slack/events",
                                content=body.encode(),
                                headers=signed_headers(body, signing_secret=SECRET),
                            )
                        except (httpx.ReadError, httpx.RemoteProtocolError):
                            # A kept-alive connection the server closed: click again (a
                            # repeated click is part of what this benchmark throws at it).
                            continue
                        return response.status_code
                    return 0

                return list(await asyncio.gather(*(one() for _ in range(clicks))))

        started = time.perf_counter()
        statuses = asyncio.run(storm())
        acked_s = time.perf_counter() - started
        # Every click's lazy work is stored before its ack; wait until the worker ran all.
        deadline = time.monotonic() + 300
        left = clicks
        while time.monotonic() < deadline:
            with runtime.services.session_factory() as session:
                left = session.scalar(select(func.count()).select_from(SlackDeferredCall)) or 0
            if not left:
                break
            time.sleep(0.5)
        handled_s = time.perf_counter() - started
        with runtime.services.session_factory() as session:
            sends = session.scalar(select(func.count()).where(m.EmailSend.card_id == card_id))
            state = session.scalar(select(m.Card.state).where(m.Card.id == card_id))
        emails = len(google.gmail.sent(rep_email))
        print(
            f"{clicks:,} concurrent signed approve clicks on one card: {statuses.count(200):,} acked "
            f"200 in {acked_s:.1f} s, all {clicks - left:,} stored clicks run by the worker in "
            f"{handled_s:.1f} s; card {state}; outbox rows {sends}; emails received by Gmail: "
            f"{emails} (must be exactly 1)"
        )
    finally:
        runtime.slack_worker.stop()
        server.stop()
        slack_server.stop()
        google_server.stop()


def main() -> None:
    """Run both Slack benchmarks on a fresh PostgreSQL database."""
    url = _fresh_database()
    stand_in, server = start_slack_stand_in()
    stand_in.add_user(REP, "rep", "rep@bench.example.com")
    slack_api = api_base_url(server)
    try:
        print(f"started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores")
        bench_concurrent_approvals(url)
        bench_launch(url, slack_api, stand_in)
    finally:
        server.stop()
