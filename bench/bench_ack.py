"""Ack latency of signed approve clicks, 50 at once (issue: Slack cards), on PostgreSQL.

Target: p99 < 100 ms on this 2-core machine, and Salesbot/bare Bolt ≤ 1.5× in the same run.

Salesbot runs as deployed (see README, "Deploying"): `salesbot web --processes 2` (uvicorn
with two worker processes) and `salesbot worker` (drafting, posting, sending, and the work
each click asks for) in processes of their own. The baseline is a bare Bolt app that
checks the signature and acks, served by the same FastAPI mount with the same number of
processes. The Slack stand-in also runs in its own process.

The load: 50 kept-alive connections per server; each round signs 50 clicks on 50
different cards and writes them at once (bench/loadgen.py, raw sockets, so the
generator's own cost stays out of the figures); rounds alternate between the two servers
with a pause between them. Every click must be acted on (checked at the end: the card
leaves review; with no Gmail mailbox connected in this bench the approval ends with the
card blocked and "connect Gmail" on it, after the same lookups and updates as a send):
the work after the ack is real, not skipped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from sqlalchemy import func, select

from bench.bench_slack import (
    SECRET,
    _click_body,
    _fresh_database,
    _percentile,
    _seed,
    _settings,
    _spawn,
)
from bench.loadgen import Connections, http_request
from bot.app import build_runtime
from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from tests.support.slack import signed_headers

CONCURRENCY = 50
ROUNDS = 20
WARMUP_ROUNDS = 3
PROCESSES = int(os.environ.get("BENCH_ACK_PROCESSES", "2"))


def _signed(port: int, bodies: list[str]) -> list[bytes]:
    return [
        http_request(
            "127.0.0.1",
            port,
            "/slack/events",
            body.encode(),
            signed_headers(body, signing_secret=SECRET),
        )
        for body in bodies
    ]


def _load(
    ours: int, bare: int, rounds: list[list[str]], warmup: list[str]
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"salesbot": [], "bare bolt": []}

    async def run() -> None:
        pools = {"salesbot": Connections("127.0.0.1", ours, CONCURRENCY)}
        pools["bare bolt"] = Connections("127.0.0.1", bare, CONCURRENCY)
        ports = {"salesbot": ours, "bare bolt": bare}
        for pool in pools.values():
            await pool.open()
        try:
            for _ in range(WARMUP_ROUNDS):
                for name, pool in pools.items():
                    await pool.burst(_signed(ports[name], warmup))
                    await asyncio.sleep(0.3)
            for chunk in rounds:
                for name, pool in pools.items():
                    answers = await pool.burst(_signed(ports[name], chunk))
                    bad = [a for a in answers if a.status != 200]
                    if bad:
                        raise RuntimeError(
                            f"{name}: click answered {bad[0].status}: {bad[0].body[:200]!r}"
                        )
                    results[name] += [a.millis for a in answers]
                    # Let the work each round started settle before the next burst, as
                    # clicks by people come in bursts with gaps, not as a flood.
                    await asyncio.sleep(1.0)
        finally:
            for pool in pools.values():
                await pool.close()

    asyncio.run(run())
    return results


def main() -> None:
    """Print ack latency percentiles of Salesbot and of a bare Bolt app."""
    url = _fresh_database()
    total = CONCURRENCY * ROUNDS
    python = sys.executable
    slack_port, ours_port, bare_port = free_port(), free_port(), free_port()
    slack_api = f"http://127.0.0.1:{slack_port}/api/"
    processes = [
        _spawn(
            [python, "-m", "sandbox", "slack", "--port", str(slack_port)],
            {},
            f"{slack_api}api.test",
        )
    ]
    cards: list[tuple[int, str | None]] = []
    sent = 0
    try:
        org, _ = _seed(url, total, campaign="Ack bench")
        settings = _settings(url, slack_api, post_interval=0)
        runtime = build_runtime(settings)
        launched = runtime.outreach.jobs.launch_campaign(org, "Ack bench", owner_id=None)
        runtime.outreach.jobs.plan_job(org, launched.job.id)
        runtime.run_tasks_until_idle()
        with runtime.services.session_factory() as session:
            cards = [
                (r.id, r.draft_fingerprint)
                for r in session.execute(
                    select(m.Card.id, m.Card.draft_fingerprint)
                    .where(m.Card.job_id == launched.job.id)
                    .order_by(m.Card.id)
                )
            ]
        bodies = [_click_body(card_id, fp) for card_id, fp in cards[:total]]
        env = {
            "DATABASE_URL": url,
            "SALESBOT_SECRET_KEY": settings.SALESBOT_SECRET_KEY,
            "SLACK_API_URL": slack_api,
            "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_POST_INTERVAL_SECONDS": "0",
            "LOG_LEVEL": "WARNING",
        }
        salesbot = [python, "-c", "from bot.cli import main; main()"]
        processes.append(
            _spawn(
                [*salesbot, "web", "--port", str(ours_port), "--processes", str(PROCESSES)],
                env,
                f"http://127.0.0.1:{ours_port}/healthz",
            )
        )
        processes.append(_spawn([*salesbot, "worker"], env, None))
        processes.append(
            _spawn(
                [
                    python,
                    "-m",
                    "bench.bare_bolt",
                    "--port",
                    str(bare_port),
                    "--slack-api",
                    slack_api,
                    "--token",
                    DEFAULT_BOT_TOKEN,
                    "--processes",
                    str(PROCESSES),
                ],
                {},
                f"http://127.0.0.1:{bare_port}/docs",
            )
        )
        rounds = [bodies[n * CONCURRENCY : (n + 1) * CONCURRENCY] for n in range(ROUNDS)]
        results = _load(ours_port, bare_port, rounds, [_click_body(0, None)] * CONCURRENCY)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with runtime.services.session_factory() as session:
                sent = (
                    session.scalar(
                        select(func.count()).where(
                            m.Card.job_id == launched.job.id, m.Card.state != "in_review"
                        )
                    )
                    or 0
                )
            if sent >= total:
                break
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is not None:
                print(
                    f"  note: {' '.join(map(str, process.args[:5]))} had exited with {process.returncode}"
                )
            process.terminate()
            process.wait(timeout=30)
    print(
        f"ack latency of signed approve clicks, {ROUNDS} bursts of {CONCURRENCY} at once (ms); "
        f"Salesbot: `salesbot web --processes {PROCESSES}` + `salesbot worker` on PostgreSQL; "
        f"bare Bolt: {PROCESSES} processes; load {os.getloadavg()[0]:.2f}:"
    )
    for name, values in results.items():
        print(
            f"  {name:>10}: p50 {_percentile(values, 50):6.1f}  p95 {_percentile(values, 95):6.1f}"
            f"  p99 {_percentile(values, 99):6.1f}  max {max(values):6.1f}  (n={len(values)})"
        )
    p99 = _percentile(results["salesbot"], 99)
    print(f"  salesbot p99 {p99:.1f} ms: {'PASS' if p99 < 100 else 'FAIL'} (< 100 ms)")
    for pct in (50, 95, 99):
        ratio = _percentile(results["salesbot"], pct) / _percentile(results["bare bolt"], pct)
        print(f"  ratio salesbot/bare at p{pct}: {ratio:.2f}× (goal ≤ 1.5×)")
    print(f"  cards acted on after the clicks (the work after the acks): {sent} of {total}")
