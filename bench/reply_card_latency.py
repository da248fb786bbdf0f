"""Reply cards: from a reply's Gmail push to its card posted in Slack (issue 12's figure).

`python -m bench reply_card_latency` (part of `make bench`). Target: p50 under 2 s and p99
under 5 s with 200 replies arriving within a minute, apart from Slack's pacing of
1 message/s/channel; measured with the pacing and without it, and both are printed.

Everything is real but Slack and Google: a campaign is launched by one rep, drafted,
approved and its 200 emails sent through the outbox into the Gmail stand-in
(bench/reply_world.py); Salesbot then runs as deployed, in processes of its own started
from the command line (`salesbot serve`, or `salesbot web` + `salesbot worker`), on
PostgreSQL, with the offline classifier (no Anthropic key) and template drafts. This
process serves the Slack and Google stand-ins and plays the contacts and Pub/Sub: it
delivers 200 replies (hand-labelled texts of the categories that make a drafted reply
card, a third with the quoted campaign email below) into the rep's mailbox at random
times within 60 s, each followed by its Pub/Sub push, as Gmail announces each change.

Per reply, the time runs from the moment its push is sent to the moment the Slack
stand-in records the chat.postMessage of its card (both clocks are this process's). One
reply is sent and waited for before the clock runs: it warms what a running server has
warm (the offline model is trained at the first classification, about 5 s; its figure is
printed on its own line). The medians of the stages come from the rows' timestamps: push
→ message fetched and stored (sync), → understood (classified, linked, card made), →
draft task started (a worker took it), → drafted, → post task started, → posted.

Scenarios, each on a fresh database:
(a) `salesbot serve` with Slack's pacing as configured by default
    (SLACK_POST_INTERVAL_SECONDS 1.1 s per channel; the stand-in refuses a second message
    within a second in one channel with 429, as Slack does). Every card of one rep's
    campaign goes to that rep's DM, one channel: 200 cards in a minute queue behind the
    pacing, so this figure is the pacing's.
(b) `salesbot serve`, pacing measured out (SLACK_POST_INTERVAL_SECONDS=0, the stand-in's
    limit off): the pipeline's own latency, the figure the targets apply to.
(c) `salesbot web --processes 2` + `salesbot worker` (the deployment the README gives for
    real credentials), pacing measured out as in (b).
`BENCH_REPLY_CARD_SCENARIOS=b,c` runs some of them; `BENCH_REPLY_CARD_REPLIES` changes 200.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bench.reply_world import (
    REP_EMAIL,
    Campaign,
    Pushes,
    Salesbot,
    Send,
    StandIns,
    fresh_database,
    labelled_replies,
    launch_campaign,
    percentile,
    salesbot_env,
    tree_cpu_seconds,
)
from storage import models as m
from storage.db import make_engine, make_session_factory
from tests.support.google import make_email

DATABASE = "salesbot_bench_reply_cards"
REPLIES = int(os.environ.get("BENCH_REPLY_CARD_REPLIES", "200"))
ARRIVAL_SECONDS = 60.0
PUSH_THREADS = 8
TIMEOUT_SECONDS = 900.0
TARGET_P50 = 2.0
TARGET_P99 = 5.0
# The categories (and intents) whose replies make a drafted reply card today.
REPLY_CARD_TEXTS: dict[str, set[str] | None] = {
    "OPPORTUNITY": {"interested", "info_request", "not_interested", "not_now"},
    "STATUS": None,
    "SCHEDULING": None,
    "INFORMATION": None,
}


@dataclass(frozen=True)
class Scenario:
    """One way of running Salesbot, with or without Slack's pacing."""

    key: str
    title: str
    mode: str
    post_interval: str | None  # None: the default setting
    slack_rate_limit: bool
    paced: bool


SCENARIOS = (
    Scenario(
        "a",
        "salesbot serve, Slack pacing as configured by default (1.1 s between messages of a "
        "channel; the stand-in 429s a second message within 1 s); one rep, one DM channel",
        "serve",
        None,
        slack_rate_limit=True,
        paced=True,
    ),
    Scenario(
        "b",
        "salesbot serve, pacing measured out (SLACK_POST_INTERVAL_SECONDS=0, no stand-in limit)",
        "serve",
        "0",
        slack_rate_limit=False,
        paced=False,
    ),
    Scenario(
        "c",
        "salesbot web --processes 2 + salesbot worker, pacing measured out as in (b)",
        "web+worker",
        "0",
        slack_rate_limit=False,
        paced=False,
    ),
)


@dataclass(frozen=True)
class Reply:
    """One contact's reply, and when it arrives (seconds after the first)."""

    send: Send
    raw: bytes
    offset: float


def build_replies(sends: list[Send], *, seed: int = 12) -> list[Reply]:
    """One reply per send, labelled texts in turn, at random times within the minute."""
    texts = labelled_replies(REPLY_CARD_TEXTS)
    rng = random.Random(seed)
    rng.shuffle(texts)
    offsets = sorted(rng.uniform(0, ARRIVAL_SECONDS) for _ in sends)
    replies = []
    for n, (send, offset) in enumerate(zip(sends, offsets, strict=True)):
        body = str(texts[n % len(texts)]["body"])
        if n % 3 == 0:
            quoted = "\n".join(f"> {line}" for line in send.body.splitlines())
            body = f"{body}\n\nOn Tue, Maria Lopez <{REP_EMAIL}> wrote:\n{quoted}\n"
        raw = make_email(
            sender=f"{send.first_name} Whitfield <{send.to_email}>",
            to=REP_EMAIL,
            subject=f"Re: {send.subject}",
            body=body,
            message_id=f"<reply-{n}-{seed}@{send.to_email.split('@')[1]}>",
            in_reply_to=send.message_id,
            references=[send.message_id],
        )
        replies.append(Reply(send, raw, offset))
    return replies


def arrive(pushes: Pushes, replies: list[Reply]) -> float:
    """Deliver and push every reply at its time; return how long the arrivals took."""
    started = time.monotonic()
    with ThreadPoolExecutor(PUSH_THREADS) as pool:
        for reply in replies:
            delay = started + reply.offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pushes.deliver_and_push(reply.raw, pool)
    return time.monotonic() - started


def _progress(sessions: Callable[[], Any], account_id: int) -> dict[str, int]:
    """Counts that tell whether every reply went all the way."""
    e, c, t = m.InboundEmail, m.Card, m.JobTask
    with sessions() as session:
        return {
            "understood": session.scalar(
                select(func.count())
                .select_from(e)
                .where(e.gmail_account_id == account_id, e.status.in_(("processed", "failed")))
            )
            or 0,
            "cards": session.scalar(
                select(func.count()).select_from(c).where(c.inbound_email_id.is_not(None))
            )
            or 0,
            "posted": session.scalar(
                select(func.count())
                .select_from(c)
                .where(c.inbound_email_id.is_not(None), c.slack_message_ts.is_not(None))
            )
            or 0,
            "open_tasks": session.scalar(
                select(func.count())
                .select_from(t)
                .where(
                    t.kind.in_(("draft_reply", "post_card")), t.status.in_(("pending", "running"))
                )
            )
            or 0,
        }


def wait_until_done(sessions: Callable[[], Any], account_id: int, replies: int) -> dict[str, int]:
    """Wait until every reply is understood and every card it made is posted."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    counts = _progress(sessions, account_id)
    while time.monotonic() < deadline:
        counts = _progress(sessions, account_id)
        if (
            counts["understood"] >= replies
            and counts["posted"] == counts["cards"]
            and not counts["open_tasks"]
        ):
            return counts
        time.sleep(0.25)
    raise RuntimeError(f"not done after {TIMEOUT_SECONDS:.0f} s: {counts}")


@dataclass(frozen=True)
class CardTimes:
    """When each stage of one reply's way to its card happened (time.time seconds)."""

    gmail_id: str
    card_type: str
    fetched: float
    understood: float
    draft_started: float | None
    drafted: float | None
    post_started: float | None
    posted: float


def _ts(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def card_times(sessions: Callable[[], Any], stand_ins: StandIns) -> list[CardTimes]:
    """Read the stages of every reply card from the rows and the Slack stand-in."""
    posted = {
        (str(call.response.get("channel")), str(call.response.get("ts"))): call.at
        for call in stand_ins.slack.calls("chat.postMessage")
        if call.ok
    }
    c, e, t = m.Card, m.InboundEmail, m.JobTask
    with sessions() as session:
        rows = session.execute(
            select(
                c.id,
                c.type,
                c.slack_channel_id,
                c.slack_message_ts,
                e.gmail_message_id,
                e.created_at,
                e.processed_at,
            ).join(e, e.id == c.inbound_email_id)
        ).all()
        tasks: dict[tuple[str, int], m.JobTask] = {
            (task.kind, int(task.input["card_id"])): task
            for task in session.scalars(select(t).where(t.kind.in_(("draft_reply", "post_card"))))
            if "card_id" in task.input
        }
    times = []
    for card_id, card_type, channel, ts, gmail_id, fetched, understood in rows:
        draft = tasks.get(("draft_reply", card_id))
        post = tasks.get(("post_card", card_id))
        times.append(
            CardTimes(
                gmail_id=str(gmail_id),
                card_type=str(card_type),
                fetched=fetched.timestamp(),
                understood=understood.timestamp(),
                draft_started=_ts(draft.started_at) if draft else None,
                drafted=_ts(draft.finished_at) if draft else None,
                post_started=_ts(post.started_at) if post else None,
                posted=posted[(str(channel), str(ts))],
            )
        )
    return times


def _stage(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "-"
    return f"{statistics.median(found) * 1000:.0f} ms"


def _gap(a: float | None, b: float | None) -> float | None:
    return b - a if a is not None and b is not None else None


def report(
    scenario: Scenario,
    pushes: Pushes,
    times: list[CardTimes],
    *,
    warm_gmail_id: str,
    arrivals: float,
    replies: int,
    rate_limited: int,
) -> None:
    """Print the figures of one scenario."""
    warm = next(x for x in times if x.gmail_id == warm_gmail_id)
    timed = [x for x in times if x.gmail_id != warm_gmail_id]
    latencies = [x.posted - pushes.pushed_at[x.gmail_id] for x in timed]
    kinds: dict[str, int] = {}
    for x in timed:
        kinds[x.card_type] = kinds.get(x.card_type, 0) + 1
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    print(f"({scenario.key}) {scenario.title}")
    print(
        f"    {replies} replies pushed over {arrivals:.1f} s; {len(timed)} cards posted "
        f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
        f"{replies - len(timed)} replies made no card; pushes refused {len(pushes.refused)}"
        f"; chat.postMessage answered 429: {rate_limited}"
    )
    verdict = (
        "pacing-bound: the targets apply to the figure without pacing"
        if scenario.paced
        else f"target p50 < {TARGET_P50:.0f} s: {'met' if p50 < TARGET_P50 else 'NOT met'}, "
        f"p99 < {TARGET_P99:.0f} s: {'met' if p99 < TARGET_P99 else 'NOT met'}"
    )
    print(
        f"    push → card posted: p50 {p50:.2f} s, p95 {p95:.2f} s, p99 {p99:.2f} s, "
        f"max {max(latencies):.2f} s ({verdict})"
    )
    print(
        "    stage medians: push → fetched "
        + _stage([x.fetched - pushes.pushed_at[x.gmail_id] for x in timed])
        + ", → understood "
        + _stage([x.understood - x.fetched for x in timed])
        + ", → draft started "
        + _stage([_gap(x.understood, x.draft_started) for x in timed])
        + ", → drafted "
        + _stage([_gap(x.draft_started, x.drafted) for x in timed])
        + ", → post started "
        + _stage([_gap(x.drafted or x.understood, x.post_started) for x in timed])
        + ", → posted "
        + _stage([_gap(x.post_started, x.posted) for x in timed])
    )
    slowest = sorted(timed, key=lambda x: x.posted - pushes.pushed_at[x.gmail_id])[-3:]
    for x in reversed(slowest):
        pushed = pushes.pushed_at[x.gmail_id]
        print(
            f"    slow: {x.posted - pushed:.2f} s = fetched +{x.fetched - pushed:.2f}, "
            f"understood +{x.understood - pushed:.2f}, draft started "
            f"+{(x.draft_started or pushed) - pushed:.2f}, drafted "
            f"+{(x.drafted or pushed) - pushed:.2f}, post started "
            f"+{(x.post_started or pushed) - pushed:.2f}"
        )
    print(
        f"    the warm-up reply before the clock (first classification trains the offline "
        f"model): {warm.posted - pushes.pushed_at[warm.gmail_id]:.2f} s"
    )


def run(scenario: Scenario) -> None:
    """Run one scenario on a fresh database and print its figures."""
    url = fresh_database(DATABASE)
    stand_ins = StandIns()
    salesbot: Salesbot | None = None
    engine = make_engine(url, pool_size=2)
    sessions = make_session_factory(engine)
    try:
        campaign: Campaign = launch_campaign(url, stand_ins, REPLIES + 1)
        if scenario.slack_rate_limit:
            stand_ins.slack.rate_limit_per_channel(1.0)
        extra = (
            {"SLACK_POST_INTERVAL_SECONDS": scenario.post_interval}
            if scenario.post_interval is not None
            else {}
        )
        salesbot = Salesbot(scenario.mode, salesbot_env(url, stand_ins, **extra))
        replies = build_replies(campaign.sends)
        warm, timed = replies[-1], replies[:-1]
        pushes = Pushes(stand_ins, salesbot.url)
        warm_id = pushes.deliver_and_push(warm.raw)
        wait_until_done(sessions, campaign.account_id, 1)
        cpu, load = tree_cpu_seconds(salesbot.pids), os.getloadavg()[0]
        started = time.monotonic()
        arrivals = arrive(pushes, timed)
        wait_until_done(sessions, campaign.account_id, len(replies))
        elapsed = time.monotonic() - started
        cpu = tree_cpu_seconds(salesbot.pids) - cpu
        pushes.close()
        rate_limited = sum(
            1 for call in stand_ins.slack.calls("chat.postMessage") if call.status == 429
        )
        report(
            scenario,
            pushes,
            card_times(sessions, stand_ins),
            warm_gmail_id=warm_id,
            arrivals=arrivals,
            replies=len(timed),
            rate_limited=rate_limited,
        )
        print(
            f"    Salesbot's processes used {cpu:.1f} CPU s in the {elapsed:.0f} s from the first "
            f"push to the last card ({cpu / len(timed) * 1000:.0f} ms a reply; PostgreSQL's "
            f"not counted); machine load average {load:.1f} at the first push, "
            f"{os.getloadavg()[0]:.1f} at the last card (other work on the machine slows "
            "every stage)"
        )
    finally:
        if salesbot is not None:
            salesbot.stop()
        stand_ins.stop()
        engine.dispose()


def main() -> None:
    """Run the scenarios (BENCH_REPLY_CARD_SCENARIOS, default all) and print their figures."""
    wanted = os.environ.get("BENCH_REPLY_CARD_SCENARIOS", "a,b,c").split(",")
    print(
        f"reply cards, push → card posted in Slack: {REPLIES} replies within "
        f"{ARRIVAL_SECONDS:.0f} s to the emails of one launched campaign (one rep), offline "
        f"classifier, template drafts, PostgreSQL, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )
    for scenario in SCENARIOS:
        if scenario.key in wanted:
            run(scenario)


if __name__ == "__main__":
    main()
