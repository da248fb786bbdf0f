"""1,000 concurrent "Send reply" clicks on one reply card: exactly one email, in the thread.

`python -m bench send_reply_race` (part of `make bench`). Issue 12's figure: reply cards go
through the same state machine, compare-and-set and fingerprint binding as outreach cards,
so 1,000 concurrent clicks of Send reply (the Approve action) send once.

Salesbot runs as the README deploys it with real credentials: `salesbot web --processes 2`
(which verifies, stores and acks each click) and `salesbot worker` (which runs the stored
clicks), on PostgreSQL, with the Slack and Google stand-ins served by this process
(bench/reply_world.py). A campaign is launched and its email sent; the contact's reply is
delivered to the rep's Gmail and pushed; the pipeline makes its reply card, drafts it and
posts it to the rep's DM. The Send reply button's value is read from that message, and
4 processes of 50 threads each POST 1,000 signed clicks of it at once (each its own
action_ts, as Slack sends them). Then the clicks are counted: acked, accepted (the one
that approved the card) and refused (the clicker told why, in a message only they see);
and the Gmail stand-in's sent mail: exactly one answer, in the contact's Gmail thread,
In-Reply-To the reply and References the campaign email and the reply.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select

from bench.reply_world import (
    REP_EMAIL,
    REP_SLACK_ID,
    SIGNING_SECRET,
    Pushes,
    Salesbot,
    StandIns,
    fresh_database,
    labelled_replies,
    launch_campaign,
    salesbot_env,
)
from handlers.slack.ids import ActionId
from sandbox.slack_api import DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_engine, make_session_factory
from storage.models import SlackDeferredCall
from tests.support.google import make_email
from tests.support.slack import signed_headers

DATABASE = "salesbot_bench_send_reply_race"
CLICKS = int(os.environ.get("BENCH_SEND_REPLY_CLICKS", "1000"))
CLICK_PROCESSES = 4
THREADS_PER_PROCESS = 50
TIMEOUT_SECONDS = 600.0
REPLY_MESSAGE_ID = "<race-reply-1@lender0.example>"


def click_body(value: str, *, channel: str, ts: str, n: int) -> str:
    """The form body Slack posts when the rep clicks Send reply on the card's message."""
    payload = {
        "type": "block_actions",
        "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox"},
        "user": {"id": REP_SLACK_ID, "username": "maria", "team_id": DEFAULT_TEAM_ID},
        "api_app_id": "A0SANDBOXAPP",
        "token": "deprecated",
        "trigger_id": f"{n}.{n}.race",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "directmessage"},
        "actions": [
            {
                "type": "button",
                "action_id": ActionId.APPROVE.value,
                "block_id": "card_actions",
                "value": value,
                "action_ts": f"{time.time():.6f}{n:04d}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def click_all(
    app_url: str, bodies: list[str], start_at: float
) -> tuple[list[tuple[int, float]], float]:
    """POST the signed clicks from THREADS_PER_PROCESS threads, all starting at `start_at`.

    Runs in a process of its own; returns (status, seconds) per click (status 0: no answer)
    and when the last answer came (time.time()).
    """
    requests = [(body, signed_headers(body, signing_secret=SIGNING_SECRET)) for body in bodies]
    limits = httpx.Limits(max_connections=THREADS_PER_PROCESS)
    with httpx.Client(base_url=app_url, timeout=60, limits=limits) as client:

        def one(request: tuple[str, dict[str, str]]) -> tuple[int, float]:
            body, headers = request
            started = time.perf_counter()
            try:
                answer = client.post("/slack/events", content=body.encode(), headers=headers)
            except httpx.HTTPError:
                return 0, time.perf_counter() - started
            return answer.status_code, time.perf_counter() - started

        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        with ThreadPoolExecutor(THREADS_PER_PROCESS) as pool:
            answers = list(pool.map(one, requests))
        return answers, time.time()


def _ready(_: int) -> int:
    return os.getpid()


def _wait(what: str, check: Any) -> Any:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {TIMEOUT_SECONDS:.0f} s waiting for {what}")


def _send_reply_button(message: Any) -> str:
    for block in message.blocks or []:
        for element in block.get("elements", []) or []:
            if element.get("action_id") == ActionId.APPROVE.value:
                return str(element["value"])
    raise RuntimeError("the reply card's message has no Send reply button")


def main() -> None:
    """Run the race and print its figures."""
    url = fresh_database(DATABASE)
    stand_ins = StandIns()
    engine = make_engine(url, pool_size=2)
    sessions = make_session_factory(engine)
    salesbot: Salesbot | None = None
    try:
        campaign = launch_campaign(url, stand_ins, 1)
        (send,) = campaign.sends
        salesbot = Salesbot("web+worker", salesbot_env(url, stand_ins))
        text = labelled_replies({"OPPORTUNITY": {"info_request"}})[0]
        reply = make_email(
            sender=f"{send.first_name} Whitfield <{send.to_email}>",
            to=REP_EMAIL,
            subject=f"Re: {send.subject}",
            body=str(text["body"]),
            message_id=REPLY_MESSAGE_ID,
            in_reply_to=send.message_id,
            references=[send.message_id],
        )
        pushes = Pushes(stand_ins, salesbot.url)
        pushes.deliver_and_push(reply)
        pushes.close()

        def posted_card() -> m.Card | None:
            with sessions() as session:
                return session.scalars(
                    select(m.Card).where(
                        m.Card.inbound_email_id.is_not(None), m.Card.slack_message_ts.is_not(None)
                    )
                ).one_or_none()

        card = _wait("the reply card posted in the rep's DM", posted_card)
        channel, ts = str(card.slack_channel_id), str(card.slack_message_ts)
        message = next(x for x in stand_ins.slack.messages(channel) if x.ts == ts)
        value = _send_reply_button(message)
        sent_before = len(stand_ins.google.gmail.sent(REP_EMAIL))
        bodies = [click_body(value, channel=channel, ts=ts, n=n) for n in range(CLICKS)]
        shares = [bodies[k::CLICK_PROCESSES] for k in range(CLICK_PROCESSES)]
        context = multiprocessing.get_context("spawn")
        with context.Pool(CLICK_PROCESSES) as pool:
            # Started, and this module imported in each (seconds), before the clicks' time.
            pool.map(_ready, range(CLICK_PROCESSES))
            start_at = time.time() + 1.0
            done = pool.starmap(click_all, [(salesbot.url, share, start_at) for share in shares])
        results = [answer for answers, _ in done for answer in answers]
        acked_s = max(last for _, last in done) - start_at

        def settled() -> bool:
            with sessions() as session:
                waiting = session.scalar(select(func.count()).select_from(SlackDeferredCall))
                sending = session.scalar(
                    select(func.count())
                    .select_from(m.EmailSend)
                    .where(m.EmailSend.status.in_(("queued", "sending")))
                )
            return not waiting and not sending

        _wait("every click run and the outbox idle", settled)
        handled_s = time.time() - start_at
        with sessions() as session:
            state = session.scalar(select(m.Card.state).where(m.Card.id == card.id))
            outbox_rows = session.scalar(
                select(func.count()).select_from(m.EmailSend).where(m.EmailSend.card_id == card.id)
            )
        answers = stand_ins.google.gmail.sent(REP_EMAIL)[sent_before:]
        refusals = Counter(
            str(call.params.get("text"))
            for call in stand_ins.slack.calls("chat.postEphemeral")
            if call.ok
        )
        statuses = Counter(status for status, _ in results)
        acked = statuses.get(200, 0)
        refused = sum(refusals.values())
        latencies = sorted(seconds for status, seconds in results if status == 200)
        print(
            f"{CLICKS:,} concurrent signed Send reply clicks on one reply card from "
            f"{CLICK_PROCESSES} processes × {THREADS_PER_PROCESS} threads against salesbot web "
            f"--processes 2 + salesbot worker (PostgreSQL, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}):"
        )
        print(
            f"  clicks {CLICKS:,}; acked 200: {acked:,} in {acked_s:.1f} s (ack p50 "
            f"{latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms)"
            f"; other answers {dict((k, v) for k, v in statuses.items() if k != 200)}"
        )
        print(
            f"  accepted (approved the card): {acked - refused:,}; refused, the clicker told "
            f"why: {refused:,} {dict(refusals.most_common(3))}; all run by the worker "
            f"{handled_s:.1f} s after the first click"
        )
        print(
            f"  card {state}; outbox rows for it {outbox_rows}; emails received by Gmail: "
            f"{len(answers)} (must be exactly 1)"
        )
        for answer in answers:
            headers = answer.message
            in_thread = (
                answer.thread_id == send.thread_id
                and headers["In-Reply-To"] == REPLY_MESSAGE_ID
                and str(headers["References"]).split() == [send.message_id, REPLY_MESSAGE_ID]
            )
            print(
                f"  the email: threadId {answer.thread_id} (the campaign email's "
                f"{send.thread_id}), In-Reply-To {headers['In-Reply-To']}, References "
                f"{' '.join(str(headers['References']).split())}: {'in the right thread' if in_thread else 'WRONG'}"
            )
        ok = len(answers) == 1 and acked - refused == 1 and state == "done"
        print(f"  verdict: {'exactly one email, in the thread' if ok else 'FAILED'}")
    finally:
        if salesbot is not None:
            salesbot.stop()
        stand_ins.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
