"""Claude away for an hour while 300 replies arrive: every one processed offline at once, every
one classified again by Claude once it is back, nothing done twice, nothing parked.

`python -m bench reliability_claude_outage`, or `.venv/bin/python bench/reliability_claude_outage.py`.
Issue 15's figure for scenario (d). The inbound pipeline runs as composed with an Anthropic
key: the real SDK against the Anthropic stand-in, which answers 529 overloaded for the hour;
the real Gmail client against the Gmail stand-in; PostgreSQL (a throwaway database on the
test server). A FixedClock moves a minute at a time: in each minute of the outage 5 replies
(BENCH_OUTAGE_REPLIES_PER_MINUTE) are delivered, pushed, synced and run through the pipeline,
and the inbound worker runs as its polling threads would. Then Claude answers again and the
clock goes on until every reply was classified again by Claude.

Printed: replies processed offline at once, push-to-processed latency, requests sent to the
unavailable API (the classifier's circuit breaker keeps them few), simulated minutes after
Claude's return until every reply is Claude's, parked or failed rows, replies whose actions
changed on re-classification.

The classifier's breaker counts real seconds (30 s after 5 failures in a row) while this
bench runs an hour in about a minute: before Claude's return the bench waits out what is
left of the breaker's last opening, as an hour of real outage would have.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from domain.clock import FixedClock  # noqa: E402
from sandbox.anthropic_api import ErrorReply, start_anthropic_stand_in  # noqa: E402
from storage import models as m  # noqa: E402
from storage.db import make_session_factory  # noqa: E402
from tests.e2e.test_inbound_understanding import inbound_world  # noqa: E402
from tests.support.databases import drop_postgres_database, migrated_engine  # noqa: E402
from tests.support.google import running_google_stand_in  # noqa: E402

KEY = "sk-ant-bench-outage"
FAST_MODEL = "claude-haiku-4-5"
OUTAGE_MINUTES = 60
PER_MINUTE = int(os.environ.get("BENCH_OUTAGE_REPLIES_PER_MINUTE", "5"))
LIMIT_MINUTES = 12 * 60
POSITIVE = {
    "category": "OPPORTUNITY",
    "confidence": 0.93,
    "sentiment": "positive",
    "sentiment_score": 0.8,
    "intent": "meeting_request",
    "entities": {
        "order_numbers": [],
        "property_addresses": [],
        "amounts": [],
        "dates": ["Tuesday"],
        "urgency": None,
    },
    "instructs_model": False,
}


def _breaker_seconds(errors: list[str | None]) -> float:
    found = [
        float(x.group(1))
        for e in errors
        if (x := re.search(r"not calling it for (\d+(?:\.\d+)?) s more", e or ""))
    ]
    return max(found, default=-0.5) + 0.5


def main() -> None:
    """Run an hour of outage with replies arriving, then Claude's return; print the figures."""
    for name in ("integrations", "domain", "jobs", "uvicorn.error", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    tmp = Path(tempfile.mkdtemp(prefix="bench-claude-outage-"))
    engine = migrated_engine("postgresql", tmp, suffix="_claude_outage")
    sessions = make_session_factory(engine)
    clock = FixedClock(datetime(2026, 11, 25, 15, 0, tzinfo=UTC))
    claude, claude_server = start_anthropic_stand_in(api_keys=[KEY])
    settings = {
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": claude_server.url,
        "ANTHROPIC_FAST_MODEL": FAST_MODEL,
    }
    try:
        with (
            running_google_stand_in() as google,
            inbound_world(engine, sessions, clock, google, settings=settings) as inbound,
        ):
            worker = inbound.world.runtime.inbound_worker
            claude.answer_all_with(ErrorReply.overloaded())
            print(
                f"Claude away for {OUTAGE_MINUTES} simulated min; {PER_MINUTE} replies a minute"
                f" ({OUTAGE_MINUTES * PER_MINUTE} in all), each pushed, synced and run through"
                " the pipeline",
                flush=True,
            )
            started = time.perf_counter()
            ids: list[str] = []
            latencies: list[float] = []
            at_once = 0
            for minute in range(OUTAGE_MINUTES):
                for n in range(PER_MINUTE):
                    body = f"Sure, can we do a call next Tuesday? (reply {minute}-{n})"
                    t = time.perf_counter()
                    row = inbound.deliver(inbound.reply(body))
                    latencies.append(time.perf_counter() - t)
                    ids.append(row.gmail_message_id)
                    at_once += (row.status, row.classified_by) == ("processed", "offline")
                clock.advance(minutes=1)
                worker.run_until_idle()
            outage_seconds = time.perf_counter() - started
            asked = len(claude.requests)

            def rows() -> list[m.InboundEmail]:
                with sessions() as session:
                    return list(
                        session.scalars(
                            select(m.InboundEmail).where(m.InboundEmail.gmail_message_id.in_(ids))
                        )
                    )

            during = rows()
            actions = {r.id: r.actions for r in during}
            time.sleep(_breaker_seconds([r.error for r in during]))
            claude.answer_all_with(None)
            claude.when("call next Tuesday", POSITIVE)
            back_after = 0
            claude_by_minute: list[int] = []
            while back_after < LIMIT_MINUTES:
                now_rows = rows()
                done = sum(r.classified_by == "claude" for r in now_rows)
                claude_by_minute.append(done)
                if done == len(ids):
                    break
                clock.advance(minutes=1)
                worker.run_until_idle()
                back_after += 1
            after = rows()
    finally:
        claude_server.stop()
        engine.dispose()
        drop_postgres_database(engine.url.render_as_string(hide_password=False))
    half = next((i for i, n in enumerate(claude_by_minute) if n * 2 >= len(ids)), None)
    changed = sum(1 for r in after if r.actions != actions.get(r.id))
    print(
        f"{at_once} of {len(ids)} replies processed offline at once"
        f" (push to processed p50 {statistics.median(latencies) * 1000:.0f} ms,"
        f" p99 {statistics.quantiles(latencies, n=100)[98] * 1000:.0f} ms);"
        f" {asked} requests sent to the unavailable API; {outage_seconds:.0f} s of real time"
    )
    print(
        f"after Claude's return: {sum(r.classified_by == 'claude' for r in after)} of"
        f" {len(ids)} classified again by Claude, half within {half} simulated min, all within"
        f" {back_after} min; {sum(r.status != 'processed' for r in after)} parked or failed;"
        f" {changed} replies whose actions changed (done twice); statuses"
        f" {dict(Counter(r.status for r in after))}"
    )


if __name__ == "__main__":
    main()
