"""Fault injection: end the process at a named point, to prove that a crash there loses nothing.

`SALESBOT_FAULT_POINTS=name[,name@n]` (read by bot/settings.py, armed by the composition
root) makes the process `os._exit(137)` the first (or n-th) time it reaches a named
point, as `kill -9` would: no `finally`, no flush, no rollback. Unset, `reach()` costs
one test of an empty dict. The crash test (tests/e2e/test_crash_recovery.py) kills a real
worker at every point and checks that a restart sends every approved card exactly once
and leaves nothing stuck.
"""

from __future__ import annotations

import os
import threading
from typing import Final

# Every point, in the order the work passes them (docs/outreach-flow.md, "Recovery").
POINTS: Final = (
    # launch → plan → draft → post
    "launch.committed",  # the pending job is stored; nothing planned yet
    "plan.claimed",  # the job is running and its planning lease taken; nothing enrolled
    "plan.chunk",  # a chunk of enrollments and draft tasks committed, planning not finished
    "task.claimed",  # tasks are `running` under a lease; nothing done yet
    "draft.committed",  # cards and their post_card tasks committed
    "post.sent",  # Slack accepted the card's message; its ts is not recorded
    "post.recorded",  # the message ts is recorded; the post_card task is still running
    # approve → send → finish
    "approve.committed",  # the card is `approved`; nothing executed
    "execute.committed",  # the card is `executing`; no outbox row yet
    "outbox.stored",  # the outbox row is committed; Gmail not called
    "gmail.accepted",  # Gmail accepted the email; the outbox row still says `sending`
    "outbox.recorded",  # the outbox row says `sent`; the card is still `executing`
    "send.finished",  # the card is `done`; its Slack message not updated
    # snooze → back (domain/outreach/snoozing.py)
    "snooze.claimed",  # due snoozed cards claimed under a lease; none posted again
    "snooze.posted",  # a snoozed card's new message is posted; not recorded, snooze not cleared
    # cadence tick (domain/outreach/cadences.py)
    "cadence.resumed",  # enrollments whose pause ended are due again; nothing claimed
    "cadence.guarded",  # the guard paused a job and queued its notice; no chunk claimed
    "cadence.chunk",  # a chunk's steps are tasks and its enrollments settled; jobs not finished
    # inbound: parsed → understood (docs/inbound.md)
    "understanding.claimed",  # parsed messages claimed under a lease; nothing recorded
    "understanding.recorded",  # their classification, links and actions are committed
    # the engagement digest (domain/digests.py)
    "digest.claimed",  # digest posts leased to this worker; nothing uploaded or posted
    "digest.uploaded",  # the chart is uploaded and its file id stored; the message not posted
    # the email_campaigns sweep (domain/email_campaigns.py)
    "email_campaigns.written",  # a chunk of campaigns' rows rewritten, not committed
    # the content calendar's due cards (domain/content_service.py)
    "content.claimed",  # due scheduled posts leased to this worker; no card posted
    "content.posted",  # Slack accepted a due card; its ts is not recorded
    # a newsletter issue's planning (domain/newsletter_service.py)
    "newsletter.claimed",  # the planning lease is taken; no outbox row yet
    "newsletter.chunk",  # a batch of rows and the cursor are committed; planning not finished
    "newsletter.cancel_final",  # a cancelled issue's final figures are stored; card not updated
)

EXIT_CODE: Final = 137  # what a shell reports for a process killed by SIGKILL

_armed: dict[str, int] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, int]:
    """Parse `name[@n],...` into point → the hit that ends the process; raise ValueError."""
    points: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, nth = part.partition("@")
        if name not in POINTS:
            raise ValueError(f"unknown fault point {name!r}; known: {', '.join(POINTS)}")
        if nth and (not nth.isdigit() or int(nth) < 1):
            raise ValueError(f"fault point {part!r}: the count after @ must be 1 or more")
        points[name] = int(nth) if nth else 1
    return points


def arm(spec: str) -> None:
    """Arm the points of a `SALESBOT_FAULT_POINTS` value (replacing any armed before)."""
    parsed = parse(spec)
    with _lock:
        _armed.clear()
        _armed.update(parsed)


def reach(name: str) -> None:
    """Mark that the work reached `name`; end the process here if that point is armed."""
    if not _armed:
        return
    with _lock:
        left = _armed.get(name)
        if left is None:
            return
        if left > 1:
            _armed[name] = left - 1
            return
    os.write(2, f"fault point {name}: exiting with {EXIT_CODE}\n".encode())
    os._exit(EXIT_CODE)
