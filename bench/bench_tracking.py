"""Tracking: what rewriting an email costs at queue time, and what a pixel or link fetch costs.

1. `HtmlTracker.track` on a short text email made HTML (3 links) and on a 20 KB HTML
   template (15 links): CPU time per email, so a 10k-contact launch's share is known.
2. The app served by uvicorn on loopback, on PostgreSQL (the database
   `salesbot_bench_tracking` is recreated each run): CONCURRENCY clients fetch pixels and
   links of TRACKED_SENDS tracked sends (the same ones again and again, so most fetches
   update an existing row, the common case), and forged tokens; the latency of each kind
   of fetch and the throughput. Every fetch must answer as the routes promise (GIF, 302,
   400), and the hits counted must equal the genuine fetches made.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from sqlalchemy import func, select

from bot.app import build_app
from domain.clock import SystemClock
from domain.mail import text_to_html
from domain.tracking import TrackClaims, TrackingPlan, TrackKind
from handlers.api.deps import Services
from handlers.api.tracking import PIXEL_GIF
from integrations.crypto import LinkSigner
from integrations.tracking import HtmlTracker, TrackingTokens
from sandbox.server import serve_in_thread
from storage import models as m
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from tests.support.accounts import create_org
from tests.support.api import make_settings

ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "salesbot_bench_tracking"
SECRET_KEY = "bench-secret-key-0123456789-abcdefghijklmnop"
BASE = "https://salesbot.example"

REWRITES = int(os.environ.get("BENCH_TRACKING_REWRITES", "2000"))
TRACKED_SENDS = 50
CONCURRENCY = int(os.environ.get("BENCH_TRACKING_CLIENTS", "8"))
FETCHES_PER_CLIENT = int(os.environ.get("BENCH_TRACKING_FETCHES", "300"))

TEXT = (
    "Hi Dana,\n\nIt has been 94 days since Pinnacle Lending last sent us an order. Our turn"
    " times in Travis County are down to 5 days: https://lonestar.example/turn-times\n\n"
    "Our fee schedule: https://lonestar.example/fees?county=travis&state=tx\n\n"
    "Book a call: https://calendar.example/maria-lopez/15min\n\nBest,\nMaria\n"
)
TEMPLATE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><style>"
    + "td{padding:4px;font-family:Arial}" * 40
    + "</style></head><body><table>"
    + "".join(
        f"<tr><td><p>Paragraph {n} of the newsletter with some words in it, and more words"
        f" to fill the line, as a real template has. {'Turn times are down to five days. ' * 30}"
        f"</p><a href='https://lonestar.example/"
        f"article/{n}?utm_source=email&amp;utm_campaign=winback'>Read more</a></td></tr>"
        for n in range(15)
    )
    + "<tr><td><a href='mailto:maria@lonestar.example.com'>Write to us</a></td></tr>"
    + "</table></body></html>"
)


def _rewrite_costs() -> None:
    tracker = HtmlTracker(
        TrackingTokens(LinkSigner(SECRET_KEY, purpose="track")), public_base_url=BASE
    )
    plan = TrackingPlan(opens=True, clicks=True)
    expires = datetime(2027, 12, 1, tzinfo=UTC)
    for label, html in (
        ("text email (3 links)", text_to_html(TEXT)),
        ("20 KB HTML (15 links)", TEMPLATE),
    ):
        rounds = []
        for _ in range(5):
            started = time.thread_time()
            for n in range(REWRITES // 5):
                tracker.track(html, org_id=1, send_id=n + 1, plan=plan, expires_at=expires)
            rounds.append((time.thread_time() - started) / (REWRITES // 5) * 1e6)
        median = statistics.median(rounds)
        print(
            f"rewrite {label}, {len(html)} chars: median {median:.0f} µs per email"
            f" (a 10k launch spends {median * 10_000 / 1e6:.1f} s)"
        )


def _database_url() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{DB_NAME}"


def _seed(url: str) -> tuple[int, list[int]]:
    sessions = make_session_factory(make_engine(url))
    sent_at = SystemClock().now() - timedelta(hours=1)
    with sessions() as session:
        org = create_org(session, slug="bench", name="Bench Appraisals")
        ids = []
        for n in range(TRACKED_SENDS):
            row = m.EmailSend(
                org_id=org.id,
                message_id=f"<bench-{n}@salesbot.example>",
                to_email=f"lo{n}@lender.example.com",
                subject="Turn times",
                status="sent",
                tracked=True,
                sent_at=sent_at,
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
        session.commit()
    return org.id, ids


def _fetch_costs() -> None:
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    url = _database_url()
    upgrade(url)
    org_id, send_ids = _seed(url)
    engine = make_engine(url)
    services = Services(
        engine=engine, session_factory=make_session_factory(engine), clock=SystemClock()
    )
    settings = make_settings(url, SALESBOT_SECRET_KEY=SECRET_KEY)
    app = build_app(settings, services=services, start_background=False)
    server = serve_in_thread(app)
    tokens = TrackingTokens(LinkSigner(SECRET_KEY, purpose="track"))
    forged = TrackingTokens(LinkSigner("not-the-key-0123456789-abcdefghijklmnop", purpose="track"))
    expires = datetime(2027, 12, 1, tzinfo=UTC)
    link = "https://lonestar.example/turn-times?utm_source=email"
    pixels = [
        f"/t/o/{tokens.sign(TrackClaims(org_id, s, TrackKind.OPEN, expires))}.gif" for s in send_ids
    ]
    clicks = [
        "/t/c/"
        + tokens.sign(TrackClaims(org_id, s, TrackKind.CLICK, expires, link_index=0, url=link))
        for s in send_ids
    ]
    bad = "/t/c/" + forged.sign(
        TrackClaims(org_id, send_ids[0], TrackKind.CLICK, expires, link_index=0, url=link)
    )
    agent = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36"}
    latencies: dict[str, list[float]] = {"pixel": [], "click": [], "forged click": []}
    wrong: list[str] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        mine: dict[str, list[float]] = {k: [] for k in latencies}
        with httpx.Client(base_url=server.url, headers=agent) as http:
            for n in range(FETCHES_PER_CLIENT):
                kind = ("pixel", "click", "pixel", "forged click")[n % 4]
                target = {"pixel": pixels, "click": clicks}.get(kind, [bad])
                path = target[(number * 7 + n) % len(target)]
                started = time.perf_counter()
                answer = http.get(path, follow_redirects=False)
                mine[kind].append((time.perf_counter() - started) * 1000)
                expected = {
                    "pixel": (200, PIXEL_GIF),
                    "click": (302, b""),
                    "forged click": (400, None),
                }[kind]
                if answer.status_code != expected[0] or (
                    expected[1] is not None and answer.content != expected[1]
                ):
                    wrong.append(f"{kind}: {answer.status_code}")
        with lock:
            for kind, values in mine.items():
                latencies[kind].extend(values)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    server.stop()
    total = CONCURRENCY * FETCHES_PER_CLIENT
    genuine = len(latencies["pixel"]) + len(latencies["click"])
    with make_session_factory(engine)() as session:
        counted = int(session.scalar(select(func.sum(m.EmailTrackingEvent.hits))) or 0)
        rows = int(session.scalar(select(func.count()).select_from(m.EmailTrackingEvent)) or 0)
    print(
        f"{total} fetches by {CONCURRENCY} clients over HTTP on PostgreSQL in {elapsed:.1f} s:"
        f" {total / elapsed:.0f} fetches/s"
    )
    for kind, values in latencies.items():
        ordered = sorted(values)
        p95 = ordered[int(len(ordered) * 0.95) - 1]
        print(
            f"  {kind}: median {statistics.median(values):.1f} ms, p95 {p95:.1f} ms ({len(values)} fetches)"
        )
    print(
        f"  hits counted {counted} of {genuine} genuine fetches, on {rows} rows; wrong answers: {len(wrong)}"
    )
    assert not wrong, wrong[:5]
    assert counted == genuine


def main() -> None:
    """Print the rewriting cost and the fetch latencies."""
    _rewrite_costs()
    _fetch_costs()
