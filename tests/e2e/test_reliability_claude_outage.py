"""Claude away for an hour of simulated time while replies keep coming: every reply is
processed at once by the offline model (acted on, never waiting for Claude), and once Claude
answers again every one of them is classified again by Claude, with nothing done twice and
nothing parked.

The pipeline runs as composed with an Anthropic key (the Anthropic stand-in through the real
SDK), on SQLite and PostgreSQL. The clock is a FixedClock moved a minute at a time; the
inbound worker runs after every minute, as its polling threads would. The stand-in answers
every request with 529 overloaded during the outage. The figures are printed (`pytest -s`);
`python -m bench reliability_claude_outage` runs the same at volume.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from sqlalchemy import select

from sandbox.anthropic_api import AnthropicStandIn, ErrorReply
from storage import models as m
from tests.e2e.test_inbound_claude import POSITIVE, claude, inbound
from tests.e2e.test_inbound_understanding import Inbound

__all__ = ["claude", "inbound"]

pytestmark = pytest.mark.slow

OUTAGE_MINUTES = 60
EVERY_MINUTES = 5  # a reply every 5 minutes of the outage: 12 replies
LIMIT_MINUTES = 6 * 60  # the test gives up after 6 hours of simulated time


def _breaker_seconds(error: str | None) -> float:
    """The seconds a row's error says the circuit breaker stays open (0 without one)."""
    found = re.search(r"not calling it for (\d+(?:\.\d+)?) s more", error or "")
    return float(found.group(1)) + 0.5 if found else 0.0


def _rows(inbound: Inbound, ids: list[str]) -> list[m.InboundEmail]:
    with inbound.sessions() as session:
        return list(
            session.scalars(
                select(m.InboundEmail)
                .where(m.InboundEmail.gmail_message_id.in_(ids))
                .order_by(m.InboundEmail.id)
            )
        )


# SQLite only: the pipeline's storage is tested on both databases (tests/integration), and
# the breaker's wait costs real seconds.
@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_an_hour_without_claude_processes_every_reply_offline_and_claude_classifies_all_after(
    inbound: Inbound, claude: tuple[AnthropicStandIn, str], db_kind: str
) -> None:
    stand_in = claude[0]
    stand_in.answer_all_with(ErrorReply.overloaded())
    worker = inbound.world.runtime.inbound_worker
    ids: list[str] = []
    for minute in range(OUTAGE_MINUTES):
        if minute % EVERY_MINUTES == 0:
            body = f"Sure, can we do a call next Tuesday? (reply {minute // EVERY_MINUTES})"
            row = inbound.deliver(inbound.reply(body))
            ids.append(row.gmail_message_id)
            # Processed at once, offline: acted on without waiting for Claude.
            assert (row.status, row.classified_by) == ("processed", "offline")
            assert row.reclassify_at is not None
        inbound.clock.advance(minutes=1)
        worker.run_until_idle()
    during = _rows(inbound, ids)
    actions = {row.id: row.actions for row in during}
    asked_during = len(stand_in.requests)

    stand_in.answer_all_with(None)
    stand_in.when("call next Tuesday", POSITIVE)
    # The classifier's circuit breaker counts real seconds (30 after 5 failures in a row),
    # and this test runs an hour in seconds: wait out what is left of its last opening, as
    # an hour of real outage would have.
    breaker = max((_breaker_seconds(row.error) for row in during), default=0.0)
    time.sleep(breaker)
    back_after = 0
    while back_after < LIMIT_MINUTES:
        if all(row.classified_by == "claude" for row in _rows(inbound, ids)):
            break
        inbound.clock.advance(minutes=1)
        worker.run_until_idle()
        back_after += 1
    after = _rows(inbound, ids)

    print(
        f"\nClaude away {OUTAGE_MINUTES} min ({db_kind}):"
        f" {len(ids)} replies, {Counter(r.classified_by for r in during)['offline']} processed"
        f" offline at once, {asked_during} requests to the unavailable API;"
        f" all {sum(r.classified_by == 'claude' for r in after)} classified by Claude"
        f" {back_after} min after it came back; {sum(r.status != 'processed' for r in after)}"
        " parked or failed"
    )
    assert len(ids) == OUTAGE_MINUTES // EVERY_MINUTES
    assert [(r.status, r.classified_by, r.reclassify_at) for r in after] == [
        ("processed", "claude", None)
    ] * len(ids)
    assert {r.intent for r in after} == {"meeting_request"}
    # Re-evaluated, nothing done twice: each reply's actions are those of its first pass.
    assert {r.id: r.actions for r in after} == actions
    assert back_after < LIMIT_MINUTES
    assert asked_during <= 2 * len(ids)  # the breaker spares the unavailable API
